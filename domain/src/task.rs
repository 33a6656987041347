//! The `Task` aggregate: a card on an organization's board, with its labels, assignees and
//! comments. Each action needs a permission (see [`Task::decide`]); the caller's permissions
//! arrive in the request as a [`Grant`] looked up from the memberships read model.
//!
//! References to other aggregates (labels, categories, assignees) are looked up in the read
//! models by the command side, which puts what it found into the request ([`References`]); the
//! task refuses a command that names what was not found, and records ids only.

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::{CategoryId, CommentId, Grant, LabelId, OrgId, Permission, Text, UserId};

/// The longest title, in characters.
pub const TITLE_MAX: usize = 200;
/// The longest description or comment, in characters.
pub const BODY_MAX: usize = 10_000;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not planned yet.
    Backlog,
    /// Planned.
    Todo,
    /// Being worked on.
    InProgress,
    /// Finished.
    Done,
    /// Dropped.
    Canceled,
}

impl Status {
    /// The name it has in events and on the wire, such as `in_progress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backlog => "backlog",
            Self::Todo => "todo",
            Self::InProgress => "in_progress",
            Self::Done => "done",
            Self::Canceled => "canceled",
        }
    }
}

/// How urgent a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Not set.
    None,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Urgent.
    Urgent,
}

impl Priority {
    /// The name it has in events and on the wire, such as `urgent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Urgent => "urgent",
        }
    }
}

/// The fields of a new task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewTask {
    /// Its organization.
    pub org_id: OrgId,
    /// Its title (1 to 200 characters).
    pub title: Text,
    /// Its description (may be empty).
    pub description: Text,
    /// Its status.
    pub status: Status,
    /// Its priority.
    pub priority: Priority,
    /// Its category.
    pub category_id: Option<CategoryId>,
    /// Its labels.
    pub labels: BTreeSet<LabelId>,
    /// Its assignees (members of the organization).
    pub assignees: BTreeSet<UserId>,
}

/// Changes to a task's fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TaskEdit {
    /// A new title.
    pub title: Option<Text>,
    /// A new description.
    pub description: Option<Text>,
    /// A new status.
    pub status: Option<Status>,
    /// A new priority.
    pub priority: Option<Priority>,
    /// A new category (`Some(None)` clears it). Left out of the serialized form when `None`,
    /// so that it differs from `Some(None)` (`null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category_id: Option<Option<CategoryId>>,
}

/// What can be asked of a task. It serializes (for the command side's idempotency
/// fingerprint, never stored) but does not deserialize: requests are not read from JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TaskCommand {
    /// Create it (`tasks.create`; `tasks.assign` too when it has assignees).
    Create(Box<NewTask>),
    /// Change fields (`tasks.edit`).
    Edit(TaskEdit),
    /// Assign a member (`tasks.assign`).
    Assign {
        /// The member.
        user_id: UserId,
    },
    /// Unassign a member (`tasks.assign`).
    Unassign {
        /// The member.
        user_id: UserId,
    },
    /// Add a label (`tasks.edit`).
    AddLabel {
        /// The label.
        label_id: LabelId,
    },
    /// Remove a label (`tasks.edit`).
    RemoveLabel {
        /// The label.
        label_id: LabelId,
    },
    /// Comment (any member).
    AddComment {
        /// The new comment's id.
        comment_id: CommentId,
        /// Its text.
        body: Text,
    },
    /// Edit a comment (its author, or an administrator).
    EditComment {
        /// The comment.
        comment_id: CommentId,
        /// Its new text.
        body: Text,
    },
    /// Delete a comment (its author, or an administrator).
    DeleteComment {
        /// The comment.
        comment_id: CommentId,
    },
    /// Delete the task (`tasks.delete`).
    Delete,
}

impl TaskCommand {
    /// What the command names that must exist in the task's organization: the labels and the
    /// category it sets, and the users it assigns. Removing a label or an assignee names
    /// nothing (what is gone can still be taken off).
    pub fn references(&self) -> References {
        let mut named = References::default();
        match self {
            Self::Create(new) => {
                named.labels.clone_from(&new.labels);
                named.categories.extend(new.category_id);
                named.users.clone_from(&new.assignees);
            }
            Self::Edit(edit) => named.categories.extend(edit.category_id.flatten()),
            Self::Assign { user_id } => {
                named.users.insert(*user_id);
            }
            Self::AddLabel { label_id } => {
                named.labels.insert(*label_id);
            }
            Self::Unassign { .. }
            | Self::RemoveLabel { .. }
            | Self::AddComment { .. }
            | Self::EditComment { .. }
            | Self::DeleteComment { .. }
            | Self::Delete => {}
        }
        named
    }
}

