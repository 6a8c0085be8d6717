//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/v1/openapi.json` without a
//! token.
//!
//! The schemas of the bodies are derived from the protocol's types (`utoipa::ToSchema`, behind
//! berth-protocol's `openapi` feature), so a field added to a request or an answer is in the
//! document as serde reads and writes it. The operations are the table in [`operations`]: one
//! entry per endpoint of [`crate::auth::ENDPOINTS`], with its parameters, body, answers and the
//! scope its token needs (`x-berth-scope`, what [`crate::auth::required`] decides — a unit test
//! below holds the two together, and `tests/tests/api_contract.rs` probes every operation on a
//! running server).

use std::sync::OnceLock;

use berth_protocol::api::Scope;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::ENDPOINTS;

/// The components derived from the protocol's types (and every type they name).
#[derive(OpenApi)]
#[openapi(components(schemas(
    berth_protocol::api::AppView,
    berth_protocol::App,
    berth_protocol::api::CreateApp,
    berth_protocol::api::PatchApp,
    berth_protocol::Deployment,
    berth_protocol::api::CreateDeployment,
    berth_protocol::api::Rollback,
    berth_protocol::Release,
    berth_protocol::api::ReplicaView,
    berth_protocol::api::NodeView,
    berth_protocol::api::RedisView,
    berth_protocol::api::RedisReplica,
    berth_protocol::api::StartOutcome,
    berth_protocol::metrics::AppMetrics,
    berth_protocol::api::CreateExec,
    berth_protocol::api::ExecStarted,
    berth_protocol::exec::ExecEntry,
    berth_protocol::api::Analyze,
    berth_protocol::api::Analysis,
    berth_protocol::api::CreateToken,
    berth_protocol::api::CreatedToken,
    berth_protocol::api::TokenInfo,
    berth_protocol::api::AuditEntry,
    berth_protocol::api::EnvVar,
    berth_protocol::api::PutEnv,
    berth_protocol::api::EnvChange,
    berth_protocol::api::ErrorBody,
    berth_protocol::api::WebhookOutcome,
    berth_protocol::LogEntry,
    berth_protocol::api::DeploymentChange,
    berth_protocol::api::AppsChange,
    berth_protocol::api::EventsNow,
)))]
struct Schemas;

/// `GET /api/v1/openapi.json`: the document, no token needed.
pub fn route() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "openapi.json")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(document_text(), "content-type", "application/json")
                .into_response()
        })
}

/// The document as JSON text (built once).
pub fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| serde_json::to_string_pretty(&document()).expect("a JSON value prints"))
}

/// The whole document.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(Schemas::openapi()).expect("the schemas serialize");
    doc["info"] = json!({
        "title": "Berth API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Berth's HTTP API. Every operation needs `Authorization: Bearer <token>` \
            but /healthz, the GitHub webhooks (signed with HMAC-SHA256 instead) and this document. \
            A token's scope is one of metrics < read < deploy < admin, each allowing what the ones \
            before it allow; `x-berth-scope` on an operation names the scope it needs. Every error \
            answer is `{\"error\": \"<sentence>\"}`.",
    });
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("the derive writes components.schemas");
    for (name, schema) in extra_schemas() {
        schemas.insert(name.to_string(), schema);
    }
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `api.token` of the configuration (admin) or one made \
                with POST /api/v1/tokens."
        }
    });
    doc["security"] = json!([{"bearer": []}]);
    let mut paths = Map::new();
    for op in operations() {
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        item[op.method.to_ascii_lowercase()] = op.value;
    }
    doc["paths"] = Value::Object(paths);
    doc
}

