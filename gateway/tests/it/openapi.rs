//! The generated OpenAPI document against the running server: every `$ref` resolves to a
//! schema, every error response is the one `Error` schema, and an OpenAPI-driven property test
//! sends generated requests (valid and invalid path, query, header and body values, walked
//! from the document's own schemas) to every operation, signed in as the administrator of a
//! real organization, and finds no 5xx and no status the operation does not document. Each
//! answer's body must match the schema documented for its status.
//!
//! The cases are drawn from a seeded generator (`CAIRN_OPENAPI_SEED` picks another seed; the
//! seed is printed with any failure), [`CASES`] per operation.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::support::{self, json_with, spawn_app_with, str_of, user_id_of, TestApp};

/// Generated requests per operation.
const CASES: usize = 10;

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    json_with(
        app.http
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .expect("send"),
        200,
    )
    .await
}

/// Every `$ref` in `value`, with where it was found.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    if let Some(target) = v.as_str() {
                        out.push((at.to_owned(), target.to_owned()));
                    }
                } else {
                    refs(v, &format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Each operation in the document: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_ref_resolves_and_every_error_is_the_one_error_schema() {
    let app = support::spawn_app().await;
    let doc = document(&app).await;
    app.stop().await;

    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    let mut found = Vec::new();
    refs(&doc, "#", &mut found);
    assert!(!found.is_empty());
    let mut used = BTreeSet::new();
    for (at, target) in &found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{at}: `{target}` is not a component schema"));
        assert!(
            schemas.contains_key(name),
            "{at}: `{target}` has no schema behind it"
        );
        used.insert(name.to_owned());
    }
    // Every schema is a type's: it says what it is, and something refers to it.
    for (name, schema) in schemas {
        let says = ["type", "oneOf", "anyOf", "allOf", "enum", "$ref"]
            .iter()
            .any(|k| schema.get(*k).is_some());
        assert!(says, "schema `{name}` says nothing: {schema}");
        assert!(
            used.contains(name) || name == "Error" || name == "ErrorCode",
            "schema `{name}` is documented but nothing refers to it"
        );
    }
    // The error codes are the server's closed set.
    let documented: BTreeSet<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let closed: BTreeSet<&str> = gateway::error_codes().into_iter().map(|(c, _)| c).collect();
    assert_eq!(documented, closed);

    for (method, path, op) in operations(&doc) {
        let label = format!("{} {path}", method.to_uppercase());
        let responses = op["responses"].as_object().expect("responses");
        for status in ["401", "429", "503"] {
            assert!(
                responses.contains_key(status),
                "{label} does not document {status}"
            );
        }
        for (status, response) in responses {
            let code: u16 = status.parse().expect("numeric status");
            if code >= 400 {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{label} {status}: an error response is the Error schema"
                );
            }
        }
        assert!(op["operationId"].is_string(), "{label} has no operationId");
    }
}

// ---- the property test ----

/// The real things a request can name: ids of the organization and its contents.
struct Fixture {
    org: String,
    user: String,
    team: String,
    label: String,
    category: String,
    task: String,
    comment: String,
    api_key: String,
}

impl Fixture {
    async fn new(app: &TestApp, admin: &reqwest::Client) -> Self {
        let org = app.create_org_as(admin, "Acme").await;
        let user = user_id_of(app, admin).await;
        let base = format!("/api/v1/orgs/{org}");
        let created = |body: Value| str_of(&body, "id");
        let team = created(
            json_with(
                app.post_as(admin, &format!("{base}/teams"), json!({"name": "Core"}))
                    .await,
                201,
            )
            .await,
        );
        let label = created(
            json_with(
                app.post_as(
                    admin,
                    &format!("{base}/labels"),
                    json!({"name": "Bug", "color": "#d73a4a"}),
                )
                .await,
                201,
            )
            .await,
        );
        let category = created(
            json_with(
                app.post_as(
                    admin,
                    &format!("{base}/categories"),
                    json!({"name": "Web", "color": "#0075ca"}),
                )
                .await,
                201,
            )
            .await,
        );
        let task = created(
            json_with(
                app.post_as(
                    admin,
                    &format!("{base}/tasks"),
                    json!({"title": "Fix it", "labels": [label], "category_id": category}),
                )
                .await,
                201,
            )
            .await,
        );
        let comment = created(
            json_with(
                app.post_as(
                    admin,
                    &format!("{base}/tasks/{task}/comments"),
                    json!({"body": "First"}),
                )
                .await,
                201,
            )
            .await,
        );
        let api_key = created(
            json_with(
                app.post_as(
                    admin,
                    "/api/v1/me/api-keys",
                    json!({"name": "ci", "scopes": ["tasks:read"]}),
                )
                .await,
                201,
            )
            .await,
        );
        Self {
            org,
            user,
            team,
            label,
            category,
            task,
            comment,
            api_key,
        }
    }

