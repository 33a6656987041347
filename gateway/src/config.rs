//! Configuration from the environment. Every setting has a working default; a bad value fails
//! at start with one line naming the variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use eventstore::vault::MasterKey;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use url::Url;

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Cairn's settings. See README "Configuration".
#[derive(Debug, Clone)]
pub struct Config {
    /// `CAIRN_BIND`: where the HTTP server listens.
    pub bind: SocketAddr,
    /// `DATABASE_URL`: the PostgreSQL database (created if missing).
    pub database: PgConnectOptions,
    /// `CAIRN_DB_POOL`: the most connections to PostgreSQL.
    pub db_pool: u32,
    /// `NATS_URL`: unset means the in-process bus (one node).
    pub nats_url: Option<Url>,
    /// `MEILISEARCH_URL`: unset means PostgreSQL full-text search.
    pub meilisearch_url: Option<Url>,
    /// `SMTP_URL`: unset means mail is written under the data dir. Held without its password
    /// (see [`Config::smtp_password`]); [`Config::smtp_url_with_password`] puts it back.
    pub smtp_url: Option<Url>,
    /// The password of `SMTP_URL`, as written there (percent-encoded), kept apart so that
    /// `Debug` never shows it.
    pub smtp_password: Option<SecretString>,
    /// `CAIRN_SMTP_CA_FILE`: a PEM file of extra trusted root certificates for the SMTP
    /// server's TLS (a relay with a private CA); the public web roots stay trusted.
    pub smtp_ca_file: Option<PathBuf>,
    /// `STORAGE_URL`: unset means files under the data dir.
    pub storage_url: Option<Url>,
    /// `CAIRN_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `CAIRN_PUBLIC_URL`: the base of every link Cairn sends out.
    pub public_url: Url,
    /// `CAIRN_LOG_FORMAT`: `pretty` or `json`.
    pub log_format: LogFormat,
    /// `CAIRN_SECRET_KEY`: 64 hex digits; unset means a key kept in the data dir.
    pub secret_key: Option<MasterKey>,
    /// `CAIRN_DEV_INSECURE_COOKIES`: drop `Secure` and the `__Host-` prefix from the session
    /// cookie so it works over plain-http localhost. Never set this in production.
    pub dev_insecure_cookies: bool,
    /// `CAIRN_MAIL_FROM`: the sender of Cairn's mail.
    pub mail_from: lettre::message::Mailbox,
    /// `CAIRN_LINKS_PER_EMAIL`: sign-in links one address may request per minute.
    pub links_per_email: u32,
    /// `CAIRN_LINKS_PER_IP`: sign-in links one client address may request per minute.
    pub links_per_ip: u32,
    /// `CAIRN_API_RATE`: API requests one session or key may make per minute.
    pub api_rate: u32,
    /// `CAIRN_ANON_RATE`: requests one client address may make per minute without signing in
    /// to `/ws` (handshakes and `SUBSCRIBE`s), `/auth/verify`, `/metrics` and `/readyz`, in
    /// bursts of up to the same number. IPv6 clients count by their /64.
    pub anon_rate: u32,
    /// `CAIRN_TRUSTED_PROXIES`: comma-separated CIDR blocks (or single addresses) of reverse
    /// proxies whose `X-Forwarded-For` names the client. The client is the right-most
    /// forwarded address that is not a trusted proxy, believed only when the socket peer is
    /// one. Default: none, so the socket peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `CAIRN_MAX_CONNECTIONS`: the most connections open at once, WebSockets included (the
    /// default, 16000, stays under an open-file limit of 20,000). At the cap, new connections
    /// wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// `CAIRN_HEADER_TIMEOUT_SECONDS`: how long a client has to send a request's headers
    /// before its connection is closed (fractions allowed).
    pub header_timeout: std::time::Duration,
    /// `CAIRN_LINK_TTL_SECONDS`: how long a sign-in link works.
    pub link_ttl: std::time::Duration,
    /// `CAIRN_NATS_STREAM`: the JetStream stream the relay publishes to.
    pub nats_stream: String,
    /// `CAIRN_NATS_PREFIX`: the first subject token (`<prefix>.events.<org>.<type>.<id>`).
    pub nats_prefix: String,
    /// `CAIRN_WS_PING_SECONDS`: how often `/ws` sends `PING`.
    pub ws_ping: std::time::Duration,
    /// `CAIRN_WS_TIMEOUT_SECONDS`: how long `/ws` waits for a `PONG` before closing.
    pub ws_timeout: std::time::Duration,
    /// `CAIRN_WS_MIN_INTERVAL_MS`: the least time between two client messages on `/ws`.
    pub ws_min_interval: std::time::Duration,
    /// `CAIRN_WS_QUEUE`: messages queued per connection before it counts as a slow consumer.
    pub ws_queue: usize,
    /// `CAIRN_WS_REPLAY_LIMIT`: the most events a `since` replay sends before answering
    /// `RESYNC_REQUIRED` instead.
    pub ws_replay_limit: i64,
    /// `CAIRN_SSE_HEARTBEAT_SECONDS`: how often an idle `/events/stream` sends a comment line,
    /// so proxies keep it open and clients notice a dead connection (fractions allowed).
    pub sse_heartbeat: std::time::Duration,
    /// `CAIRN_WS_PRESENCE_LIMIT`: `USER_SUBSCRIBED` / `USER_UNSUBSCRIBED` are sent only while
    /// a room has at most this many members on this node (0: never).
    pub ws_presence_limit: usize,
    /// `CAIRN_COLLAB_COMPACT_EVERY`: a document's room records its whole state
    /// (`document.compacted`) once this many updates were stored since the last time, and up
    /// to a quarter more, drawn per room so that rooms opened together do not compact together
    /// (or after 4 MiB of updates), so opening it reads one snapshot and a short tail.
    pub collab_compact_every: u64,
    /// `CAIRN_COLLAB_AWARENESS_TIMEOUT_SECONDS`: awareness (cursors, names) heard from another
    /// node is forgotten once it is this old without being renewed, so the clients of a node
    /// that died stop showing (fractions allowed; y-protocols clients renew every 15 s).
    pub collab_awareness_timeout: std::time::Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// `SMTP_URL` as it was given, password included: for the mail transport only.
    pub fn smtp_url_with_password(&self) -> Option<Url> {
        let mut url = self.smtp_url.clone()?;
        if let Some(password) = &self.smtp_password {
            // Cannot fail: the password was taken out of this very URL, so it has a host.
            let _ = url.set_password(Some(password.expose_secret()));
        }
        Some(url)
    }