/// Labels, categories and users of an organization: those a command names
/// ([`TaskCommand::references`]), or those of them the read models know (live labels and
/// categories of the organization, and its members), as looked up for a [`TaskRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Labels.
    pub labels: BTreeSet<LabelId>,
    /// Categories.
    pub categories: BTreeSet<CategoryId>,
    /// Users.
    pub users: BTreeSet<UserId>,
}

impl References {
    /// Refuses what `named` holds and `self` (what is known) does not: labels first, then the
    /// category, then assignees.
    fn cover(&self, named: &References) -> Result<(), TaskError> {
        if let Some(label) = named.labels.difference(&self.labels).next() {
            return Err(TaskError::UnknownLabel(*label));
        }
        if let Some(category) = named.categories.difference(&self.categories).next() {
            return Err(TaskError::UnknownCategory(*category));
        }
        if let Some(user) = named.users.difference(&self.users).next() {
            return Err(TaskError::AssigneeNotMember(*user));
        }
        Ok(())
    }
}

/// A request to a task, with the caller's grant in the task's organization and what the read
/// models know of the references the command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    /// What the caller may do.
    pub grant: Grant,
    /// Which of the labels, categories and users the command names exist in the organization.
    pub known: References,
    /// What is asked.
    pub command: TaskCommand,
}

/// What happened to a task. The `type` tag is the stored `event_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TaskEvent {
    /// Created.
    #[serde(rename = "task.created")]
    Created {
        /// Its organization.
        org_id: OrgId,
        /// Its title.
        title: Text,
        /// Its description.
        description: Text,
        /// Its status.
        status: Status,
        /// Its priority.
        priority: Priority,
        /// Its category.
        category_id: Option<CategoryId>,
        /// Its labels.
        labels: BTreeSet<LabelId>,
        /// Its assignees.
        assignees: BTreeSet<UserId>,
    },
    /// The title changed.
    #[serde(rename = "task.title_changed")]
    TitleChanged {
        /// The new title.
        title: Text,
    },
    /// The description changed.
    #[serde(rename = "task.description_changed")]
    DescriptionChanged {
        /// The new description.
        description: Text,
    },
    /// The status changed.
    #[serde(rename = "task.status_changed")]
    StatusChanged {
        /// The new status.
        status: Status,
    },
    /// The priority changed.
    #[serde(rename = "task.priority_changed")]
    PriorityChanged {
        /// The new priority.
        priority: Priority,
    },
    /// The category changed.
    #[serde(rename = "task.category_changed")]
    CategoryChanged {
        /// The new category, if any.
        category_id: Option<CategoryId>,
    },
    /// A member was assigned.
    #[serde(rename = "task.assigned")]
    Assigned {
        /// The member.
        user_id: UserId,
    },
    /// A member was unassigned.
    #[serde(rename = "task.unassigned")]
    Unassigned {
        /// The member.
        user_id: UserId,
    },
    /// A label was added.
    #[serde(rename = "task.labeled")]
    Labeled {
        /// The label.
        label_id: LabelId,
    },
    /// A label was removed.
    #[serde(rename = "task.unlabeled")]
    Unlabeled {
        /// The label.
        label_id: LabelId,
    },
    /// A comment was added.
    #[serde(rename = "task.comment_added")]
    CommentAdded {
        /// The comment.
        comment_id: CommentId,
        /// Its author (`None` for the system).
        author: Option<UserId>,
        /// Its text.
        body: Text,
    },
    /// A comment was edited.
    #[serde(rename = "task.comment_edited")]
    CommentEdited {
        /// The comment.
        comment_id: CommentId,
        /// Its new text.
        body: Text,
    },
    /// A comment was deleted.
    #[serde(rename = "task.comment_deleted")]
    CommentDeleted {
        /// The comment.
        comment_id: CommentId,
    },
    /// The task was deleted.
    #[serde(rename = "task.deleted")]
    Deleted {},
}

