//! Extractors whose rejections use the API error shape.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use commands::{Actor, CommandId, Metadata};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::http::error::{ApiError, ErrorCode};

/// `axum::Json`, answering bad bodies with 400/413 in the API shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::new(ErrorCode::InvalidBody, e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(ErrorCode::MalformedJson, e.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedContentType,
            "expected `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(e)
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::PayloadTooLarge
        }
        other => ApiError::new(ErrorCode::InvalidBody, other.body_text()),
    }
}

/// `axum::extract::Path`, answering bad segments with 400.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e: PathRejection| ApiError::new(ErrorCode::InvalidPath, e.body_text()))
    }
}

/// `axum::extract::Query`, answering bad parameters with 400.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| ApiError::new(ErrorCode::InvalidQuery, e.body_text()))
    }
}

/// Parses an id from a path segment, naming what was expected.
pub fn parse_id<T: std::str::FromStr>(raw: &str, what: &'static str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidId,
            format!("`{raw}` is not a valid {what} id"),
        )
    })
}

/// The command metadata a request carries: actor, idempotency key, request details.
#[derive(Debug, Clone)]
pub struct RequestMeta(pub Metadata);

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Anonymous requests that reach a command (sign-in) are recorded as the system's.
        let actor = parts
            .extensions
            .get::<crate::http::principal::Caller>()
            .and_then(|c| c.0.as_ref())
            .map_or(Actor::System, crate::http::principal::Principal::actor);
        let headers = &parts.headers;
        let mut meta = Metadata::new(actor.clone());
        if let Some(key) = headers.get("idempotency-key") {
            let key = key
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::InvalidIdempotencyKey,
                        format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
                    )
                })?;
            meta.command_id = CommandId::from_idempotency_key(&actor, key);
        }
        meta.correlation_id = header(headers, "x-correlation-id")
            .and_then(|v| Uuid::parse_str(&v).ok())
            .unwrap_or(meta.command_id.id());
        meta.request_id = header(headers, "x-request-id");
        meta.user_agent = header(headers, "user-agent");
        meta.ip = parts
            .extensions
            .get::<ClientIp>()
            .map(|c| c.0)
            .or_else(|| peer(parts))
            .map(|ip| ip.to_string());
        Ok(Self(meta))
    }
}

/// The socket peer's address.
fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_canonical())
}

/// The client's address: the one place that decides it (rate limits, sign-in link limits,
/// the `ip` in event metadata).
///
/// It is the socket peer, unless the peer is a trusted proxy (`CAIRN_TRUSTED_PROXIES`): then
/// it is the right-most `X-Forwarded-For` address that is not a trusted proxy itself. Every
/// address left of that one was written by the client and is not believed.
///
/// Resolved once per request by [`crate::http::auth::authenticate`]; as an extractor it reads that
/// answer (or the socket peer where the middleware did not run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The most `X-Forwarded-For` hops looked at, from the right.
const MAX_HOPS: usize = 32;

impl ClientIp {
    /// The client of a request from `peer` with `headers`.
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Self {
        let peer = peer.to_canonical();
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
        if !is_trusted(&peer) {
            return Self(peer);
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            // A value that is not text stops the walk like an unparseable hop.
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let hop = hop.trim();
            let Some(ip) = hop
                .parse::<IpAddr>()
                .ok()
                .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
            else {
                // Garbage from a trusted hop: the last address we could vouch for stands.
                break;
            };
            client = ip.to_canonical();
            if !is_trusted(&client) {
                break;
            }
        }
        Self(client)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or_else(|| Self(peer(parts).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))))
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(512).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().expect("header"));
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_peer() {
        let headers = forwarded(&["198.51.100.7"]);
        let none = ClientIp::resolve(ip("192.0.2.1"), &headers, &[]);
        assert_eq!(none.0, ip("192.0.2.1"), "no proxies trusted");
        let other = ClientIp::resolve(ip("192.0.2.1"), &headers, &nets(&["10.0.0.0/8"]));
        assert_eq!(other.0, ip("192.0.2.1"), "the peer is not a trusted proxy");
        let trusted = ClientIp::resolve(ip("10.0.0.5"), &headers, &nets(&["10.0.0.0/8"]));
        assert_eq!(trusted.0, ip("198.51.100.7"));
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        let headers = forwarded(&["203.0.113.9, 198.51.100.7", "10.2.3.4 , fd00::1"]);
        let client = ClientIp::resolve(ip("10.0.0.5"), &headers, &trusted);
        assert_eq!(client.0, ip("198.51.100.7"));
        // Only proxies: the left-most one is the closest thing to a client.
        let headers = forwarded(&["10.9.9.9, 10.2.3.4"]);
        assert_eq!(
            ClientIp::resolve(ip("10.0.0.5"), &headers, &trusted).0,
            ip("10.9.9.9")
        );
        // Garbage stops the walk at the last address a trusted hop vouched for.
        let headers = forwarded(&["198.51.100.7, nonsense, 10.2.3.4"]);
        assert_eq!(
            ClientIp::resolve(ip("10.0.0.5"), &headers, &trusted).0,
            ip("10.2.3.4")
        );
        // Ports and IPv4-mapped addresses.
        let headers = forwarded(&["[2001:db8::1]:4711, ::ffff:198.51.100.8"]);
        assert_eq!(
            ClientIp::resolve(ip("::ffff:10.0.0.5"), &headers, &trusted).0,
            ip("198.51.100.8")
        );
    }
}