/// Schemas written here rather than derived: answers assembled in web/ or the coordinator.
fn extra_schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Health",
            json!({
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string", "enum": ["ok", "unavailable"]},
                    "error": {"type": "string", "description": "Why Redis cannot be reached (503 only)."}
                }
            }),
        ),
        (
            "DrainNode",
            json!({
                "description": "The drained node, and the deployments that move its replicas.",
                "allOf": [
                    {"$ref": "#/components/schemas/NodeView"},
                    {
                        "type": "object",
                        "required": ["deployments"],
                        "properties": {
                            "deployments": {"type": "array", "items": {"type": "string"}}
                        }
                    }
                ]
            }),
        ),
        (
            "LogEnd",
            json!({
                "description": "Data of a log follow's `end` event: the deployment's outcome.",
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"$ref": "#/components/schemas/DeploymentStatus"},
                    "error": {"type": ["string", "null"]}
                }
            }),
        ),
        (
            "Pong",
            json!({
                "type": "object",
                "required": ["message"],
                "properties": {"message": {"type": "string", "enum": ["pong"]}}
            }),
        ),
    ]
}

/// One operation of the document.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    /// The scope its token needs; `None`: no token (`security: []`).
    pub scope: Option<Scope>,
    pub value: Value,
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": schema_ref(name)})
}

/// The schema of one Server-Sent Event of a stream (`event` defaults to `message`): its name,
/// `id:` and `data:` (JSON text, described in `description`).
fn sse_event(events: &[&str], description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "enum": events},
            "id": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "retry": {"type": "integer"}
        }
    })
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// A path parameter (every one a string).
fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string"}})
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description,
           "schema": schema})
}

fn header(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "header", "required": false, "description": description,
           "schema": {"type": "string"}})
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": json_content(schema_ref("ErrorBody"))})
}

/// What each error status means, as the server uses it.
fn error_text(code: u16) -> &'static str {
    match code {
        400 => "The request is not valid: the message names the field, parameter or header.",
        401 => "No token, or a wrong, revoked or expired one.",
        403 => "The token's scope is too small; the message names the scope needed.",
        404 => "No such app, deployment, node, token or exec (the message says which).",
        408 => "The request body did not arrive within `api.body_timeout_s`.",
        409 => {
            "The request conflicts with the current state (e.g. the app is stopped, a \
                deployment already ended, the name or a domain is taken)."
        }
        411 => "A request with a body needs a Content-Length header.",
        413 => "The request body is larger than the limit (1 MiB; an upload: `api.upload_max_mb`).",
        422 => {
            "The request is well formed but cannot be carried out (e.g. git cannot reach the \
                repository or branch; the message quotes why)."
        }
        429 => {
            "Too many failed authentications (or bad webhook signatures) from this address; \
                `Retry-After` says when to try again."
        }
        500 => "Internal error; the coordinator's log has the details.",
        503 => {
            "Redis is unreachable (or this coordinator just lost the lead); Berth retries — \
                try again shortly."
        }
        _ => "Error.",
    }
}

/// Builds one operation.
struct Op {
    method: &'static str,
    path: &'static str,
    scope: Option<Scope>,
    value: Map<String, Value>,
    responses: Map<String, Value>,
    params: Vec<Value>,
}

fn op(method: &'static str, path: &'static str, id: &str, tag: &str, summary: &str) -> Op {
    let mut value = Map::new();
    value.insert("operationId".into(), json!(id));
    value.insert("tags".into(), json!([tag]));
    value.insert("summary".into(), json!(summary));
    Op {
        method,
        path,
        scope: None,
        value,
        responses: Map::new(),
        params: Vec::new(),
    }
}

impl Op {
    /// Needs a token of `scope`: 401, 403 and 429 become possible answers.
    fn scope(mut self, scope: Scope) -> Op {
        self.scope = Some(scope);
        self.value
            .insert("x-berth-scope".into(), json!(scope.as_str()));
        self.errors(&[401, 403, 429])
    }

    /// No token (`security: []`).
    fn open(mut self) -> Op {
        self.value.insert("security".into(), json!([]));
        self
    }

    fn describe(mut self, text: &str) -> Op {
        self.value.insert("description".into(), json!(text));
        self
    }

    fn param(mut self, p: Value) -> Op {
        self.params.push(p);
        self
    }