impl DomainEvent for TaskEvent {
    fn event_type(&self) -> String {
        crate::event_type::tag_of(self)
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Why a task command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The caller lacks a permission (HTTP 403).
    #[error("this needs the `{0}` permission")]
    Forbidden(Permission),
    /// The caller is not a member of the organization (HTTP 404).
    #[error("no such task")]
    NotMember,
    /// `Create` on a task that exists (HTTP 409).
    #[error("the task already exists")]
    AlreadyExists,
    /// No such task, or it was deleted (HTTP 404).
    #[error("no such task")]
    NotFound,
    /// Already assigned (HTTP 422).
    #[error("user {0} is already assigned")]
    AlreadyAssigned(UserId),
    /// Not assigned (HTTP 422).
    #[error("user {0} is not assigned")]
    NotAssigned(UserId),
    /// Already has the label (HTTP 422).
    #[error("the task already has label {0}")]
    AlreadyLabeled(LabelId),
    /// Lacks the label (HTTP 422).
    #[error("the task does not have label {0}")]
    NotLabeled(LabelId),
    /// No such comment, or it was deleted (HTTP 404).
    #[error("no such comment")]
    CommentNotFound,
    /// Only a comment's author (or an administrator) may change it (HTTP 403).
    #[error("only the comment's author may change it")]
    NotCommentAuthor,
    /// A label is not a live label of the organization (HTTP 422).
    #[error("a label does not exist in this organization")]
    UnknownLabel(LabelId),
    /// The category is not a live category of the organization (HTTP 422).
    #[error("the category does not exist in this organization")]
    UnknownCategory(CategoryId),
    /// An assignee is not a member of the organization (HTTP 422).
    #[error("user {0} is not a member")]
    AssigneeNotMember(UserId),
}

/// The task aggregate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    org_id: Option<OrgId>,
    title: Option<Text>,
    description: Option<Text>,
    status: Option<Status>,
    priority: Option<Priority>,
    category_id: Option<CategoryId>,
    labels: BTreeSet<LabelId>,
    assignees: BTreeSet<UserId>,
    /// Live comments and their authors.
    comments: BTreeMap<CommentId, Option<UserId>>,
    deleted: bool,
}

impl Task {
    /// Its organization, once created.
    pub fn org_id(&self) -> Option<OrgId> {
        self.org_id
    }

    /// Whether it exists and is not deleted.
    pub fn is_live(&self) -> bool {
        self.org_id.is_some() && !self.deleted
    }

    fn need(grant: &Grant, permission: Permission) -> Result<(), TaskError> {
        if grant.allows(permission) {
            Ok(())
        } else {
            Err(TaskError::Forbidden(permission))
        }
    }

    /// Decides a request. Pure.
    pub fn decide(&self, request: TaskRequest) -> Result<Vec<TaskEvent>, TaskError> {
        use TaskCommand as C;
        use TaskError as E;
        use TaskEvent as V;

        let TaskRequest {
            grant,
            known,
            command,
        } = request;
        let named = command.references();
        if !grant.member || self.org_id.is_some_and(|o| o != grant.org_id) {
            return Err(E::NotMember);
        }
        if let C::Create(new) = command {
            Self::need(&grant, Permission::CreateTasks)?;
            if !new.assignees.is_empty() {
                Self::need(&grant, Permission::AssignTasks)?;
            }
            if self.org_id.is_some() {
                return Err(E::AlreadyExists);
            }
            if new.org_id != grant.org_id {
                return Err(E::NotMember);
            }
            known.cover(&named)?;
            let NewTask {
                org_id,
                title,
                description,
                status,
                priority,
                category_id,
                labels,
                assignees,
            } = *new;
            return Ok(vec![V::Created {
                org_id,
                title,
                description,
                status,
                priority,
                category_id,
                labels,
                assignees,
            }]);
        }
        if !self.is_live() {
            return Err(E::NotFound);
        }
        Ok(match command {
            C::Create(_) => unreachable!("handled above"),
            C::Edit(edit) => {
                Self::need(&grant, Permission::EditTasks)?;
                known.cover(&named)?;
                let mut events = Vec::new();
                if let Some(title) = edit.title.filter(|t| Some(t) != self.title.as_ref()) {
                    events.push(V::TitleChanged { title });
                }
                if let Some(description) = edit
                    .description
                    .filter(|d| Some(d) != self.description.as_ref())
                {
                    events.push(V::DescriptionChanged { description });
                }
                if let Some(status) = edit.status.filter(|s| Some(*s) != self.status) {
                    events.push(V::StatusChanged { status });
                }
                if let Some(priority) = edit.priority.filter(|p| Some(*p) != self.priority) {
                    events.push(V::PriorityChanged { priority });
                }
                if let Some(category_id) = edit.category_id.filter(|c| *c != self.category_id) {
                    events.push(V::CategoryChanged { category_id });
                }
                events
            }
            C::Assign { user_id } => {
                Self::need(&grant, Permission::AssignTasks)?;
                known.cover(&named)?;
                if self.assignees.contains(&user_id) {
                    return Err(E::AlreadyAssigned(user_id));
                }
                vec![V::Assigned { user_id }]
            }
            C::Unassign { user_id } => {
                Self::need(&grant, Permission::AssignTasks)?;
                if !self.assignees.contains(&user_id) {
                    return Err(E::NotAssigned(user_id));
                }
                vec![V::Unassigned { user_id }]
            }
            C::AddLabel { label_id } => {
                Self::need(&grant, Permission::EditTasks)?;
                known.cover(&named)?;
                if self.labels.contains(&label_id) {
                    return Err(E::AlreadyLabeled(label_id));
                }
                vec![V::Labeled { label_id }]
            }
            C::RemoveLabel { label_id } => {
                Self::need(&grant, Permission::EditTasks)?;
                if !self.labels.contains(&label_id) {
                    return Err(E::NotLabeled(label_id));
                }
                vec![V::Unlabeled { label_id }]
            }
            C::AddComment { comment_id, body } => {
                if self.comments.contains_key(&comment_id) {
                    return Ok(vec![]);
                }
                vec![V::CommentAdded {
                    comment_id,
                    author: grant.user,
                    body,
                }]
            }
            C::EditComment { comment_id, body } => {
                self.may_change_comment(&grant, comment_id)?;
                vec![V::CommentEdited { comment_id, body }]
            }
            C::DeleteComment { comment_id } => {
                self.may_change_comment(&grant, comment_id)?;
                vec![V::CommentDeleted { comment_id }]
            }
            C::Delete => {
                Self::need(&grant, Permission::DeleteTasks)?;
                vec![V::Deleted {}]
            }
        })
    }

