//! Single-document tickets: a short-lived credential for `/collab/{doc}?ticket=…`, for
//! browsers on another origin (whose cookie `/collab` ignores) and for WebSocket clients that
//! cannot send headers.
//!
//! `POST /api/v1/orgs/{org}/docs/{doc}/ticket` issues one to whoever may read the document.
//! It names that document alone, the person, and how they signed in (the session, or the key
//! with its scopes), and lasts [`TTL`]. It is signed with a key derived from the master key,
//! so the server checks it without storing it. Redeeming it gives back the same principal,
//! and the access policy decides again as for any connection: a session or key revoked since
//! reads nothing.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::{ApiKeyId, DocId, Scope, SessionId, UserId};
use eventstore::vault::MasterKey;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::http::principal::{Principal, Via};

/// How long a ticket may be redeemed.
pub const TTL: time::Duration = time::Duration::seconds(60);

const PURPOSE: &str = "cairn/collab-ticket/v1";

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    doc: DocId,
    user: UserId,
    /// The session and when it ends, for a session's ticket.
    session: Option<(SessionId, i64)>,
    /// The key, its prefix and scopes, for a key's ticket.
    key: Option<(ApiKeyId, String, BTreeSet<Scope>)>,
    /// When the ticket ends (Unix seconds).
    expires: i64,
}

/// A ticket for `doc` as `principal`, and when it ends.
pub fn issue(master: &MasterKey, doc: DocId, principal: &Principal) -> (String, OffsetDateTime) {
    let expires = OffsetDateTime::now_utc() + TTL;
    let (session, key) = match &principal.via {
        Via::Session {
            session_id,
            expires_at,
        } => (Some((*session_id, expires_at.unix_timestamp())), None),
        Via::ApiKey {
            key_id,
            prefix,
            scopes,
        } => (None, Some((*key_id, prefix.clone(), scopes.clone()))),
    };
    let body = Body {
        doc,
        user: principal.user_id,
        session,
        key,
        expires: expires.unix_timestamp(),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mac = eventstore::vault::mac(master, PURPOSE, &json);
    let ticket = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&json),
        URL_SAFE_NO_PAD.encode(mac)
    );
    (ticket, expires)
}

/// The principal a ticket for `doc` stands for, or why it does not count.
pub fn redeem(master: &MasterKey, doc: DocId, ticket: &str) -> Result<Principal, &'static str> {
    let invalid = "the ticket is not valid";
    let (body, mac) = ticket.split_once('.').ok_or(invalid)?;
    let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid)?;
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| invalid)?;
    let expected = eventstore::vault::mac(master, PURPOSE, &json);
    // Constant time: every byte is compared whatever the first difference.
    let same = mac.len() == expected.len()
        && mac
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(invalid);
    }
    let body: Body = serde_json::from_slice(&json).map_err(|_| invalid)?;
    if body.doc != doc {
        return Err("the ticket is for another document");
    }
    if body.expires < OffsetDateTime::now_utc().unix_timestamp() {
        return Err("the ticket has expired");
    }
    let via = match (body.session, body.key) {
        (Some((session_id, expires_at)), None) => Via::Session {
            session_id,
            expires_at: OffsetDateTime::from_unix_timestamp(expires_at).map_err(|_| invalid)?,
        },
        (None, Some((key_id, prefix, scopes))) => Via::ApiKey {
            key_id,
            prefix,
            scopes,
        },
        _ => return Err(invalid),
    };
    Ok(Principal {
        user_id: body.user,
        via,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            user_id: UserId::from_uuid(uuid::Uuid::now_v7()),
            via: Via::ApiKey {
                key_id: ApiKeyId::from_uuid(uuid::Uuid::now_v7()),
                prefix: "ck_test".into(),
                scopes: [Scope::DocsRead].into_iter().collect(),
            },
        }
    }

    #[test]
    fn a_ticket_opens_its_document_only_and_cannot_be_altered() {
        let master = MasterKey::from([7u8; 32]);
        let doc = DocId::from_uuid(uuid::Uuid::now_v7());
        let who = principal();
        let (ticket, _) = issue(&master, doc, &who);
        let back = redeem(&master, doc, &ticket).expect("redeems");
        assert_eq!(back.user_id, who.user_id);
        let other = DocId::from_uuid(uuid::Uuid::now_v7());
        assert_eq!(
            redeem(&master, other, &ticket).err(),
            Some("the ticket is for another document")
        );
        let (body, mac) = ticket.split_once('.').expect("two parts");
        let mut forged = URL_SAFE_NO_PAD.decode(body).expect("base64");
        forged[10] ^= 1;
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode(forged));
        assert!(redeem(&master, doc, &forged).is_err());
        let elsewhere = MasterKey::from([8u8; 32]);
        assert!(redeem(&elsewhere, doc, &ticket).is_err());
        assert!(redeem(&master, doc, "garbage").is_err());
    }
}
