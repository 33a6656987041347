//! Labels and categories: the tags of a task board.

use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, patch};
use axum::{Json, Router};
use commands::OnBoard;
use domain::label::{Category, Color, Label, TagCommand, TagError, TagRequest};
use domain::{Name, OrgId, Scope};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::api::doc::{
    BadRequest, Conflict, Forbidden, IdempotencyKey, NotFound, PayloadTooLarge, TooManyRequests,
    Unauthorized, Unavailable, Unprocessable,
};
use crate::api::paging::ListQuery;
use crate::api::receipt::{created, written, Created, Written};
use crate::http::error::ApiError;
use crate::http::extract::{parse_id, ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::http::principal::{Auth, Principal};
use crate::state::AppState;

use crate::api::board::{readable, run};

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

/// The operations of [`router`], for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(
    list_labels,
    create_label,
    update_label,
    delete_label,
    list_categories,
    create_category,
    update_category,
    delete_category
))]
pub(super) struct Doc;

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

/// A new label or category.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTag {
    /// 1 to 100 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 100, example = "Bug")]
    name: String,
    /// `#rrggbb`.
    #[schema(pattern = "^\\s*#[0-9A-Fa-f]{6}\\s*$", example = "#d73a4a")]
    color: String,
}

/// A change to a label or category: what is given (and not `null`) changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TagPatch {
    /// 1 to 100 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 100, example = "Bug")]
    name: Option<String>,
    /// `#rrggbb`.
    #[schema(pattern = "^\\s*#[0-9A-Fa-f]{6}\\s*$", example = "#d73a4a")]
    color: Option<String>,
}

/// A label or category.
#[derive(Debug, Serialize, ToSchema)]
struct Tag {
    /// Its id.
    id: Uuid,
    /// Its name.
    name: String,
    /// Its color, `#rrggbb`.
    color: String,
}

/// A page of an organization's labels, by name.
#[derive(Debug, Serialize, ToSchema)]
struct LabelsPage {
    /// The labels.
    labels: Vec<Tag>,
    /// Pass as `page` for the next page; `null` on the last.
    next: Option<String>,
}

/// A page of an organization's categories, by name.
#[derive(Debug, Serialize, ToSchema)]
struct CategoriesPage {
    /// The categories.
    categories: Vec<Tag>,
    /// Pass as `page` for the next page; `null` on the last.
    next: Option<String>,
}

fn tag_name(raw: &str) -> Result<Name, ApiError> {
    Name::parse("name", raw).map_err(ApiError::from)
}

fn tag_color(raw: &str) -> Result<Color, ApiError> {
    Color::parse(raw).map_err(ApiError::from)
}

/// Which tags a list shows: `labels` or `categories`.
#[derive(Debug, Clone, Copy)]
enum Tags {
    Labels,
    Categories,
}

async fn list_tags(
    state: &AppState,
    caller: &Principal,
    org: &str,
    q: &ListQuery,
    tags: Tags,
) -> Result<(Vec<Tag>, Option<String>), ApiError> {
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
    let items = rows
        .into_iter()
        .map(|t| Tag {
            id: t.id,
            name: t.name,
            color: t.color,
        })
        .collect();
    Ok((items, next))
}

async fn tag_command<A>(
    state: &AppState,
    caller: &Principal,
    org: &str,
    id: Uuid,
    command: TagCommand,
    meta: RequestMeta,
    is_new: bool,
) -> Result<Response, ApiError>
where
    commands::Commands: commands::Dispatch<A>,
    A: OnBoard<Asked = TagCommand, Command = TagRequest, Error = TagError> + Clone,
{
    caller.require(Scope::TasksWrite)?;
    let org: OrgId = parse_id(org, "organization")?;
    let receipt = run::<A>(state, &id.to_string(), command, meta, org).await?;
    Ok(if is_new {
        created(&receipt, id)
    } else {
        written(&receipt)
    })
}

macro_rules! tag_routes {
    ($list:ident, $create:ident, $update:ident, $delete:ident, $agg:ty, $tags:expr, $purpose:literal, $page:ident, $items:ident, $path:literal, $item_path:literal, $names:literal, $name:literal, $op:literal, $ops:literal) => {
        #[utoipa::path(
            get,
            path = $path,
            tag = "board",
            operation_id = concat!("list", $ops),
            summary = concat!("The organization's ", $names, ", by name (any member; scope tasks:read)"),
            params(("org" = Uuid, Path, description = "The organization"), ListQuery),
            responses(
                (status = 200, description = concat!("A page of ", $names), body = $page),
                BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable
            )
        )]
        async fn $list(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath(org): ApiPath<String>,
            ApiQuery(q): ApiQuery<ListQuery>,
        ) -> Result<Json<$page>, ApiError> {
            let (items, next) = list_tags(&state, &caller, &org, &q, $tags).await?;
            Ok(Json($page { $items: items, next }))
        }

        #[utoipa::path(
            post,
            path = $path,
            tag = "board",
            operation_id = concat!("create", $op),
            summary = concat!("Create a ", $name, " (content.manage", $ops, "; scope tasks:write)"),
            params(("org" = Uuid, Path, description = "The organization"), IdempotencyKey),
            request_body = NewTag,
            responses(
                Created, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
                Unprocessable, TooManyRequests, Unavailable
            )
        )]
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

        #[utoipa::path(
            patch,
            path = $item_path,
            tag = "board",
            operation_id = concat!("update", $op),
            summary = concat!("Rename or recolor a ", $name, " (content.manage", $ops, "; scope tasks:write)"),
            params(
                ("org" = Uuid, Path, description = "The organization"),
                ("id" = Uuid, Path, description = concat!("The ", $name)),
                IdempotencyKey
            ),
            request_body = TagPatch,
            responses(
                Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
                Unprocessable, TooManyRequests, Unavailable
            )
        )]
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

        #[utoipa::path(
            delete,
            path = $item_path,
            tag = "board",
            operation_id = concat!("delete", $op),
            summary = concat!("Delete a ", $name, " (content.manage", $ops, "; scope tasks:write)"),
            params(
                ("org" = Uuid, Path, description = "The organization"),
                ("id" = Uuid, Path, description = concat!("The ", $name)),
                IdempotencyKey
            ),
            responses(
                Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooManyRequests,
                Unavailable
            )
        )]
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
    "label",
    LabelsPage,
    labels,
    "/orgs/{org}/labels",
    "/orgs/{org}/labels/{id}",
    "labels",
    "label",
    "Label",
    "Labels"
);
tag_routes!(
    list_categories,
    create_category,
    update_category,
    delete_category,
    Category,
    Tags::Categories,
    "category",
    CategoriesPage,
    categories,
    "/orgs/{org}/categories",
    "/orgs/{org}/categories/{id}",
    "categories",
    "category",
    "Category",
    "Categories"
);
