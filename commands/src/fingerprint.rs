//! The idempotency fingerprint: a digest of what the client asked, stored with the receipt, so
//! a client's key reused for another request is refused instead of answered with the first
//! request's receipt.
//!
//! It must come out the same for a retry of the same request whatever changed in between: the
//! caller's permissions (so the grant looked up for the decision is left out), or the build of
//! Cairn answering (so it is a canonical JSON serialization, with object keys sorted, not
//! `Debug` output, which promises nothing).

use cqrs_es::Aggregate;
use domain::account::AccountCommand;
use domain::document::{DocumentCommand, DocumentRequest};
use domain::label::TagRequest;
use domain::task::TaskRequest;
use domain::Request;
use serde_json::Value;
use uuid::Uuid;

/// The part of a command that says what the client asked: what the idempotency fingerprint
/// covers. It leaves out what `commands` looked up for the decision (a grant, the references
/// found), which may differ between a request and its retry.
pub trait Asked {
    /// What was asked, as JSON.
    fn asked(&self) -> Result<Value, serde_json::Error>;

    /// Whether to fingerprint it under a command id the server made (a client's key is always
    /// fingerprinted). There the fingerprint only catches a caller that reuses one `Metadata`
    /// for two commands; `false` for what is never sent that way and costly to serialize.
    fn fingerprinted(&self) -> bool {
        true
    }
}

impl Asked for TaskRequest {
    fn asked(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&self.command)
    }
}

impl Asked for DocumentRequest {
    fn asked(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&self.command)
    }

    /// A document room's batches of updates and its compactions are the system's, each with
    /// a fresh id from the room: fingerprinting them would serialize every update (or the
    /// whole state) once more on the per-update path.
    fn fingerprinted(&self) -> bool {
        !matches!(
            self.command,
            DocumentCommand::EditAs { .. } | DocumentCommand::Compact { .. }
        )
    }
}

impl Asked for TagRequest {
    fn asked(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&self.command)
    }
}

/// The caller is left out: a client's key is already scoped to its actor.
impl<C: serde::Serialize> Asked for Request<C> {
    fn asked(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&self.command)
    }
}

