//! Read models: pure folds of events into tables, each with the typed queries that read them,
//! and the access policy built on them.
//!
//! - [`identity`]: accounts, sessions, API keys.
//! - [`memberships`]: organizations, members, teams, permissions.
//! - [`board`]: labels, categories, tasks, comments.
//! - [`access`]: who may read what, from `memberships` and `identity`.
//!
//! **A read model has no side effect.** It implements [`crate::Projection`], writes only its
//! own tables, in the runner's transaction, and imports nothing from [`crate::consumers`] (no
//! bus, no mail): a rebuild replays every event through it. A test below holds this.

pub mod access;
pub mod board;
pub mod document_text;
pub mod documents;
pub mod identity;
pub mod memberships;

#[cfg(test)]
mod tests {
    /// Names that would give a read model a side effect.
    const FORBIDDEN: &[&str] = &[
        "crate::consumers",
        "consumers::",
        "bus::",
        "mailer::",
        "relay::",
        "lettre",
        "async_nats",
        "reqwest",
        "tokio::spawn",
    ];

    #[test]
    fn read_models_import_no_side_effect() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/read_models");
        let mut read = 0;
        for entry in std::fs::read_dir(&dir).expect("read_models/") {
            let path = entry.expect("entry").path();
            // This file declares the modules (and this list); the read models are the others.
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("mod.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("source");
            for name in FORBIDDEN {
                assert!(
                    !source.contains(name),
                    "{} names `{name}`: read models have no side effects",
                    path.display()
                );
            }
            read += 1;
        }
        assert!(read >= 4, "found only {read} read model files");
    }
}