    fn may_change_comment(&self, grant: &Grant, comment_id: CommentId) -> Result<(), TaskError> {
        let author = self
            .comments
            .get(&comment_id)
            .ok_or(TaskError::CommentNotFound)?;
        if grant.user.is_none() || *author == grant.user || grant.allows(Permission::Administrator)
        {
            Ok(())
        } else {
            Err(TaskError::NotCommentAuthor)
        }
    }
}

impl Aggregate for Task {
    const TYPE: &'static str = "task";
    type Command = TaskRequest;
    type Event = TaskEvent;
    type Error = TaskError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        crate::record(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use TaskEvent as V;
        match event {
            V::Created {
                org_id,
                title,
                description,
                status,
                priority,
                category_id,
                labels,
                assignees,
            } => {
                self.org_id = Some(org_id);
                self.title = Some(title);
                self.description = Some(description);
                self.status = Some(status);
                self.priority = Some(priority);
                self.category_id = category_id;
                self.labels = labels;
                self.assignees = assignees;
            }
            V::TitleChanged { title } => self.title = Some(title),
            V::DescriptionChanged { description } => self.description = Some(description),
            V::StatusChanged { status } => self.status = Some(status),
            V::PriorityChanged { priority } => self.priority = Some(priority),
            V::CategoryChanged { category_id } => self.category_id = category_id,
            V::Assigned { user_id } => {
                self.assignees.insert(user_id);
            }
            V::Unassigned { user_id } => {
                self.assignees.remove(&user_id);
            }
            V::Labeled { label_id } => {
                self.labels.insert(label_id);
            }
            V::Unlabeled { label_id } => {
                self.labels.remove(&label_id);
            }
            V::CommentAdded {
                comment_id, author, ..
            } => {
                self.comments.insert(comment_id, author);
            }
            V::CommentEdited { .. } => {}
            V::CommentDeleted { comment_id } => {
                self.comments.remove(&comment_id);
            }
            V::Deleted {} => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;
    use TaskCommand as C;
    use TaskError as E;
    use TaskEvent as V;

    type Given = TestFramework<Task>;

    fn org() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(1))
    }
    fn alice() -> UserId {
        UserId::from_uuid(Uuid::from_u128(2))
    }
    fn bob() -> UserId {
        UserId::from_uuid(Uuid::from_u128(3))
    }
    fn text(s: &str) -> Text {
        Text::parse("text", s, BODY_MAX, true).expect("text")
    }
    /// A request by `user` holding `perms`, for which every reference is known.
    fn by(user: UserId, perms: &[Permission], command: C) -> TaskRequest {
        TaskRequest {
            grant: Grant::member(org(), user, perms.iter().copied()),
            known: command.references(),
            command,
        }
    }
    fn new_task(assignees: &[UserId]) -> C {
        C::Create(Box::new(NewTask {
            org_id: org(),
            title: text("Ship it"),
            description: text(""),
            status: Status::Todo,
            priority: Priority::None,
            category_id: None,
            labels: BTreeSet::new(),
            assignees: assignees.iter().copied().collect(),
        }))
    }
    fn created() -> V {
        V::Created {
            org_id: org(),
            title: text("Ship it"),
            description: text(""),
            status: Status::Todo,
            priority: Priority::None,
            category_id: None,
            labels: BTreeSet::new(),
            assignees: BTreeSet::new(),
        }
    }
    fn label() -> LabelId {
        LabelId::from_uuid(Uuid::from_u128(7))
    }
    fn comment() -> CommentId {
        CommentId::from_uuid(Uuid::from_u128(9))
    }