    /// Every real id.
    fn ids(&self) -> Vec<String> {
        vec![
            self.org.clone(),
            self.user.clone(),
            self.team.clone(),
            self.label.clone(),
            self.category.clone(),
            self.task.clone(),
            self.comment.clone(),
        ]
    }

    /// Real values for the path parameter `name` of `path` (never the caller's own session:
    /// revoking it would sign the test out).
    fn path_values(&self, path: &str, name: &str) -> Vec<String> {
        let one = |v: &String| vec![v.clone()];
        match name {
            "org" => one(&self.org),
            "team" => one(&self.team),
            "user" => one(&self.user),
            "task" => one(&self.task),
            "comment" => one(&self.comment),
            "label" => one(&self.label),
            "id" if path.contains("/labels/") => one(&self.label),
            "id" if path.contains("/categories/") => one(&self.category),
            "id" if path.contains("/api-keys/") => one(&self.api_key),
            "aggregate_type" => ["organization", "task", "label", "category", "account"]
                .map(str::to_owned)
                .to_vec(),
            "aggregate_id" => vec![self.org.clone(), self.task.clone(), self.user.clone()],
            _ => vec![],
        }
    }
}

/// Values drawn from the document's schemas.
struct Gen<'a> {
    doc: &'a Value,
    rng: StdRng,
    ids: Vec<String>,
}