    /// A JSON request body of schema `name` (optional: an empty body reads as `{}`).
    fn body(mut self, name: &str, required: bool) -> Op {
        self.value.insert(
            "requestBody".into(),
            json!({"required": required, "content": json_content(schema_ref(name))}),
        );
        self.errors(&[400, 408, 411, 413])
    }

    fn ok(mut self, code: u16, description: &str, content: Value) -> Op {
        let mut r = json!({"description": description});
        if !content.is_null() {
            r["content"] = content;
        }
        self.responses.insert(code.to_string(), r);
        self
    }

    fn ok_json(self, code: u16, description: &str, schema: Value) -> Op {
        self.ok(code, description, json_content(schema))
    }

    fn errors(mut self, codes: &[u16]) -> Op {
        for &c in codes {
            let mut r = error_response(error_text(c));
            if c == 429 {
                r["headers"] = json!({"Retry-After": {
                    "description": "Seconds until this address may try again.",
                    "schema": {"type": "integer", "minimum": 1}
                }});
            }
            if c == 401 && self.scope.is_some() {
                r["headers"] = json!({"WWW-Authenticate": {
                    "description": "`Bearer`.",
                    "schema": {"type": "string"}
                }});
            }
            self.responses.insert(c.to_string(), r);
        }
        self
    }

    fn build(mut self) -> Operation {
        // Every operation can meet Redis away and an internal fault.
        self = self.errors(&[500, 503]);
        if !self.params.is_empty() {
            self.value
                .insert("parameters".into(), Value::Array(self.params));
        }
        self.value
            .insert("responses".into(), Value::Object(self.responses));
        Operation {
            method: self.method,
            path: self.path,
            scope: self.scope,
            value: Value::Object(self.value),
        }
    }
}

const APP: &str = "The app's name.";
const DEPLOYMENT: &str = "The deployment's id.";

/// An app's name: a DNS label (`validate::app_name`).
const APP_NAME: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

fn app() -> Value {
    let mut p = path_param("name", APP);
    p["schema"]["pattern"] = json!(APP_NAME);
    p
}

/// `?deploy=true|false` of the variable changes.
fn deploy_param() -> Value {
    query(
        "deploy",
        "`true` (or empty): queue a deployment of the app with the change. Only `deploy` is \
         accepted.",
        json!({"type": "string", "enum": ["true", "false", ""]}),
    )
}

fn last_event_id() -> Value {
    let mut h = header(
        "Last-Event-ID",
        "Resume a follow after this entry id (`<ms>-<seq>`, the SSE `id:` of the last event \
         seen).",
    );
    h["schema"]["pattern"] = json!("^[0-9]+-[0-9]+$");
    h
}

/// The parameters and answers shared by both log endpoints.
fn log_op(o: Op, sse: &str) -> Op {
    o.param(query(
        "follow",
        "`1` (or `true`, or empty): follow as Server-Sent Events.",
        json!({"type": "string", "enum": ["0", "1", "true", "false", ""]}),
    ))
    .param(query(
        "format",
        "`text` (default) or `json`, when not following.",
        json!({"type": "string", "enum": ["text", "json"]}),
    ))
    .describe("`Accept: text/event-stream` follows, like `follow=1`.")
    .param(last_event_id())
    .ok(
        200,
        "The log: text (one line per entry), a JSON array of entries (`format=json`), or a \
         follow as Server-Sent Events.",
        json!({
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": array_of("LogEntry")},
            "text/event-stream": {"schema": sse_event(&["message", "end", "error"], sse)}
        }),
    )
    .errors(&[400, 404])
}

const DEPLOYMENT_SSE: &str = "One event per line: `id:` the entry id, `data:` a LogEntry as JSON. \
    Once the deployment is terminal and its log drained: an `end` event whose data is a LogEnd \
    (`{\"status\", \"error\"}`), and the stream closes. An `error` event (`{\"error\"}`) ends a \
    follow that broke off; a follow cut by a shutdown or an outage ends without `end` (resume \
    with `Last-Event-ID`).";