    #[tokio::test]
    async fn creating_needs_tasks_create_and_assigning_on_create_tasks_assign() {
        Given::with(())
            .given_no_previous_events()
            .when_async(by(alice(), &[Permission::EditTasks], new_task(&[])))
            .await
            .then_expect_error(E::Forbidden(Permission::CreateTasks));
        Given::with(())
            .given_no_previous_events()
            .when_async(by(alice(), &[Permission::CreateTasks], new_task(&[bob()])))
            .await
            .then_expect_error(E::Forbidden(Permission::AssignTasks));
        Given::with(())
            .given_no_previous_events()
            .when_async(by(alice(), &[Permission::CreateTasks], new_task(&[])))
            .await
            .then_expect_events(vec![created()]);
        Given::with(())
            .given(vec![created()])
            .when_async(by(alice(), &[Permission::Administrator], new_task(&[])))
            .await
            .then_expect_error(E::AlreadyExists);
    }

    #[tokio::test]
    async fn non_members_see_nothing_and_deleted_tasks_are_gone() {
        Given::with(())
            .given(vec![created()])
            .when_async(TaskRequest {
                grant: Grant {
                    org_id: org(),
                    user: Some(bob()),
                    member: false,
                    permissions: [Permission::Administrator].into(),
                },
                known: References::default(),
                command: C::Delete,
            })
            .await
            .then_expect_error(E::NotMember);
        Given::with(())
            .given(vec![created(), V::Deleted {}])
            .when_async(by(alice(), &[Permission::Administrator], C::Delete))
            .await
            .then_expect_error(E::NotFound);
        Given::with(())
            .given_no_previous_events()
            .when_async(by(alice(), &[Permission::Administrator], C::Delete))
            .await
            .then_expect_error(E::NotFound);
    }

    #[tokio::test]
    async fn edits_need_tasks_edit_and_record_only_changes() {
        let edit = TaskEdit {
            title: Some(text("Ship it")),
            status: Some(Status::Done),
            priority: Some(Priority::High),
            category_id: Some(None),
            ..TaskEdit::default()
        };
        Given::with(())
            .given(vec![created()])
            .when_async(by(
                alice(),
                &[Permission::CreateTasks],
                C::Edit(edit.clone()),
            ))
            .await
            .then_expect_error(E::Forbidden(Permission::EditTasks));
        Given::with(())
            .given(vec![created()])
            .when_async(by(alice(), &[Permission::EditTasks], C::Edit(edit)))
            .await
            .then_expect_events(vec![
                V::StatusChanged {
                    status: Status::Done,
                },
                V::PriorityChanged {
                    priority: Priority::High,
                },
            ]);
    }

    #[tokio::test]
    async fn assignment_and_labels_follow_their_permissions_and_state() {
        let assign = C::Assign { user_id: bob() };
        Given::with(())
            .given(vec![created()])
            .when_async(by(alice(), &[Permission::EditTasks], assign.clone()))
            .await
            .then_expect_error(E::Forbidden(Permission::AssignTasks));
        Given::with(())
            .given(vec![created(), V::Assigned { user_id: bob() }])
            .when_async(by(alice(), &[Permission::AssignTasks], assign))
            .await
            .then_expect_error(E::AlreadyAssigned(bob()));
        Given::with(())
            .given(vec![created()])
            .when_async(by(
                alice(),
                &[Permission::AssignTasks],
                C::Unassign { user_id: bob() },
            ))
            .await
            .then_expect_error(E::NotAssigned(bob()));
        Given::with(())
            .given(vec![created()])
            .when_async(by(
                alice(),
                &[Permission::EditTasks],
                C::AddLabel { label_id: label() },
            ))
            .await
            .then_expect_events(vec![V::Labeled { label_id: label() }]);
        Given::with(())
            .given(vec![created(), V::Labeled { label_id: label() }])
            .when_async(by(
                alice(),
                &[Permission::EditTasks],
                C::AddLabel { label_id: label() },
            ))
            .await
            .then_expect_error(E::AlreadyLabeled(label()));
        Given::with(())
            .given(vec![created()])
            .when_async(by(
                alice(),
                &[Permission::EditTasks],
                C::RemoveLabel { label_id: label() },
            ))
            .await
            .then_expect_error(E::NotLabeled(label()));
    }

