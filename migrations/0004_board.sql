-- Read models of the `board` projection (rebuildable from `label.*`, `category.*` and `task.*`
-- events). Never edit this file once it has landed.

CREATE TABLE labels (
    label_id   uuid        PRIMARY KEY,
    org_id     uuid        NOT NULL,
    name       text        NOT NULL,
    color      text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz
);
CREATE INDEX labels_org_idx ON labels (org_id);

CREATE TABLE categories (
    category_id uuid        PRIMARY KEY,
    org_id      uuid        NOT NULL,
    name        text        NOT NULL,
    color       text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    deleted_at  timestamptz
);
CREATE INDEX categories_org_idx ON categories (org_id);

-- One row per task. `created_position` (the global position of `task.created`) orders the
-- board and is the page cursor.
CREATE TABLE board_tasks (
    task_id          uuid        PRIMARY KEY,
    org_id           uuid        NOT NULL,
    title            text        NOT NULL,
    description      text        NOT NULL,
    status           text        NOT NULL,
    priority         text        NOT NULL,
    category_id      uuid,
    labels           uuid[]      NOT NULL DEFAULT '{}',
    assignees        uuid[]      NOT NULL DEFAULT '{}',
    comment_count    integer     NOT NULL DEFAULT 0,
    created_position bigint      NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz
);
CREATE INDEX board_tasks_org_idx ON board_tasks (org_id, created_position) WHERE deleted_at IS NULL;
CREATE INDEX board_tasks_labels_idx ON board_tasks USING gin (labels);
CREATE INDEX board_tasks_assignees_idx ON board_tasks USING gin (assignees);

CREATE TABLE task_comments (
    comment_id uuid        PRIMARY KEY,
    task_id    uuid        NOT NULL,
    org_id     uuid        NOT NULL,
    author     uuid,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL,
    edited_at  timestamptz,
    deleted_at timestamptz
);
CREATE INDEX task_comments_task_idx ON task_comments (task_id, created_at);
