//! `cairn keys create`: an operator's shortcut to a first API key. It registers the person if
//! they are new (through a sign-in link it uses at once, as anyone registers), issues a key
//! with the scopes asked for, and prints it once on standard output. Everything it does is
//! recorded as events, like any other sign-in and key.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Context;
use commands::identity::Identity;
use commands::{Actor, Commands, Metadata};
use domain::{Email, Name, Scope};
use gateway::config::Config;

/// `cairn keys …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Keys {
    /// Issue an API key for a person (registered first if new) and print it once.
    #[command(after_help = crate::CONFIGURATION)]
    Create {
        /// The person's email address.
        #[arg(long)]
        email: String,
        /// What the key may do, comma-separated: tasks:read, tasks:write, events:read,
        /// admin, docs:read, docs:write, …
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// A label for the key, shown in the person's key list.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

pub(crate) async fn run(config: Config, keys: Keys) -> anyhow::Result<ExitCode> {
    let Keys::Create {
        email,
        scopes,
        name,
    } = keys;
    let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let name = Name::parse("name", &name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let scopes = scopes
        .iter()
        .map(|s| {
            s.trim()
                .parse::<Scope>()
                .map_err(|_| anyhow::anyhow!("--scopes: `{s}` is not a scope"))
        })
        .collect::<anyhow::Result<BTreeSet<Scope>>>()?;
    let key = super::existing_secret_key(&config)?;
    let (pool, store) = super::connect(&config, 2).await?;
    // Running servers hear of these commits at once (else at their next poll).
    let signals = tokio_util::sync::CancellationToken::new();
    store.share_commit_signals(signals.clone());
    let identity = Identity::new(
        Commands::new(store),
        eventstore::vault::Vault::new(pool.clone(), key),
    );
    let (user, issued) = issue(&identity, &email, name, scopes).await?;
    // The key works once a server's identity read model has it: wait for that (briefly), so
    // that the next command can use it.
    let applied = match issued.receipt.cursor {
        Some(cursor) => projections::progress::wait_for(
            &pool,
            projections::read_models::identity::NAME,
            cursor,
            std::time::Duration::from_secs(5),
            None,
        )
        .await
        .unwrap_or(false),
        None => true,
    };
    signals.cancel();
    eprintln!(
        "issued key {} (prefix {}) for user {}; it is shown once:",
        issued.key_id, issued.prefix, user
    );
    if !applied {
        eprintln!("note: no server has applied it yet; it works once one does");
    }
    println!("{}", issued.key);
    Ok(ExitCode::SUCCESS)
}

/// Registers `email` if new (through a sign-in link used at once, whose session is then
/// ended: nobody holds its token) and issues it a key with `scopes`. Returns the person and
/// the key. Shared by `cairn keys create` and `cairn bench write`'s HTTP phase.
pub(crate) async fn issue(
    identity: &Identity,
    email: &Email,
    name: Name,
    scopes: BTreeSet<Scope>,
) -> anyhow::Result<(domain::UserId, commands::identity::IssuedKey)> {
    let meta = Metadata::new(Actor::System);
    let register = |e| anyhow::anyhow!("cannot register {}: {e}", email.as_str());
    let link = identity
        .request_magic_link(email, &meta)
        .await
        .map_err(register)?;
    let signed_in = identity
        .consume_magic_link(&link.token, &meta)
        .await
        .map_err(register)?;
    identity
        .revoke_session(signed_in.user_id, signed_in.session_id, &meta)
        .await
        .map_err(|e| anyhow::anyhow!("cannot end the registration session: {e}"))?;
    let issued = identity
        .issue_api_key(signed_in.user_id, name, scopes, &meta)
        .await
        .map_err(|e| anyhow::anyhow!("cannot issue the key: {e}"))
        .context("keys create")?;
    Ok((signed_in.user_id, issued))
}