    /// Reads settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let (smtp_url, smtp_password) =
            split_password(optional_url(&get, "SMTP_URL", &["smtp", "smtps"])?);
        Ok(Self {
            bind: parse(&get, "CAIRN_BIND", "127.0.0.1:3000", |v| {
                SocketAddr::from_str(v)
                    .map_err(|e| format!("expected host:port, such as 127.0.0.1:3000 ({e})"))
            })?,
            database: parse(
                &get,
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/cairn",
                |v| {
                    if !(v.starts_with("postgres://") || v.starts_with("postgresql://")) {
                        return Err("expected a postgres:// URL".to_owned());
                    }
                    let options = eventstore::parse_url(v)
                        .map_err(|e| format!("invalid PostgreSQL URL ({e})"))?;
                    // Without one, PostgreSQL picks the user's name (often the `postgres`
                    // maintenance database), and Cairn would move its tables in there.
                    match options.get_database() {
                        Some(name) if !name.is_empty() => Ok(options),
                        _ => {
                            Err("the URL names no database (add one: postgres://…/cairn)"
                                .to_owned())
                        }
                    }
                },
            )?,
            db_pool: parse(&get, "CAIRN_DB_POOL", "16", |v| match v.parse::<u32>() {
                Ok(n) if (2..=512).contains(&n) => Ok(n),
                _ => Err("expected a number of connections from 2 to 512".to_owned()),
            })?,
            nats_url: optional_url(&get, "NATS_URL", &["nats", "tls", "ws", "wss"])?,
            meilisearch_url: optional_url(&get, "MEILISEARCH_URL", &["http", "https"])?,
            smtp_url,
            smtp_password,
            smtp_ca_file: get("CAIRN_SMTP_CA_FILE").map(|v| PathBuf::from(v.trim())),
            storage_url: optional_url(&get, "STORAGE_URL", &["file", "s3"])?,
            data_dir: PathBuf::from(get("CAIRN_DATA_DIR").unwrap_or_else(|| "./data".to_owned())),
            public_url: parse(&get, "CAIRN_PUBLIC_URL", "http://localhost:3000", |v| {
                let url = Url::parse(v).map_err(|e| format!("invalid URL ({e})"))?;
                if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                    return Err("expected an http:// or https:// URL with a host".to_owned());
                }
                Ok(url)
            })?,
            log_format: parse(&get, "CAIRN_LOG_FORMAT", "pretty", |v| match v {
                "pretty" => Ok(LogFormat::Pretty),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected `pretty` or `json`".to_owned()),
            })?,
            secret_key: match get("CAIRN_SECRET_KEY") {
                None => None,
                Some(v) => Some(
                    parse_key(v.trim())
                        .map(MasterKey::from)
                        .map_err(|message| ConfigError {
                            var: "CAIRN_SECRET_KEY",
                            message,
                        })?,
                ),
            },
            dev_insecure_cookies: parse(&get, "CAIRN_DEV_INSECURE_COOKIES", "false", parse_bool)?,
            mail_from: parse(&get, "CAIRN_MAIL_FROM", "Cairn <cairn@localhost>", |v| {
                v.parse().map_err(|e| {
                    format!("expected a mailbox such as `Cairn <cairn@example.com>` ({e})")
                })
            })?,
            links_per_email: parse(&get, "CAIRN_LINKS_PER_EMAIL", "5", per_minute)?,
            links_per_ip: parse(&get, "CAIRN_LINKS_PER_IP", "30", per_minute)?,
            api_rate: parse(&get, "CAIRN_API_RATE", "1200", per_minute)?,
            anon_rate: parse(&get, "CAIRN_ANON_RATE", "300", per_minute)?,
            trusted_proxies: parse(&get, "CAIRN_TRUSTED_PROXIES", "", cidr_list)?,
            max_connections: parse(&get, "CAIRN_MAX_CONNECTIONS", "16000", |v| {
                match v.parse::<usize>() {
                    Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                    _ => Err("expected a number of connections from 1 to 1000000".to_owned()),
                }
            })?,
            header_timeout: parse(
                &get,
                "CAIRN_HEADER_TIMEOUT_SECONDS",
                "10",
                millis_or_seconds(1000),
            )?,
            link_ttl: parse(&get, "CAIRN_LINK_TTL_SECONDS", "900", |v| {
                match v.parse::<u64>() {
                    Ok(n) if (1..=86_400).contains(&n) => Ok(std::time::Duration::from_secs(n)),
                    _ => Err("expected a number of seconds from 1 to 86400".to_owned()),
                }
            })?,
            nats_stream: parse(&get, "CAIRN_NATS_STREAM", "CAIRN_EVENTS", |v| {
                nats_token(v, "a stream name")
            })?,
            nats_prefix: parse(&get, "CAIRN_NATS_PREFIX", "cairn", |v| {
                nats_token(v, "a subject token")
            })?,
            ws_ping: parse(&get, "CAIRN_WS_PING_SECONDS", "30", millis_or_seconds(1000))?,
            ws_timeout: parse(
                &get,
                "CAIRN_WS_TIMEOUT_SECONDS",
                "60",
                millis_or_seconds(1000),
            )?,
            ws_min_interval: parse(&get, "CAIRN_WS_MIN_INTERVAL_MS", "20", millis_or_seconds(1))?,
            ws_queue: parse(&get, "CAIRN_WS_QUEUE", "1024", |v| {
                match v.parse::<usize>() {
                    Ok(n) if (8..=1_000_000).contains(&n) => Ok(n),
                    _ => Err("expected a number of messages from 8 to 1000000".to_owned()),
                }
            })?,
            ws_replay_limit: parse(&get, "CAIRN_WS_REPLAY_LIMIT", "1000", |v| {
                match v.parse::<i64>() {
                    Ok(n) if (1..=100_000).contains(&n) => Ok(n),
                    _ => Err("expected a number of events from 1 to 100000".to_owned()),
                }
            })?,
            sse_heartbeat: parse(
                &get,
                "CAIRN_SSE_HEARTBEAT_SECONDS",
                "15",
                millis_or_seconds(1000),
            )?,
            ws_presence_limit: parse(&get, "CAIRN_WS_PRESENCE_LIMIT", "1000", |v| {
                match v.parse::<usize>() {
                    Ok(n) if n <= 1_000_000 => Ok(n),
                    _ => Err("expected a number of members from 0 to 1000000".to_owned()),
                }
            })?,
            collab_compact_every: parse(&get, "CAIRN_COLLAB_COMPACT_EVERY", "1000", |v| {
                match v.parse::<u64>() {
                    Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                    _ => Err("expected a number of updates from 1 to 1000000".to_owned()),
                }
            })?,
            collab_awareness_timeout: parse(
                &get,
                "CAIRN_COLLAB_AWARENESS_TIMEOUT_SECONDS",
                "30",
                millis_or_seconds(1000),
            )?,
        })
    }
}