    #[tokio::test]
    async fn any_member_comments_and_only_authors_or_admins_change_comments() {
        Given::with(())
            .given(vec![created()])
            .when_async(by(
                bob(),
                &[],
                C::AddComment {
                    comment_id: comment(),
                    body: text("hi"),
                },
            ))
            .await
            .then_expect_events(vec![V::CommentAdded {
                comment_id: comment(),
                author: Some(bob()),
                body: text("hi"),
            }]);
        let commented = vec![
            created(),
            V::CommentAdded {
                comment_id: comment(),
                author: Some(bob()),
                body: text("hi"),
            },
        ];
        Given::with(())
            .given(commented.clone())
            .when_async(by(
                alice(),
                &[Permission::EditTasks],
                C::DeleteComment {
                    comment_id: comment(),
                },
            ))
            .await
            .then_expect_error(E::NotCommentAuthor);
        Given::with(())
            .given(commented.clone())
            .when_async(by(
                bob(),
                &[],
                C::EditComment {
                    comment_id: comment(),
                    body: text("hello"),
                },
            ))
            .await
            .then_expect_events(vec![V::CommentEdited {
                comment_id: comment(),
                body: text("hello"),
            }]);
        Given::with(())
            .given(commented.clone())
            .when_async(by(
                alice(),
                &[Permission::Administrator],
                C::DeleteComment {
                    comment_id: comment(),
                },
            ))
            .await
            .then_expect_events(vec![V::CommentDeleted {
                comment_id: comment(),
            }]);
        let mut deleted = commented;
        deleted.push(V::CommentDeleted {
            comment_id: comment(),
        });
        Given::with(())
            .given(deleted)
            .when_async(by(
                bob(),
                &[],
                C::EditComment {
                    comment_id: comment(),
                    body: text("x"),
                },
            ))
            .await
            .then_expect_error(E::CommentNotFound);
    }

    #[tokio::test]
    async fn a_grant_for_another_organization_finds_nothing() {
        let other = OrgId::from_uuid(Uuid::from_u128(99));
        Given::with(())
            .given(vec![created()])
            .when_async(TaskRequest {
                grant: Grant::member(other, alice(), [Permission::Administrator]),
                known: References::default(),
                command: C::Delete,
            })
            .await
            .then_expect_error(E::NotMember);
    }

    #[tokio::test]
    async fn deleting_needs_tasks_delete() {
        Given::with(())
            .given(vec![created()])
            .when_async(by(alice(), &[Permission::EditTasks], C::Delete))
            .await
            .then_expect_error(E::Forbidden(Permission::DeleteTasks));
        Given::with(())
            .given(vec![created()])
            .when_async(by(alice(), &[Permission::DeleteTasks], C::Delete))
            .await
            .then_expect_events(vec![V::Deleted {}]);
    }