impl<'a> Gen<'a> {
    /// `schema` with `$ref`s followed.
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        while let Some(target) = schema.get("$ref").and_then(Value::as_str) {
            let name = target.trim_start_matches("#/components/schemas/");
            schema = &self.doc["components"]["schemas"][name];
        }
        schema
    }

    fn types(schema: &Value) -> Vec<String> {
        match schema.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => vec![],
        }
    }

    fn uuid(&mut self) -> String {
        if self.rng.random_bool(0.6) {
            if let Some(id) = self.ids.choose(&mut self.rng) {
                return id.clone();
            }
        }
        Uuid::new_v4().to_string()
    }

    fn text(&mut self, min: usize, max: usize) -> String {
        let len = self.rng.random_range(min..=max.max(min));
        (0..len)
            .map(|_| {
                *b"abcdefghijklmnopqrstuvwxyz ABCXYZ0189-_"
                    .choose(&mut self.rng)
                    .unwrap_or(&b'a') as char
            })
            .collect()
    }

    /// A value `schema` admits.
    fn valid(&mut self, schema: &'a Value, depth: usize) -> Value {
        let schema = self.resolve(schema);
        let examples: Vec<Value> = schema
            .get("examples")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .chain(schema.get("example").cloned())
            .collect();
        if !examples.is_empty() && (schema.get("pattern").is_some() || self.rng.random_bool(0.5)) {
            if let Some(example) = examples.choose(&mut self.rng) {
                return example.clone();
            }
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            if let Some(v) = values.choose(&mut self.rng) {
                return v.clone();
            }
        }
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            let branches: Vec<&Value> = branches
                .iter()
                .filter(|b| b.get("type") != Some(&json!("null")) || self.rng.random_bool(0.1))
                .collect();
            if let Some(branch) = branches.choose(&mut self.rng) {
                return self.valid(branch, depth);
            }
            return Value::Null;
        }
        let types = Self::types(schema);
        let non_null: Vec<&String> = types.iter().filter(|t| *t != "null").collect();
        if types.iter().any(|t| t == "null") && self.rng.random_bool(0.1) {
            return Value::Null;
        }
        match non_null.first().map(|t| t.as_str()) {
            Some("string") => match schema.get("format").and_then(Value::as_str) {
                Some("uuid") => json!(self.uuid()),
                Some("date-time") => json!("2026-01-01T00:00:00Z"),
                _ => {
                    let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
                    let max = schema["maxLength"]
                        .as_u64()
                        .map_or(min + 24, |m| m as usize);
                    let max = if self.rng.random_bool(0.1) {
                        max
                    } else {
                        max.min(min + 24)
                    };
                    json!(self.text(min.max(1), max))
                }
            },
            Some("integer") => {
                let min = schema["minimum"].as_i64().unwrap_or(0);
                let max = schema["maximum"].as_i64().unwrap_or(min + 100);
                json!(self.rng.random_range(min..=max))
            }
            Some("number") => json!(self.rng.random_range(0.0..100.0)),
            Some("boolean") => json!(self.rng.random_bool(0.5)),
            Some("array") => {
                let n = if depth > 3 {
                    0
                } else {
                    self.rng.random_range(0..=2)
                };
                let items = &schema["items"];
                Value::Array((0..n).map(|_| self.valid(items, depth + 1)).collect())
            }
            Some("object") | None if schema.get("properties").is_some() => {
                let required: BTreeSet<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut out = Map::new();
                if let Some(properties) = schema["properties"].as_object() {
                    for (name, property) in properties {
                        if required.contains(name.as_str()) || self.rng.random_bool(0.5) {
                            out.insert(name.clone(), self.valid(property, depth + 1));
                        }
                    }
                }
                Value::Object(out)
            }
            _ => json!({}),
        }
    }

    /// A value `schema` does not admit (or, for free text, an awkward one).
    fn invalid(&mut self, schema: &'a Value, depth: usize) -> Value {
        let schema = self.resolve(schema);
        let types = Self::types(schema);
        let object = types.iter().any(|t| t == "object") || schema.get("properties").is_some();
        if object && depth < 3 {
            let mut value = self.valid(schema, depth);
            let properties: Vec<(&String, &Value)> = schema["properties"]
                .as_object()
                .map(|p| p.iter().collect())
                .unwrap_or_default();
            match self.rng.random_range(0..4) {
                0 => return json!([]),
                1 => {
                    if let Some(map) = value.as_object_mut() {
                        map.insert("not_a_field".to_owned(), json!(1));
                    }
                }
                2 => {
                    let required: Vec<&str> = schema["required"]
                        .as_array()
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    match (required.choose(&mut self.rng), value.as_object_mut()) {
                        (Some(field), Some(map)) => {
                            map.remove(*field);
                        }
                        _ => return json!("not an object"),
                    }
                }
                _ => {
                    if let Some((name, property)) = properties.choose(&mut self.rng) {
                        let bad = self.invalid(property, depth + 1);
                        if let Some(map) = value.as_object_mut() {
                            map.insert((*name).clone(), bad);
                        }
                    }
                }
            }
            return value;
        }
        if schema.get("enum").is_some() {
            let choices = [json!("bogus"), json!(""), json!("TODO"), json!(7)];
            return choices
                .choose(&mut self.rng)
                .cloned()
                .unwrap_or(Value::Null);
        }
        if types.iter().any(|t| t == "array") {
            return match self.rng.random_range(0..3) {
                0 => json!("not an array"),
                1 => json!([Value::Null]),
                _ => json!([self.invalid(&schema["items"], depth + 1)]),
            };
        }
        if types.iter().any(|t| t == "integer") {
            let min = schema["minimum"].as_i64();
            let max = schema["maximum"].as_i64();
            let mut choices = vec![json!("abc"), json!(1.5), json!(i64::MAX)];
            choices.extend(min.map(|m| json!(m - 1)));
            choices.extend(max.map(|m| json!(m + 1)));
            return choices
                .choose(&mut self.rng)
                .cloned()
                .unwrap_or(json!("abc"));
        }
        let mut choices = vec![
            json!(5),
            json!(""),
            json!("   "),
            json!("not-a-uuid"),
            json!("x\u{7}y"),
            json!("ÅÄÖ 日本"),
        ];
        if let Some(max) = schema["maxLength"].as_u64() {
            choices.push(json!("x".repeat(max as usize + 1)));
        }
        if !types.iter().any(|t| t == "null") {
            choices.push(Value::Null);
        }
        choices.choose(&mut self.rng).cloned().unwrap_or(json!(5))
    }
}