const APP_SSE: &str = "One event per line: `id:` the entry id, `data:` a LogEntry as JSON (the \
    requested tail first, then every new line). It never ends on its own; an `error` event \
    (`{\"error\"}`) ends a follow that broke off.";
const EVENTS_SSE: &str =
    "`deployment`: a DeploymentChange as JSON (a deployment appeared, moved on \
    or ended); `apps`: an AppsChange as JSON (an app was created, changed or deleted); `resync` \
    (`{}`): changes were missed, read again. Nothing is replayed: read what you show, then follow. \
    Seen within about a second; it never ends on its own.";
const EXEC_SSE: &str = "One event per entry, named after its `type`, `data:` an ExecEntry as \
    JSON: `queued` (`{node, container, timeout_s}`), `started` (`{node, container}`), `output` \
    (`{stream: stdout|stderr, data}`), then one `end` (`{exit_code, error}`) and the stream \
    closes. `id:` is the entry id (resume with `Last-Event-ID`). An `error` event (`{\"error\"}`) \
    ends a follow that broke off.";

/// Every operation of the API, in the order of [`ENDPOINTS`].
pub fn operations() -> Vec<Operation> {
    use Scope::*;
    let deployment = || path_param("id", DEPLOYMENT);
    let node = || path_param("node", "The node's name.");
    let key = || {
        let mut p = path_param(
            "key",
            "The variable's name: letters, digits and `_`, not starting with a digit.",
        );
        p["schema"]["pattern"] = json!("^[A-Za-z_][A-Za-z0-9_]*$");
        p
    };
    let changed = |o: Op| o.errors(&[404, 409]);
    let mut ops = vec![
        op("GET", "/healthz", "health", "cluster", "Whether the coordinator reaches Redis")
            .open()
            .ok_json(200, "Redis answers: `{\"status\": \"ok\"}`.", schema_ref("Health"))
            .ok_json(
                503,
                "Redis is unreachable: `{\"status\": \"unavailable\", \"error\"}`.",
                schema_ref("Health"),
            ),
        op("GET", "/metrics", "prometheusMetrics", "cluster", "The cluster's figures for Prometheus")
            .scope(Metrics)
            .ok(
                200,
                "Prometheus text exposition format 0.0.4.",
                json!({"text/plain": {"schema": {"type": "string"}}}),
            ),
        op("GET", "/api/v1/openapi.json", "openapi", "cluster", "This document")
            .open()
            .ok(
                200,
                "The OpenAPI document.",
                json_content(json!({"type": "object"})),
            ),
        op("POST", "/api/v1/webhooks/github", "githubWebhook", "webhooks", "A GitHub delivery for every app without a webhook secret of its own")
            .open()
            .describe(
                "Signed with `github.webhook_secret`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 \
                 of the raw body>`. A `push` to an app's branch queues a deployment of each app with \
                 that repository, branch and `auto_deploy`; `ping` answers `pong`; other events \
                 queue nothing. Deliveries are deduplicated by `X-GitHub-Delivery` and by what \
                 they push. 403 when no secret is configured.",
            )
            .param(header("X-Hub-Signature-256", "`sha256=<hex HMAC-SHA256 of the body>`."))
            .param(header("X-GitHub-Event", "`push`, `ping`, …"))
            .param(header("X-GitHub-Delivery", "The delivery's id (at most 128 characters)."))
            .errors(&[400, 401, 403, 408, 409, 411, 413, 429]),
        op("POST", "/api/v1/apps/{name}/webhooks/github", "appGithubWebhook", "webhooks", "A GitHub delivery for one app with a webhook secret of its own")
            .open()
            .describe(
                "Like /api/v1/webhooks/github, signed with the app's own `webhook_secret`; 403 when \
                 the app has none.",
            )
            .param(app())
            .param(header("X-Hub-Signature-256", "`sha256=<hex HMAC-SHA256 of the body>`."))
            .param(header("X-GitHub-Event", "`push`, `ping`, …"))
            .param(header("X-GitHub-Delivery", "The delivery's id (at most 128 characters)."))
            .errors(&[400, 401, 403, 404, 408, 409, 411, 413, 429]),
        op("GET", "/api/v1/apps", "listApps", "apps", "Every app")
            .scope(Read)
            .ok_json(200, "The apps.", array_of("AppView")),
        op("POST", "/api/v1/apps", "createApp", "apps", "Create an app")
            .scope(Admin)
            .body("CreateApp", true)
            .ok_json(201, "The app.", schema_ref("AppView"))
            .errors(&[409, 422]),
        op("GET", "/api/v1/apps/{name}", "getApp", "apps", "One app")
            .scope(Read)
            .param(app())
            .ok_json(200, "The app.", schema_ref("AppView"))
            .errors(&[400, 404]),
        op("PATCH", "/api/v1/apps/{name}", "patchApp", "apps", "Change an app (what is given replaces what was)")
            .scope(Admin)
            .param(app())
            .body("PatchApp", true)
            .ok_json(200, "The app.", schema_ref("AppView"))
            .errors(&[404, 409, 422]),
        op("DELETE", "/api/v1/apps/{name}", "deleteApp", "apps", "Delete an app, its routes, containers and images")
            .scope(Admin)
            .param(app())
            .ok(204, "Deleted.", Value::Null)
            .errors(&[400, 404, 409]),
        op("POST", "/api/v1/apps/{name}/deployments", "deploy", "deployments", "Deploy the app's branch (or a ref)")
            .scope(Deploy)
            .param(app())
            .body("CreateDeployment", false)
            .ok_json(202, "The deployment, queued.", schema_ref("Deployment"))
            .errors(&[404, 409, 422]),
        op("POST", "/api/v1/apps/{name}/uploads", "deployUpload", "deployments", "Deploy an uploaded directory (a tar archive)")
            .scope(Deploy)
            .param(app())
            .param(query(
                "no_cache",
                "Build with no cached layer. Only `no_cache` is accepted.",
                json!({"type": "boolean"}),
            ))
            .ok_json(202, "The deployment, queued.", schema_ref("Deployment"))
            .errors(&[400, 404, 408, 409, 411, 413, 422]),
        op("GET", "/api/v1/apps/{name}/deployments", "listDeployments", "deployments", "The app's deployments, newest first")
            .scope(Read)
            .param(app())
            .ok_json(200, "The deployments (without their Dockerfile).", array_of("Deployment"))
            .errors(&[400, 404]),
        op("GET", "/api/v1/deployments/{id}", "getDeployment", "deployments", "One deployment")
            .scope(Read)
            .param(deployment())
            .ok_json(200, "The deployment, with the Dockerfile it built with.", schema_ref("Deployment"))
            .errors(&[400, 404]),
        log_op(
            op("GET", "/api/v1/deployments/{id}/logs", "deploymentLogs", "logs", "A deployment's build and deploy log")
                .scope(Read)
                .param(deployment()),
            DEPLOYMENT_SSE,
        ),
        log_op(
            op("GET", "/api/v1/apps/{name}/logs", "appLogs", "logs", "The app's runtime log, from every replica")
                .scope(Read)
                .param(app())
                .param(query(
                    "tail",
                    "The newest N lines (default 100).",
                    json!({"type": "integer", "minimum": 0, "maximum": berth_coordinator::logs::MAX_TAIL}),
                ))
                .param(query(
                    "since",
                    "Lines from then on: a duration back from now (`5m`, `1h 30m`), an RFC 3339 \
                     time or epoch ms.",
                    json!({"type": "string", "minLength": 1}),
                )),
            APP_SSE,
        ),
        op("POST", "/api/v1/apps/{name}/rollback", "rollback", "deployments", "Bring a release back")
            .scope(Deploy)
            .param(app())
            .body("Rollback", false)
            .ok_json(202, "The rollback deployment, queued.", schema_ref("Deployment"))
            .errors(&[404, 409, 422]),
        op("GET", "/api/v1/apps/{name}/releases", "listReleases", "deployments", "The app's releases (images kept for rollback)")
            .scope(Read)
            .param(app())
            .ok_json(200, "The releases, newest first.", array_of("Release"))
            .errors(&[400, 404]),
        op("GET", "/api/v1/apps/{name}/replicas", "listReplicas", "apps", "The app's running replicas")
            .scope(Read)
            .param(app())
            .ok_json(200, "The replicas, serving and on standby.", array_of("ReplicaView"))
            .errors(&[400, 404]),
        op("POST", "/api/v1/deployments/{id}/cancel", "cancel", "deployments", "Cancel an unfinished deployment")
            .scope(Deploy)
            .param(deployment())
            .ok_json(200, "The deployment.", schema_ref("Deployment"))
            .errors(&[400, 404, 409]),
        op("GET", "/api/v1/nodes", "listNodes", "nodes", "Every node and its liveness")
            .scope(Read)
            .ok_json(200, "The nodes.", array_of("NodeView")),
        op("GET", "/api/v1/redis", "redisStatus", "nodes", "The Redis written to: its role and replicas")
            .scope(Read)
            .ok_json(200, "Its INFO replication.", schema_ref("RedisView")),
        op("POST", "/api/v1/nodes/{node}/cordon", "cordon", "nodes", "Place no new work on a node")
            .scope(Admin)
            .param(node())
            .ok_json(200, "The node.", schema_ref("NodeView"))
            .errors(&[400, 404]),
        op("POST", "/api/v1/nodes/{node}/uncordon", "uncordon", "nodes", "Place work on a node again")
            .scope(Admin)
            .param(node())
            .ok_json(200, "The node.", schema_ref("NodeView"))
            .errors(&[400, 404]),
        op("POST", "/api/v1/nodes/{node}/drain", "drain", "nodes", "Cordon a node and move its replicas away")
            .scope(Admin)
            .param(node())
            .ok_json(200, "The node and the deployments that move its replicas.", schema_ref("DrainNode"))
            .errors(&[400, 404, 409]),
        op("POST", "/api/v1/apps/{name}/restart", "restart", "lifecycle", "Run the serving release again in new containers")
            .scope(Deploy)
            .param(app())
            .ok_json(202, "The restart deployment, queued.", schema_ref("Deployment"))
            .errors(&[400, 404, 409]),
        op("POST", "/api/v1/apps/{name}/stop", "stop", "lifecycle", "Take the app out of service")
            .scope(Admin)
            .param(app())
            .ok_json(200, "The app's record.", schema_ref("App"))
            .errors(&[400, 404, 409]),
        op("POST", "/api/v1/apps/{name}/start", "start", "lifecycle", "Bring a stopped app back")
            .scope(Admin)
            .param(app())
            .ok_json(202, "The app, and the deployment that brings its release back.", schema_ref("StartOutcome"))
            .errors(&[400, 404, 409]),
        op("GET", "/api/v1/apps/{name}/metrics", "appMetrics", "apps", "The app's resource series")
            .scope(Read)
            .param(app())
            .param(query(
                "window",
                "How far back: a duration from 1s to 1h (default 15m).",
                json!({"type": "string", "minLength": 1}),
            ))
            .ok_json(200, "The series.", schema_ref("AppMetrics"))
            .errors(&[400, 404]),
        op("POST", "/api/v1/apps/{name}/exec", "exec", "exec", "Run a command in a running replica")
            .scope(Admin)
            .param(app())
            .body("CreateExec", true)
            .ok_json(202, "Where the command was queued; follow it at /api/v1/exec/{id}.", schema_ref("ExecStarted"))
            .errors(&[404, 409]),
        op("GET", "/api/v1/exec/{id}", "followExec", "exec", "Follow a command's output")
            .scope(Read)
            .param(path_param("id", "The exec's id."))
            .param(last_event_id())
            .ok(
                200,
                "Server-Sent Events, to the command's end.",
                json!({"text/event-stream": {"schema": sse_event(&["queued", "started", "output", "end", "error"], EXEC_SSE)}}),
            )
            .errors(&[400, 404]),
        op("POST", "/api/v1/analyze", "analyze", "apps", "What a build pack would build from a repository")
            .scope(Deploy)
            .body("Analyze", true)
            .ok_json(200, "The analysis.", schema_ref("Analysis"))
            .errors(&[404, 422]),
        op("POST", "/api/v1/tokens", "createToken", "tokens", "Make an API token")
            .scope(Admin)
            .body("CreateToken", true)
            .ok_json(201, "The token; its value is shown this once.", schema_ref("CreatedToken")),
        op("GET", "/api/v1/tokens", "listTokens", "tokens", "Every API token (never its value)")
            .scope(Admin)
            .ok_json(200, "The tokens.", array_of("TokenInfo")),
        op("DELETE", "/api/v1/tokens/{id}", "revokeToken", "tokens", "Revoke an API token")
            .scope(Admin)
            .param(path_param("id", "The token's id."))
            .ok(204, "Revoked.", Value::Null)
            .errors(&[400, 404]),
        op("GET", "/api/v1/audit", "audit", "tokens", "The audit log, newest first")
            .scope(Admin)
            .param(query(
                "limit",
                "How many entries (default 100). Only `limit` is accepted.",
                json!({"type": "integer", "minimum": 1, "maximum": 1000}),
            ))
            .ok_json(200, "The entries.", array_of("AuditEntry"))
            .errors(&[400]),
        op("GET", "/api/v1/apps/{name}/env", "listEnv", "env", "The app's variables (a secret's value never)")
            .scope(Read)
            .param(app())
            .ok_json(200, "The variables.", array_of("EnvVar"))
            .errors(&[400, 404]),
        changed(
            op("PUT", "/api/v1/apps/{name}/env/{key}", "setEnv", "env", "Set a variable")
                .scope(Admin)
                .param(app())
                .param(key())
                .param(deploy_param())
                .body("PutEnv", true)
                .ok_json(200, "The variables now, and the deployment queued if asked for.", schema_ref("EnvChange")),
        ),
        changed(
            op("DELETE", "/api/v1/apps/{name}/env/{key}", "unsetEnv", "env", "Unset a variable")
                .scope(Admin)
                .param(app())
                .param(key())
                .param(deploy_param())
                .ok_json(200, "The variables now, and the deployment queued if asked for.", schema_ref("EnvChange"))
                .errors(&[400]),
        ),
        op("GET", "/api/v1/events", "events", "cluster", "What changes, live")
            .scope(Read)
            .param(query(
                "follow",
                "`1` (or `true`, or empty): follow as Server-Sent Events.",
                json!({"type": "string", "enum": ["0", "1", "true", "false", ""]}),
            ))
            .describe("`Accept: text/event-stream` follows, like `follow=1`.")
            .ok(
                200,
                "Where changes stand (the apps' counter and the deployments in flight), or, \
                 followed, Server-Sent Events for as long as the client stays.",
                json!({
                    "application/json": {"schema": schema_ref("EventsNow")},
                    "text/event-stream": {"schema": sse_event(&["deployment", "apps", "resync"], EVENTS_SSE)}
                }),
            )
            .errors(&[400]),
    ];
    // A webhook's answers.
    for o in ops
        .iter_mut()
        .filter(|o| o.path.contains("webhooks/github"))
    {
        let done = std::mem::replace(o, op("", "", "", "", ""));
        *o = done
            .ok_json(
                200,
                "A `ping`: `{\"message\": \"pong\"}`.",
                schema_ref("Pong"),
            )
            .ok_json(
                202,
                "What the delivery queued (the deployments' ids), or why nothing.",
                schema_ref("WebhookOutcome"),
            )
            .errors(&[]);
        o.value.insert(
            "requestBody".into(),
            json!({"required": true, "content": {
                "application/json": {"schema": {"type": "object", "description": "GitHub's event payload."}},
                "application/x-www-form-urlencoded": {"schema": {
                    "type": "object",
                    "properties": {"payload": {"type": "string", "description": "The payload as JSON."}}
                }}
            }}),
        );
    }
    for o in ops.iter_mut().filter(|o| o.path.ends_with("/uploads")) {
        o.value.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "description": "A tar archive of the directory: files, directories and links, \
                    relative paths that stay inside. The Content-Type is not read.",
                "content": {
                    "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            }),
        );
    }
    let ops: Vec<Operation> = ops.into_iter().map(Op::build).collect();
    debug_assert_eq!(ops.len(), ENDPOINTS.len());
    ops
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use warp::http::Method;

    use super::*;
    use crate::auth::{required, sample_path};

    /// Every (method, path) of the document.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn the_document_has_every_endpoint_and_no_other() {
        let doc = document();
        let want: BTreeSet<(String, String)> = ENDPOINTS
            .iter()
            .map(|e| (e.method.to_string(), e.path.to_string()))
            .collect();
        assert_eq!(documented(&doc), want);
        assert_eq!(doc["openapi"], "3.1.0");
        // It is valid JSON text, as served.
        let text: Value = serde_json::from_str(document_text()).unwrap();
        assert_eq!(text, doc);
    }

    #[test]
    fn the_scope_of_each_operation_is_what_auth_requires() {
        let doc = document();
        for e in ENDPOINTS {
            let o = &doc["paths"][e.path][e.method.to_ascii_lowercase()];
            let method = Method::from_bytes(e.method.as_bytes()).unwrap();
            if e.token {
                let want = required(&method, &sample_path(e.path));
                assert_eq!(
                    o["x-berth-scope"].as_str(),
                    Some(want.as_str()),
                    "{} {}",
                    e.method,
                    e.path
                );
                assert!(o.get("security").is_none(), "{} {}", e.method, e.path);
                for code in ["401", "403", "429", "500", "503"] {
                    assert!(
                        o["responses"].get(code).is_some(),
                        "{} {} {code}",
                        e.method,
                        e.path
                    );
                }
                assert!(o["responses"]["429"]["headers"]
                    .get("Retry-After")
                    .is_some());
            } else {
                assert_eq!(o["security"], json!([]), "{} {}", e.method, e.path);
                assert!(o.get("x-berth-scope").is_none(), "{} {}", e.method, e.path);
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| walk(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(schemas.contains_key(name), "{r} is not defined");
        }
    }

    #[test]
    fn schemas_say_what_serde_does() {
        let doc = document();
        let s = &doc["components"]["schemas"];
        // Request bodies refuse unknown fields, as `deny_unknown_fields` does.
        for name in [
            "CreateApp",
            "PatchApp",
            "CreateToken",
            "CreateExec",
            "PutEnv",
        ] {
            assert_eq!(s[name]["additionalProperties"], json!(false), "{name}");
        }
        // Renamed fields and enums as serialized.
        assert!(s["Deployment"]["properties"].get("ref").is_some());
        assert!(s["Deployment"]["properties"].get("git_ref").is_none());
        let required: Vec<&str> = s["CreateApp"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["name", "port"]);
        assert_eq!(
            s["Scope"]["enum"],
            json!(["metrics", "read", "deploy", "admin"])
        );
        // A field skipped when `None` is not required.
        let env_var: Vec<&str> = s["EnvVar"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(!env_var.contains(&"value"), "{env_var:?}");
        // A sealed blob is hex text, as its serde functions write it.
        assert_eq!(s["Sealed"]["properties"]["nonce"]["type"], "string");
    }
}
