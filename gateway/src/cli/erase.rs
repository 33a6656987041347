//! `cairn erase <user>`: erase a person (operator).

use std::process::ExitCode;

use gateway::config::Config;

pub(crate) async fn run(config: Config, user_id: String) -> anyhow::Result<ExitCode> {
    let user = user_id
        .parse::<domain::UserId>()
        .map_err(|_| anyhow::anyhow!("`{user_id}` is not a user id (a UUID)"))?;
    let key = super::existing_secret_key(&config)?;
    let (pool, store) = super::connect(&config, 2).await?;
    let pool_for_wait = pool.clone();
    let identity = commands::identity::Identity::new(
        commands::Commands::new(store),
        eventstore::vault::Vault::new(pool, key),
    );
    let meta = commands::Metadata::new(commands::Actor::System);
    match identity.erase(user, &meta).await {
        Ok(receipt) => {
            // Sessions end when the identity projection (run by the servers) applies
            // the erasure; wait for that so "erased" means signed out everywhere.
            let applied = match receipt.cursor {
                Some(cursor) => projections::progress::wait_for(
                    &pool_for_wait,
                    projections::read_models::identity::NAME,
                    cursor,
                    std::time::Duration::from_secs(10),
                    None,
                )
                .await
                .unwrap_or(false),
                None => true,
            };
            println!("erased {user}");
            if !applied {
                eprintln!(
                    "note: no server has applied the erasure yet; its sessions end when one does"
                );
            }
        }
        Err(commands::CommandError::Domain(e)) => {
            println!("not erased: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(anyhow::anyhow!("erasure failed: {e}")),
    }
    Ok(ExitCode::SUCCESS)
}