impl Asked for AccountCommand {
    fn asked(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

/// Namespace for command digests (v2: canonical JSON; v1 hashed `Debug` output).
const NAMESPACE: Uuid = Uuid::from_u128(0x6361_6972_6e2d_6670_2d76_3200_0000_0002);

/// The fingerprint of `command` on aggregate `A` with id `aggregate_id`.
pub(crate) fn fingerprint<A: Aggregate>(
    aggregate_id: &str,
    command: &A::Command,
) -> Result<Uuid, serde_json::Error>
where
    A::Command: Asked,
{
    let mut text = format!("{}\u{0}{aggregate_id}\u{0}", A::TYPE);
    canonical(&command.asked()?, &mut text);
    Ok(Uuid::new_v5(&NAMESPACE, text.as_bytes()))
}

/// Writes `value` as JSON with every object's keys sorted, whatever map serde_json was built
/// with (its `preserve_order` feature, which any crate in the build may turn on, keeps
/// insertion order).
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use domain::label::{Color, TagCommand};
    use domain::organization::OrganizationCommand;
    use domain::task::{NewTask, Priority, References, Status, TaskCommand, TaskEdit};
    use domain::{CategoryId, Grant, LabelId, Name, OrgId, Permission, Text, UserId};
    use serde_json::json;

    use super::*;

    fn org() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(1))
    }

    fn task(grant: Grant, known: References, command: TaskCommand) -> TaskRequest {
        TaskRequest {
            grant,
            known,
            command,
        }
    }

    #[test]
    fn a_rooms_edits_and_compactions_are_not_fingerprinted_under_a_server_id() {
        use domain::document::{Bytes, DocumentCommand as D, Placement};
        let request = |command| DocumentRequest {
            grant: Grant::system(org()),
            known: Placement::default(),
            command,
        };
        let updates = vec![(
            UserId::from_uuid(Uuid::from_u128(2)),
            Bytes::from(vec![0, 0]),
        )];
        assert!(!request(D::EditAs { updates }).fingerprinted());
        let state = Bytes::from(vec![0, 0]);
        assert!(!request(D::Compact { state, covers: 1 }).fingerprinted());
        assert!(request(D::Delete).fingerprinted());
    }

    fn text_of(command: &impl Asked) -> String {
        let mut out = String::new();
        canonical(&command.asked().expect("serializes"), &mut out);
        out
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let mut out = String::new();
        canonical(
            &json!({"b": [{"z": 1, "a": "x\"y"}], "a": null, "c": {"y": true, "x": 1.5}}),
            &mut out,
        );
        assert_eq!(
            out,
            r#"{"a":null,"b":[{"a":"x\"y","z":1}],"c":{"x":1.5,"y":true}}"#
        );
    }

    /// A stored contract: receipts keep these fingerprints, so a change here makes every retry
    /// of a request made before it answer `idempotency_key_reused`.
    #[test]
    fn what_is_asked_is_pinned() {
        let user = UserId::from_uuid(Uuid::from_u128(2));
        let label = LabelId::from_uuid(Uuid::from_u128(7));
        let category = CategoryId::from_uuid(Uuid::from_u128(5));
        let text = |s: &str| Text::parse("t", s, 100, true).expect("text");
        let name = |s: &str| Name::parse("name", s).expect("name");
        let create = TaskCommand::Create(Box::new(NewTask {
            org_id: org(),
            title: text("Ship it"),
            description: text(""),
            status: Status::InProgress,
            priority: Priority::High,
            category_id: Some(category),
            labels: [label].into(),
            assignees: [user].into(),
        }));
        let cases: Vec<(String, &str)> = vec![
            (
                text_of(&task(Grant::system(org()), References::default(), create)),
                r#"{"Create":{"assignees":["00000000-0000-0000-0000-000000000002"],"category_id":"00000000-0000-0000-0000-000000000005","description":"","labels":["00000000-0000-0000-0000-000000000007"],"org_id":"00000000-0000-0000-0000-000000000001","priority":"high","status":"in_progress","title":"Ship it"}}"#,
            ),
            (
                text_of(&task(
                    Grant::system(org()),
                    References::default(),
                    TaskCommand::Edit(TaskEdit {
                        title: Some(text("T")),
                        ..TaskEdit::default()
                    }),
                )),
                r#"{"Edit":{"description":null,"priority":null,"status":null,"title":"T"}}"#,
            ),
            (
                text_of(&task(
                    Grant::system(org()),
                    References::default(),
                    TaskCommand::Edit(TaskEdit {
                        category_id: Some(None),
                        ..TaskEdit::default()
                    }),
                )),
                r#"{"Edit":{"category_id":null,"description":null,"priority":null,"status":null,"title":null}}"#,
            ),
            (
                text_of(&task(
                    Grant::system(org()),
                    References::default(),
                    TaskCommand::Delete,
                )),
                r#""Delete""#,
            ),
            (
                text_of(&TagRequest {
                    grant: Grant::system(org()),
                    command: TagCommand::Create {
                        org_id: org(),
                        name: name("bug"),
                        color: Color::parse("#FF0000").expect("color"),
                    },
                }),
                r##"{"Create":{"color":"#ff0000","name":"bug","org_id":"00000000-0000-0000-0000-000000000001"}}"##,
            ),
            (
                text_of(&Request::by_user(
                    user,
                    OrganizationCommand::SetTeamPermissions {
                        team_id: domain::TeamId::from_uuid(Uuid::from_u128(3)),
                        permissions: BTreeSet::from([
                            Permission::EditTasks,
                            Permission::CreateTasks,
                        ]),
                    },
                )),
                r#"{"SetTeamPermissions":{"permissions":["tasks.create","tasks.edit"],"team_id":"00000000-0000-0000-0000-000000000003"}}"#,
            ),
            (
                text_of(&AccountCommand::RevokeApiKey {
                    key_id: domain::ApiKeyId::from_uuid(Uuid::from_u128(4)),
                }),
                r#"{"RevokeApiKey":{"key_id":"00000000-0000-0000-0000-000000000004"}}"#,
            ),
        ];
        for (i, (got, pinned)) in cases.iter().enumerate() {
            assert_eq!(got, pinned, "case {i}");
        }
    }

    #[test]
    fn the_grant_and_the_references_found_are_left_out() {
        let asked = TaskCommand::AddLabel {
            label_id: LabelId::from_uuid(Uuid::from_u128(7)),
        };
        let user = UserId::from_uuid(Uuid::from_u128(2));
        let before = task(
            Grant::member(org(), user, [Permission::EditTasks]),
            References::default(),
            asked.clone(),
        );
        let after = task(
            Grant::member(org(), user, [Permission::Administrator]),
            asked.references(),
            asked,
        );
        assert_eq!(
            fingerprint::<domain::task::Task>("t", &before).expect("fingerprint"),
            fingerprint::<domain::task::Task>("t", &after).expect("fingerprint"),
        );
    }

    #[test]
    fn leaving_a_category_and_clearing_it_differ() {
        let edit = |category_id| {
            task(
                Grant::system(org()),
                References::default(),
                TaskCommand::Edit(TaskEdit {
                    category_id,
                    ..TaskEdit::default()
                }),
            )
        };
        assert_ne!(
            fingerprint::<domain::task::Task>("t", &edit(None)).expect("fingerprint"),
            fingerprint::<domain::task::Task>("t", &edit(Some(None))).expect("fingerprint"),
        );
    }
}