/// Query and header values are text.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Checks `value` against `schema` (types, required and known properties, enums, uuids);
/// returns what does not match.
fn mismatches(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let mut schema = schema;
    while let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let name = target.trim_start_matches("#/components/schemas/");
        schema = &doc["components"]["schemas"][name];
    }
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let fits = branches.iter().any(|b| {
            let mut errs = Vec::new();
            mismatches(doc, b, value, at, &mut errs);
            errs.is_empty()
        });
        if !fits {
            out.push(format!("{at}: {value} fits no branch of {schema}"));
        }
        return;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(value) {
            out.push(format!("{at}: {value} is not one of {values:?}"));
        }
    }
    let types = Gen::types(schema);
    if !types.is_empty() {
        let fits = types.iter().any(|t| match t.as_str() {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            "null" => value.is_null(),
            _ => false,
        });
        if !fits {
            out.push(format!("{at}: {value} is not {types:?}"));
            return;
        }
    }
    if let (Some("uuid"), Some(s)) = (schema.get("format").and_then(Value::as_str), value.as_str())
    {
        if Uuid::parse_str(s).is_err() {
            out.push(format!("{at}: `{s}` is not a uuid"));
        }
    }
    if let Some(map) = value.as_object() {
        let properties = schema["properties"].as_object();
        for required in schema["required"].as_array().into_iter().flatten() {
            if let Some(name) = required.as_str() {
                if !map.contains_key(name) {
                    out.push(format!("{at}: `{name}` is missing"));
                }
            }
        }
        if let Some(properties) = properties {
            for (name, v) in map {
                match properties.get(name) {
                    Some(p) => mismatches(doc, p, v, &format!("{at}.{name}"), out),
                    None => out.push(format!("{at}: `{name}` is not documented")),
                }
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, v) in values.iter().enumerate() {
            mismatches(doc, items, v, &format!("{at}[{i}]"), out);
        }
    }
}

/// One generated request.
#[derive(Debug)]
struct Case {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    /// The raw body and whether to label it JSON.
    body: Option<(String, bool)>,
}

/// Generates the `n`th request for `op` (even: every value valid; odd: one thing wrong).
fn generate<'a>(
    gen: &mut Gen<'a>,
    fixture: &Fixture,
    method: &str,
    path: &str,
    op: &'a Value,
    n: usize,
) -> Case {
    let wrong = n % 2 == 1;
    let parameters: &'a [Value] = op["parameters"].as_array().map_or(&[], Vec::as_slice);
    let body_schema: &'a Value = &op["requestBody"]["content"]["application/json"]["schema"];
    // The thing made wrong: a parameter (by index), the body, or the request as a whole.
    let targets = parameters.len() + usize::from(!body_schema.is_null()) + 1;
    let target = if wrong {
        Some(gen.rng.random_range(0..targets))
    } else {
        None
    };
    let mut concrete = path.to_owned();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    for (i, p) in parameters.iter().enumerate() {
        let name = p["name"].as_str().unwrap_or_default();
        let place = p["in"].as_str().unwrap_or_default();
        let required = p["required"].as_bool().unwrap_or(false);
        let schema = &p["schema"];
        let bad = target == Some(i);
        if place == "path" {
            let real = fixture.path_values(path, name);
            let value = if bad {
                ["not-a-uuid", "%E2%82", "0", "x".repeat(300).as_str()]
                    .choose(&mut gen.rng)
                    .map(|s| (*s).to_owned())
                    .unwrap_or_default()
            } else if !real.is_empty() && gen.rng.random_bool(0.8) {
                real.choose(&mut gen.rng).cloned().unwrap_or_default()
            } else {
                as_text(&gen.valid(schema, 0))
            };
            concrete = concrete.replace(&format!("{{{name}}}"), &value);
            continue;
        }
        if !bad && !required && gen.rng.random_bool(0.5) {
            continue;
        }
        let value = if bad {
            gen.invalid(schema, 0)
        } else {
            gen.valid(schema, 0)
        };
        let value = as_text(&value);
        match place {
            "query" => query.push((name.to_owned(), value)),
            "header" => headers.push((name.to_owned(), value)),
            _ => {}
        }
    }
    let mut body = None;
    if !body_schema.is_null() {
        let bad = target == Some(parameters.len());
        let value = if bad {
            gen.invalid(body_schema, 0)
        } else {
            gen.valid(body_schema, 0)
        };
        body = Some((value.to_string(), true));
    }
    if target == Some(targets - 1) {
        // The request as a whole: an unknown parameter, a body that is no JSON, or no content
        // type.
        match (gen.rng.random_range(0..3), &mut body) {
            (1, Some(b)) => b.0 = "{\"cut off".to_owned(),
            (2, Some(b)) => b.1 = false,
            _ => query.push(("not_a_parameter".to_owned(), "1".to_owned())),
        }
    }
    Case {
        method: method.to_owned(),
        path: concrete,
        query,
        headers,
        body,
    }
}

