//! The few HTML pages Cairn serves itself: the home page, the sign-in flow, and published
//! documents (`/p/{org}/{slug}`, readable without signing in).
//!
//! `GET /auth/verify/{token}` only shows a confirm button, because mail scanners prefetch
//! links; the POST consumes the token.

use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use commands::CommandError;
use domain::account::AccountError;
use domain::Email;
use projections::consumers::mailer::Mail;
use serde::Deserialize;
use serde_json::json;

use crate::http::auth::with_session_cookie;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{ApiJson, ApiPath, ClientIp, RequestMeta};
use crate::http::principal::{MaybeAuth, Via};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/auth/send-link", post(send_link))
        .route("/auth/verify/{token}", get(confirm_page).post(verify))
        .route("/auth/logout", post(logout))
        .route("/p/{org}/{slug}", get(published))
}

/// A published document as a plain page: its title and its text, one paragraph per line.
/// Anyone may read it; an unknown organization, slug, or a document taken down or deleted is
/// the same 404 page.
async fn published(
    State(state): State<AppState>,
    ApiPath((org, slug)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let missing = || page(StatusCode::NOT_FOUND, "Not found", "<p>No such page.</p>");
    let (Ok(org), Ok(slug)) = (
        org.parse::<domain::OrgId>(),
        domain::document::Slug::parse(&slug),
    ) else {
        return Ok(missing());
    };
    let pool = ready.store.pool();
    let Some((doc, title)) =
        projections::read_models::documents::published(pool, org, slug.as_str()).await?
    else {
        return Ok(missing());
    };
    let content = projections::read_models::documents::content(&ready.store, doc, None).await?;
    let body: String = content
        .text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| format!("<p>{}</p>", escape(line)))
        .collect();
    Ok(page(StatusCode::OK, &title, &body))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Cairn</title><style>body{{font:16px system-ui,sans-serif;max-width:32rem;\
         margin:4rem auto;padding:0 1rem}}button,input{{font:inherit;padding:.4rem .8rem}}</style>\
         </head><body><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    );
    (status, Html(html)).into_response()
}

fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
}

async fn home(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
) -> Result<Response, ApiError> {
    let Some(caller) = caller else {
        return Ok(page(
            StatusCode::OK,
            "Sign in",
            "<form method=\"post\" action=\"/auth/send-link\">\
             <p><label>Email <input type=\"email\" name=\"email\" required autofocus></label></p>\
             <p><button>Email me a sign-in link</button></p></form>",
        ));
    };
    let ready = state.ready()?;
    let email = match projections::read_models::identity::account(
        ready.store.pool(),
        caller.user_id.as_uuid(),
    )
    .await?
    {
        Some(account) => match account.email_sealed {
            Some(sealed) => ready.identity.vault().opener().open(&sealed).await?,
            None => eventstore::vault::ERASED.to_owned(),
        },
        None => String::new(),
    };
    Ok(page(
        StatusCode::OK,
        "Cairn",
        &format!(
            "<p>Signed in as <strong>{}</strong>.</p>\
             <form method=\"post\" action=\"/auth/logout\"><button>Sign out</button></form>",
            escape(&email)
        ),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    email: String,
}

/// `{ "email" }` as JSON, or `email=` from the home page's form.
struct EmailInput {
    email: String,
    from_form: bool,
}

impl<S: Send + Sync> FromRequest<S> for EmailInput {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let Form(body) = Form::<EmailBody>::from_request(req, state)
                .await
                .map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.body_text()))?;
            Ok(Self {
                email: body.email,
                from_form: true,
            })
        } else {
            let ApiJson(body) = ApiJson::<EmailBody>::from_request(req, state).await?;
            Ok(Self {
                email: body.email,
                from_form: false,
            })
        }
    }
}

/// The one answer to every accepted request, known address or not.
const SENT: &str =
    "If the address can receive mail, a sign-in link is on its way. It works once, for 15 minutes.";

