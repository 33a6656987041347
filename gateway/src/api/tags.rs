//! Labels and categories: the tags of a task board.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, patch};
use axum::{Json, Router};
use commands::OnBoard;
use domain::label::{Category, Color, Label, TagCommand, TagError, TagRequest};
use domain::{Name, OrgId, Scope};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::paging::ListQuery;
use crate::api::receipt::written;
use crate::http::error::ApiError;
use crate::http::extract::{parse_id, ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::http::principal::{Auth, Principal};
use crate::state::AppState;

use crate::api::board::{readable, run, unprocessable};

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/orgs/{org}/labels"),
    (Method::POST, "/orgs/{org}/labels"),
    (Method::PATCH, "/orgs/{org}/labels/{id}"),
    (Method::DELETE, "/orgs/{org}/labels/{id}"),
    (Method::GET, "/orgs/{org}/categories"),
    (Method::POST, "/orgs/{org}/categories"),
    (Method::PATCH, "/orgs/{org}/categories/{id}"),
    (Method::DELETE, "/orgs/{org}/categories/{id}"),
];

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/labels", get(list_labels).post(create_label))
        .route(
            "/orgs/{org}/labels/{id}",
            patch(update_label).delete(delete_label),
        )
        .route(
            "/orgs/{org}/categories",
            get(list_categories).post(create_category),
        )
        .route(
            "/orgs/{org}/categories/{id}",
            patch(update_category).delete(delete_category),
        )
}

// ---- labels and categories ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTag {
    name: String,
    color: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagPatch {
    name: Option<String>,
    color: Option<String>,
}

fn tag_name(raw: &str) -> Result<Name, ApiError> {
    Name::parse("name", raw).map_err(|e| unprocessable("validation_failed", e.to_string()))
}

fn tag_color(raw: &str) -> Result<Color, ApiError> {
    Color::parse(raw).map_err(|e| unprocessable("validation_failed", e.to_string()))
}

/// Which tags a list shows: `labels` or `categories` (also the list's field in the JSON).
#[derive(Debug, Clone, Copy)]
enum Tags {
    Labels,
    Categories,
}

impl Tags {
    fn field(self) -> &'static str {
        match self {
            Self::Labels => "labels",
            Self::Categories => "categories",
        }
    }
}

async fn list_tags(
    state: &AppState,
    caller: &Principal,
    org: &str,
    q: &ListQuery,
    tags: Tags,
) -> Result<Json<Value>, ApiError> {
    let paging = q.paging()?;
    let ready = state.ready()?;
    let org = readable(
        ready,
        org,
        caller,
        q.after.as_deref(),
        projections::read_models::board::NAME,
    )
    .await?;
    let after = paging.after();
    let pool = ready.store.pool();
    let mut rows = match tags {
        Tags::Labels => {
            projections::read_models::board::labels(pool, org, after, paging.fetch()).await?
        }
        Tags::Categories => {
            projections::read_models::board::categories(pool, org, after, paging.fetch()).await?
        }
    };
    let next = paging.finish(&mut rows, |t| (t.name.clone(), t.id));
    let items: Vec<Value> = rows
        .into_iter()
        .map(|t| json!({"id": t.id, "name": t.name, "color": t.color}))
        .collect();
    Ok(Json(json!({ tags.field(): items, "next": next })))
}

async fn tag_command<A>(
    state: &AppState,
    caller: &Principal,
    org: &str,
    id: Uuid,
    command: TagCommand,
    meta: RequestMeta,
    created: bool,
) -> Result<Response, ApiError>
where
    commands::Commands: commands::Dispatch<A>,
    A: OnBoard<Asked = TagCommand, Command = TagRequest, Error = TagError> + Clone,
{
    caller.require(Scope::TasksWrite)?;
    let org: OrgId = parse_id(org, "organization")?;
    let receipt = run::<A>(state, &id.to_string(), command, meta, org).await?;
    Ok(if created {
        written(StatusCode::CREATED, &receipt, json!({ "id": id }))
    } else {
        written(StatusCode::OK, &receipt, json!({}))
    })
}

macro_rules! tag_routes {
    ($list:ident, $create:ident, $update:ident, $delete:ident, $agg:ty, $tags:expr, $purpose:literal) => {
        async fn $list(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath(org): ApiPath<String>,
            ApiQuery(q): ApiQuery<ListQuery>,
        ) -> Result<Json<Value>, ApiError> {
            list_tags(&state, &caller, &org, &q, $tags).await
        }

        async fn $create(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath(org): ApiPath<String>,
            meta: RequestMeta,
            ApiJson(body): ApiJson<NewTag>,
        ) -> Result<Response, ApiError> {
            let org_id: OrgId = parse_id(&org, "organization")?;
            let command = TagCommand::Create {
                org_id,
                name: tag_name(&body.name)?,
                color: tag_color(&body.color)?,
            };
            let id = meta.0.command_id.derive_id($purpose);
            tag_command::<$agg>(&state, &caller, &org, id, command, meta, true).await
        }

        async fn $update(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath((org, id)): ApiPath<(String, String)>,
            meta: RequestMeta,
            ApiJson(body): ApiJson<TagPatch>,
        ) -> Result<Response, ApiError> {
            let id: Uuid = parse_id(&id, $purpose)?;
            let command = TagCommand::Update {
                name: body.name.as_deref().map(tag_name).transpose()?,
                color: body.color.as_deref().map(tag_color).transpose()?,
            };
            tag_command::<$agg>(&state, &caller, &org, id, command, meta, false).await
        }

        async fn $delete(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath((org, id)): ApiPath<(String, String)>,
            meta: RequestMeta,
        ) -> Result<Response, ApiError> {
            let id: Uuid = parse_id(&id, $purpose)?;
            tag_command::<$agg>(&state, &caller, &org, id, TagCommand::Delete, meta, false).await
        }
    };
}

tag_routes!(
    list_labels,
    create_label,
    update_label,
    delete_label,
    Label,
    Tags::Labels,
    "label"
);
tag_routes!(
    list_categories,
    create_category,
    update_category,
    delete_category,
    Category,
    Tags::Categories,
    "category"
);