fn parse<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
    f: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let value = get(var).unwrap_or_else(|| default.to_owned());
    f(value.trim()).map_err(|message| ConfigError { var, message })
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// A NATS name: letters, digits, `-` and `_` only.
fn nats_token(v: &str, what: &str) -> Result<String, String> {
    if !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "expected {what}: letters, digits, `-` and `_`, at most 64"
        ))
    }
}

/// A duration in whole units of `unit_ms` milliseconds (seconds or milliseconds), at least 1.
/// Fractions are allowed for seconds (`0.2`), so tests can use short heartbeats.
fn millis_or_seconds(unit_ms: u64) -> impl Fn(&str) -> Result<std::time::Duration, String> {
    move |v| match v.parse::<f64>() {
        Ok(n) if n > 0.0 && n * (unit_ms as f64) <= 86_400_000.0 => Ok(
            std::time::Duration::from_micros((n * unit_ms as f64 * 1000.0) as u64),
        ),
        _ if unit_ms == 1 => Err("expected a number of milliseconds, above 0".to_owned()),
        _ => Err("expected a number of seconds, above 0".to_owned()),
    }
}

fn per_minute(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of requests per minute, 1 or more".to_owned()),
    }
}

/// Comma-separated CIDR blocks (`10.0.0.0/8, fd00::/8`); a bare address is its own block.
fn cidr_list(v: &str) -> Result<Vec<IpNet>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("`{item}` is not a CIDR block such as 10.0.0.0/8 or an IP address")
                })
        })
        .collect()
}