async fn send_link(
    State(state): State<AppState>,
    meta: RequestMeta,
    ClientIp(client): ClientIp,
    input: EmailInput,
) -> Result<Response, ApiError> {
    let limited = |retry_after| ApiError::RateLimited { retry_after };
    state.limits().link_from(client).map_err(limited)?;
    let email = Email::parse(&input.email).map_err(ApiError::from)?;
    let ready = state.ready()?;
    let index = ready.identity.vault().email_index(email.as_str());
    let key = eventstore::encode::hex(index);
    state
        .limits()
        .links_per_email
        .check(&key)
        .map_err(limited)?;

    // Answer first and do the work in the background, so that a known address and one seen
    // for the first time (which costs a new subject key) take the same time to answer.
    let permit = state
        .link_workers()
        .try_acquire_owned()
        .map_err(|_| limited(std::time::Duration::from_secs(1)))?;
    let worker = state.clone();
    state.tasks().spawn(async move {
        let _permit = permit;
        if let Err(e) = deliver_link(&worker, &email, &meta.0).await {
            tracing::warn!("sign-in link not sent: {e}");
        }
    });
    if input.from_form {
        return Ok(page(
            StatusCode::ACCEPTED,
            "Check your mail",
            &format!("<p>{SENT}</p>"),
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "accepted", "message": SENT})),
    )
        .into_response())
}

/// Records the link request and queues the mail.
async fn deliver_link(
    state: &AppState,
    email: &Email,
    meta: &commands::Metadata,
) -> Result<(), ApiError> {
    let ready = state.ready()?;
    let link = match ready.identity.request_magic_link(email, meta).await {
        Ok(link) => link,
        // Five live links, or fifty sent today: the requester was told the same as always,
        // and this request sends nothing (see `domain::account::MAX_LIVE_LINKS`).
        Err(CommandError::Domain(AccountError::TooManyLinks)) => {
            tracing::info!("sign-in link not sent: the address has reached its link limit");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let url = state
        .config()
        .public_url
        .join(&format!("auth/verify/{}", link.token))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut mail = sign_in_mail(email, url.as_str());
    mail.discard_after = Some(state.config().link_ttl);
    ready.outbox.enqueue(link.user_id.as_uuid(), mail).await?;
    if state.mail_to_files() {
        // Development only: mail goes to files, so make the link easy to find.
        tracing::info!(link = %url, "sign-in link written to the mail outbox folder");
    }
    Ok(())
}

fn sign_in_mail(email: &Email, url: &str) -> Mail {
    Mail {
        discard_after: None,
        to: email.as_str().to_owned(),
        subject: "Your Cairn sign-in link".to_owned(),
        text: format!(
            "Sign in to Cairn by opening this link:\r\n\r\n{url}\r\n\r\n\
             It works once, for 15 minutes. If you did not ask for it, ignore this mail.\r\n"
        ),
        html: format!(
            "<p>Sign in to Cairn:</p><p><a href=\"{u}\">Sign in</a></p>\
             <p>It works once, for 15 minutes. If you did not ask for it, ignore this mail.</p>",
            u = escape(url)
        ),
    }
}

/// Whether `token` has the shape Cairn issues (`<hex>.<base64url>`), so that it can be put in a
/// form action verbatim (a crafted path could otherwise point the button elsewhere).
fn plausible_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 200
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

async fn confirm_page(ApiPath(token): ApiPath<String>) -> Response {
    if !plausible_token(&token) {
        return invalid_link_page();
    }
    page(
        StatusCode::OK,
        "Sign in to Cairn",
        &format!(
            "<form method=\"post\" action=\"/auth/verify/{}\">\
             <p><button autofocus>Sign in</button></p></form>",
            escape(&token)
        ),
    )
}

fn invalid_link_page() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Link not valid",
        "<p>This sign-in link is invalid or has expired. \
         <a href=\"/\">Request a new one</a>.</p>",
    )
}

async fn verify(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let signed_in = match ready.identity.consume_magic_link(&token, &meta.0).await {
        Ok(s) => s,
        Err(CommandError::Domain(AccountError::LinkInvalid)) => return Ok(invalid_link_page()),
        Err(e) => return Err(e.into()),
    };
    // The next request carries the cookie: make sure the session is readable by then.
    ready.identity_caught_up(signed_in.receipt.cursor).await;
    let max_age = (signed_in.expires_at - time::OffsetDateTime::now_utc()).whole_seconds();
    Ok(with_session_cookie(
        see_other("/"),
        &state,
        &signed_in.token,
        max_age,
    ))
}

async fn logout(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    if let Some(caller) = caller {
        if let Via::Session { session_id, .. } = caller.via {
            let ready = state.ready()?;
            let receipt = ready
                .identity
                .revoke_session(caller.user_id, session_id, &meta.0)
                .await?;
            // The cookie goes either way; a revocation not yet enforced says so (503).
            if let Err(e) = ready.identity_applied(receipt.cursor).await {
                return Ok(with_session_cookie(e.into_response(), &state, "", 0));
            }
        }
    }
    Ok(with_session_cookie(see_other("/"), &state, "", 0))
}