    #[tokio::test]
    async fn what_a_command_names_must_be_known_in_the_organization() {
        let category = CategoryId::from_uuid(Uuid::from_u128(5));
        let admin = Grant::member(org(), alice(), [Permission::Administrator]);
        let knowing = |known: References, command: C| TaskRequest {
            grant: admin.clone(),
            known,
            command,
        };
        let nothing = References::default;
        let mut new = NewTask {
            org_id: org(),
            title: text("Ship it"),
            description: text(""),
            status: Status::Todo,
            priority: Priority::None,
            category_id: Some(category),
            labels: [label()].into(),
            assignees: [bob()].into(),
        };
        let create = |new: &NewTask| C::Create(Box::new(new.clone()));
        Given::with(())
            .given_no_previous_events()
            .when_async(knowing(nothing(), create(&new)))
            .await
            .then_expect_error(E::UnknownLabel(label()));
        let labels_known = References {
            labels: [label()].into(),
            ..nothing()
        };
        Given::with(())
            .given_no_previous_events()
            .when_async(knowing(labels_known.clone(), create(&new)))
            .await
            .then_expect_error(E::UnknownCategory(category));
        Given::with(())
            .given_no_previous_events()
            .when_async(knowing(
                References {
                    categories: [category].into(),
                    ..labels_known
                },
                create(&new),
            ))
            .await
            .then_expect_error(E::AssigneeNotMember(bob()));
        new.assignees.clear();
        Given::with(())
            .given_no_previous_events()
            .when_async(knowing(
                References {
                    labels: [label()].into(),
                    categories: [category].into(),
                    users: BTreeSet::new(),
                },
                create(&new),
            ))
            .await
            .then_expect_events(vec![V::Created {
                org_id: org(),
                title: text("Ship it"),
                description: text(""),
                status: Status::Todo,
                priority: Priority::None,
                category_id: Some(category),
                labels: [label()].into(),
                assignees: BTreeSet::new(),
            }]);
        for (command, refusal) in [
            (
                C::Edit(TaskEdit {
                    category_id: Some(Some(category)),
                    ..TaskEdit::default()
                }),
                E::UnknownCategory(category),
            ),
            (C::Assign { user_id: bob() }, E::AssigneeNotMember(bob())),
            (C::AddLabel { label_id: label() }, E::UnknownLabel(label())),
        ] {
            Given::with(())
                .given(vec![created()])
                .when_async(knowing(nothing(), command))
                .await
                .then_expect_error(refusal);
        }
        // What is taken off or cleared names nothing, so nothing needs to be known.
        for (given, command, event) in [
            (
                V::Labeled { label_id: label() },
                C::RemoveLabel { label_id: label() },
                V::Unlabeled { label_id: label() },
            ),
            (
                V::Assigned { user_id: bob() },
                C::Unassign { user_id: bob() },
                V::Unassigned { user_id: bob() },
            ),
            (
                V::CategoryChanged {
                    category_id: Some(category),
                },
                C::Edit(TaskEdit {
                    category_id: Some(None),
                    ..TaskEdit::default()
                }),
                V::CategoryChanged { category_id: None },
            ),
        ] {
            Given::with(())
                .given(vec![created(), given])
                .when_async(knowing(nothing(), command))
                .await
                .then_expect_events(vec![event]);
        }
        // The caller's standing is decided first: a stranger learns nothing of the references.
        Given::with(())
            .given(vec![created()])
            .when_async(TaskRequest {
                grant: Grant::member(org(), bob(), []),
                known: nothing(),
                command: C::AddLabel { label_id: label() },
            })
            .await
            .then_expect_error(E::Forbidden(Permission::EditTasks));
    }