/// A 256-bit key written as 64 hexadecimal digits.
pub fn parse_key(v: &str) -> Result<[u8; 32], String> {
    let bad =
        || "expected 64 hexadecimal digits (256 bits), e.g. from `openssl rand -hex 32`".to_owned();
    if v.len() != 64 {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(v.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(key)
}

/// `url` without its password, and the password.
fn split_password(url: Option<Url>) -> (Option<Url>, Option<SecretString>) {
    let Some(mut url) = url else {
        return (None, None);
    };
    let password = url.password().map(SecretString::from);
    if password.is_some() {
        // Cannot fail: a URL with a password has a host.
        let _ = url.set_password(None);
    }
    (Some(url), password)
}

fn optional_url(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    schemes: &[&str],
) -> Result<Option<Url>, ConfigError> {
    let Some(raw) = get(var) else {
        return Ok(None);
    };
    let url = Url::parse(raw.trim()).map_err(|e| ConfigError {
        var,
        message: format!("invalid URL ({e})"),
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError {
            var,
            message: format!(
                "unsupported scheme `{}`; expected one of {}",
                url.scheme(),
                schemes.join(", ")
            ),
        });
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_work() {
        let c = with(&[]).expect("defaults are valid");
        assert_eq!(c.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database.get_database(), Some("cairn"));
        assert!(c.nats_url.is_none());
        assert_eq!(c.public_url.as_str(), "http://localhost:3000/");
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.max_connections, 16_000);
        assert_eq!(c.header_timeout, std::time::Duration::from_secs(10));
        assert_eq!(c.sse_heartbeat, std::time::Duration::from_secs(15));
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = "ab".repeat(32);
        let c = with(&[
            ("CAIRN_SECRET_KEY", &key),
            ("SMTP_URL", "smtp://mailer:s3cr%40t-pw@mail.example.com:587"),
        ])
        .expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr"), "the SMTP password shows: {shown}");
        assert!(
            !shown.contains("171") && !shown.contains(&key[..8]),
            "the master key shows: {shown}"
        );
        assert!(shown.contains("mail.example.com"), "the rest still shows");
        // The transport still gets the URL as it was given.
        assert_eq!(
            c.smtp_url_with_password().map(String::from).as_deref(),
            Some("smtp://mailer:s3cr%40t-pw@mail.example.com:587")
        );
    }

    #[test]
    fn trusted_proxies_are_a_list_of_blocks() {
        let c =
            with(&[("CAIRN_TRUSTED_PROXIES", " 10.1.2.3/8, 192.0.2.1 ,fd00::/8,")]).expect("valid");
        let blocks: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(blocks, ["10.0.0.0/8", "192.0.2.1/32", "fd00::/8"]);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("DATABASE_URL", "not a url"),
            ("DATABASE_URL", "mysql://x/y"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/"),
            ("CAIRN_BIND", "localhost"),
            ("NATS_URL", "http://x"),
            ("CAIRN_PUBLIC_URL", "ftp://x"),
            ("CAIRN_LOG_FORMAT", "xml"),
            ("CAIRN_DB_POOL", "1"),
            ("CAIRN_SECRET_KEY", "abc"),
            ("CAIRN_DEV_INSECURE_COOKIES", "maybe"),
            ("CAIRN_MAIL_FROM", "not a mailbox"),
            ("CAIRN_LINKS_PER_EMAIL", "0"),
            ("CAIRN_WS_PRESENCE_LIMIT", "-1"),
            ("CAIRN_WS_PRESENCE_LIMIT", "1000001"),
            ("CAIRN_ANON_RATE", "0"),
            ("CAIRN_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local"),
            ("CAIRN_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("CAIRN_MAX_CONNECTIONS", "0"),
            ("CAIRN_HEADER_TIMEOUT_SECONDS", "soon"),
            ("CAIRN_SSE_HEARTBEAT_SECONDS", "0"),
        ] {
            let err = with(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var);
            assert!(err.to_string().starts_with(var));
            assert!(!err.to_string().contains('\n'));
        }
    }
}
