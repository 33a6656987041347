//! In-process rate limits: GCRA from the `governor` crate, one state per key. Limits are per
//! node: with N nodes a client can reach N times a limit, which is acceptable for abuse
//! control and keeps every check in memory.
//!
//! Keys are forgotten once their state equals a fresh one ([`Limits::retain_recent`], every
//! [`SWEEP`]), so the maps hold only the keys seen within about a minute.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Config;

/// How often idle keys are dropped from every limiter.
pub const SWEEP: Duration = Duration::from_secs(30);

/// `per_minute` requests per key, with bursts up to the same number.
#[derive(Debug)]
pub struct RateLimiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing `per_minute` requests per key (at least one).
    pub fn per_minute(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request for `key`, or says how long until one is allowed.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose state equals a fresh one.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// The client address a limit is keyed by: an IPv4 address, or an IPv6 address's /64 (one
/// subscriber usually holds a whole /64, so single addresses would cost nothing to rotate).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Whether a request for `path` made without signing in takes from the client address's
/// `CAIRN_ANON_RATE` budget: the anonymous routes that reach the database or hold a socket.
pub fn anonymous_limited(path: &str) -> bool {
    matches!(path, "/ws" | "/metrics" | "/readyz") || path.starts_with("/auth/verify/")
}

/// Every rate limiter of a node.
#[derive(Debug)]
pub struct Limits {
    /// `CAIRN_LINKS_PER_EMAIL`, keyed by the address's blind index.
    pub links_per_email: RateLimiter<String>,
    /// `CAIRN_LINKS_PER_IP`, keyed by [`ip_key`].
    pub links_per_ip: RateLimiter<IpAddr>,
    /// `CAIRN_API_RATE`, keyed by session or API key.
    pub api: RateLimiter<String>,
    /// `CAIRN_ANON_RATE`: anonymous `/ws` handshakes and subscribes, `/auth/verify`,
    /// `/metrics` and `/readyz`, keyed by [`ip_key`].
    pub anonymous: RateLimiter<IpAddr>,
}

impl Limits {
    /// The limits `config` asks for.
    pub fn new(config: &Config) -> Self {
        Self {
            links_per_email: RateLimiter::per_minute(config.links_per_email),
            links_per_ip: RateLimiter::per_minute(config.links_per_ip),
            api: RateLimiter::per_minute(config.api_rate),
            anonymous: RateLimiter::per_minute(config.anon_rate),
        }
    }

    /// Takes one anonymous request from `client` (keyed by [`ip_key`]).
    pub fn anonymous(&self, client: IpAddr) -> Result<(), Duration> {
        self.anonymous.check(&ip_key(client))
    }

    /// Takes one sign-in link request from `client` (keyed by [`ip_key`]).
    pub fn link_from(&self, client: IpAddr) -> Result<(), Duration> {
        self.links_per_ip.check(&ip_key(client))
    }

    /// Forgets idle keys in every limiter (see [`SWEEP`]).
    pub fn retain_recent(&self) {
        self.links_per_email.retain_recent();
        self.links_per_ip.retain_recent();
        self.api.retain_recent();
        self.anonymous.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_request_in_a_minute_waits() {
        let limiter = RateLimiter::per_minute(5);
        for _ in 0..5 {
            assert!(limiter.check(&"a".to_owned()).is_ok());
        }
        let wait = limiter
            .check(&"a".to_owned())
            .expect_err("sixth is limited");
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        assert!(
            limiter.check(&"b".to_owned()).is_ok(),
            "keys are independent"
        );
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let limiter = RateLimiter::per_minute(60_000);
        for i in 0..1000 {
            assert!(limiter.check(&i).is_ok());
        }
        assert_eq!(limiter.len(), 1000);
        std::thread::sleep(Duration::from_millis(5));
        limiter.retain_recent();
        assert!(limiter.is_empty(), "{} keys left", limiter.len());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(ip_key(mapped), "192.0.2.7".parse::<IpAddr>().expect("ip"));
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_ne!(ip_key(v4), ip_key("192.0.2.8".parse().expect("ip")));
    }
}