    /// Events are a stored contract: this pins the JSON of every variant, both ways. If it
    /// fails, you are about to break history; add a new event version and an upcaster instead.
    #[test]
    fn event_json_is_pinned() {
        use serde_json::json;
        let category = CategoryId::from_uuid(Uuid::from_u128(5));
        let cases: Vec<(V, serde_json::Value)> = vec![
            (
                created(),
                json!({"type": "task.created", "org_id": "00000000-0000-0000-0000-000000000001",
                       "title": "Ship it", "description": "", "status": "todo", "priority": "none",
                       "category_id": null, "labels": [], "assignees": []}),
            ),
            (
                V::Created {
                    org_id: org(),
                    title: text("Ship it"),
                    description: text("All of it"),
                    status: Status::Backlog,
                    priority: Priority::Urgent,
                    category_id: Some(category),
                    labels: [label()].into(),
                    assignees: [bob(), alice()].into(),
                },
                json!({"type": "task.created", "org_id": "00000000-0000-0000-0000-000000000001",
                       "title": "Ship it", "description": "All of it", "status": "backlog",
                       "priority": "urgent",
                       "category_id": "00000000-0000-0000-0000-000000000005",
                       "labels": ["00000000-0000-0000-0000-000000000007"],
                       "assignees": ["00000000-0000-0000-0000-000000000002",
                                     "00000000-0000-0000-0000-000000000003"]}),
            ),
            (
                V::TitleChanged {
                    title: text("Ship it now"),
                },
                json!({"type": "task.title_changed", "title": "Ship it now"}),
            ),
            (
                V::DescriptionChanged {
                    description: text("Details"),
                },
                json!({"type": "task.description_changed", "description": "Details"}),
            ),
            (
                V::StatusChanged {
                    status: Status::InProgress,
                },
                json!({"type": "task.status_changed", "status": "in_progress"}),
            ),
            (
                V::StatusChanged {
                    status: Status::Done,
                },
                json!({"type": "task.status_changed", "status": "done"}),
            ),
            (
                V::StatusChanged {
                    status: Status::Canceled,
                },
                json!({"type": "task.status_changed", "status": "canceled"}),
            ),
            (
                V::PriorityChanged {
                    priority: Priority::Low,
                },
                json!({"type": "task.priority_changed", "priority": "low"}),
            ),
            (
                V::PriorityChanged {
                    priority: Priority::Medium,
                },
                json!({"type": "task.priority_changed", "priority": "medium"}),
            ),
            (
                V::PriorityChanged {
                    priority: Priority::High,
                },
                json!({"type": "task.priority_changed", "priority": "high"}),
            ),
            (
                V::CategoryChanged {
                    category_id: Some(category),
                },
                json!({"type": "task.category_changed",
                       "category_id": "00000000-0000-0000-0000-000000000005"}),
            ),
            (
                V::CategoryChanged { category_id: None },
                json!({"type": "task.category_changed", "category_id": null}),
            ),
            (
                V::Assigned { user_id: bob() },
                json!({"type": "task.assigned", "user_id": "00000000-0000-0000-0000-000000000003"}),
            ),
            (
                V::Unassigned { user_id: bob() },
                json!({"type": "task.unassigned", "user_id": "00000000-0000-0000-0000-000000000003"}),
            ),
            (
                V::Labeled { label_id: label() },
                json!({"type": "task.labeled", "label_id": "00000000-0000-0000-0000-000000000007"}),
            ),
            (
                V::Unlabeled { label_id: label() },
                json!({"type": "task.unlabeled", "label_id": "00000000-0000-0000-0000-000000000007"}),
            ),
            (
                V::CommentAdded {
                    comment_id: comment(),
                    author: Some(bob()),
                    body: text("hi"),
                },
                json!({"type": "task.comment_added",
                       "comment_id": "00000000-0000-0000-0000-000000000009",
                       "author": "00000000-0000-0000-0000-000000000003", "body": "hi"}),
            ),
            (
                V::CommentAdded {
                    comment_id: comment(),
                    author: None,
                    body: text("by the system"),
                },
                json!({"type": "task.comment_added",
                       "comment_id": "00000000-0000-0000-0000-000000000009",
                       "author": null, "body": "by the system"}),
            ),
            (
                V::CommentEdited {
                    comment_id: comment(),
                    body: text("hello"),
                },
                json!({"type": "task.comment_edited",
                       "comment_id": "00000000-0000-0000-0000-000000000009", "body": "hello"}),
            ),
            (
                V::CommentDeleted {
                    comment_id: comment(),
                },
                json!({"type": "task.comment_deleted",
                       "comment_id": "00000000-0000-0000-0000-000000000009"}),
            ),
            (V::Deleted {}, json!({"type": "task.deleted"})),
        ];
        // A new variant must be added here, and pinned above.
        let variant = |e: &V| match e {
            V::Created { .. } => 0,
            V::TitleChanged { .. } => 1,
            V::DescriptionChanged { .. } => 2,
            V::StatusChanged { .. } => 3,
            V::PriorityChanged { .. } => 4,
            V::CategoryChanged { .. } => 5,
            V::Assigned { .. } => 6,
            V::Unassigned { .. } => 7,
            V::Labeled { .. } => 8,
            V::Unlabeled { .. } => 9,
            V::CommentAdded { .. } => 10,
            V::CommentEdited { .. } => 11,
            V::CommentDeleted { .. } => 12,
            V::Deleted {} => 13,
        };
        let covered: BTreeSet<i32> = cases.iter().map(|(e, _)| variant(e)).collect();
        assert_eq!(covered.len(), 14, "every task event is pinned");
        for (i, (event, json)) in cases.into_iter().enumerate() {
            let label = format!("case {i} ({})", event.event_type());
            assert_eq!(
                serde_json::to_value(&event).expect("serialize"),
                json,
                "{label}: serialized"
            );
            assert_eq!(
                json["type"].as_str(),
                Some(event.event_type().as_str()),
                "{label}: the tag is the stored event_type"
            );
            assert_eq!(
                serde_json::from_value::<V>(json).expect("deserialize"),
                event,
                "{label}: deserialized"
            );
        }
    }

    #[test]
    fn status_and_priority_names_are_their_serde_names() {
        use super::{Priority, Status};
        for status in [
            Status::Backlog,
            Status::Todo,
            Status::InProgress,
            Status::Done,
            Status::Canceled,
        ] {
            let json = serde_json::to_value(status).expect("serializes");
            assert_eq!(json, status.as_str());
        }
        for priority in [
            Priority::None,
            Priority::Low,
            Priority::Medium,
            Priority::High,
            Priority::Urgent,
        ] {
            let json = serde_json::to_value(priority).expect("serializes");
            assert_eq!(json, priority.as_str());
        }
    }
}