/// The statuses `op` documents.
fn documented(op: &Value) -> BTreeSet<u16> {
    op["responses"]
        .as_object()
        .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_only_documented_statuses_and_no_5xx() {
    let app = spawn_app_with(&[("CAIRN_API_RATE", "100000".to_owned())]).await;
    let admin = app.sign_in("ada@example.com").await;
    let fixture = Fixture::new(&app, &admin).await;
    let doc = document(&app).await;
    let seed: u64 = std::env::var("CAIRN_OPENAPI_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(13);
    let mut gen = Gen {
        doc: &doc,
        rng: StdRng::seed_from_u64(seed),
        ids: fixture.ids(),
    };
    let codes: std::collections::BTreeMap<&str, u16> = gateway::error_codes().into_iter().collect();
    let mut ops = operations(&doc);
    // Erasing the caller ends the session: last.
    ops.sort_by_key(|(method, path, _)| method == "delete" && path == "/me");
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for (method, path, op) in &ops {
        let statuses = documented(op);
        for n in 0..CASES {
            let case = generate(&mut gen, &fixture, method, path, op, n);
            let mut request = admin
                .request(
                    reqwest::Method::from_bytes(case.method.to_uppercase().as_bytes())
                        .expect("method"),
                    app.url(&format!("/api/v1{}", case.path)),
                )
                .query(&case.query);
            for (name, value) in &case.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            if let Some((body, is_json)) = &case.body {
                if *is_json {
                    request = request.header("content-type", "application/json");
                }
                request = request.body(body.clone());
            }
            let response = match request.send().await {
                Ok(r) => r,
                // A header value reqwest will not send is not the server's answer.
                Err(e) if e.is_builder() => continue,
                Err(e) => panic!("{case:?}: {e}"),
            };
            let status = response.status().as_u16();
            seen.insert((method.clone(), path.clone(), status));
            let label = format!("seed {seed}, {case:?} answered {status}");
            if status >= 500 {
                let text = response.text().await.unwrap_or_default();
                failures.push(format!("{label}: a server error: {text}"));
                continue;
            }
            if !statuses.contains(&status) {
                let text = response.text().await.unwrap_or_default();
                failures.push(format!(
                    "{label}, which `{} {path}` does not document ({statuses:?}): {text}",
                    method.to_uppercase()
                ));
                continue;
            }
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if content_type.starts_with("text/event-stream") {
                continue; // An open stream: its status and type are the answer.
            }
            let text = response.text().await.unwrap_or_default();
            let body: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{label}: the body is not JSON ({e}): {text}"));
                    continue;
                }
            };
            let schema =
                &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
            let mut wrong = Vec::new();
            mismatches(&doc, schema, &body, "body", &mut wrong);
            if status >= 400 {
                let code = body["error"]["code"].as_str().unwrap_or_default();
                if codes.get(code) != Some(&status) {
                    wrong.push(format!(
                        "`{code}` is not an error code answered with {status}"
                    ));
                }
            }
            if !wrong.is_empty() {
                failures.push(format!(
                    "{label}: the body does not match: {wrong:?}: {text}"
                ));
            }
        }
    }
    app.stop().await;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for (_, _, status) in &seen {
        *by_status.entry(*status).or_default() += 1;
    }
    eprintln!(
        "seed {seed}: {} operations, statuses seen (operations per status): {by_status:?}",
        ops.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} generated requests went wrong:\n{}",
        failures.len(),
        ops.len() * CASES,
        failures.join("\n")
    );
    // The cases reach the handlers: most operations answered a success at least once.
    let succeeded: BTreeSet<(&String, &String)> = seen
        .iter()
        .filter(|(_, _, s)| (200..300).contains(s))
        .map(|(m, p, _)| (m, p))
        .collect();
    assert!(
        succeeded.len() * 2 > ops.len(),
        "only {} of {} operations ever succeeded: {seen:?}",
        succeeded.len(),
        ops.len()
    );
}
