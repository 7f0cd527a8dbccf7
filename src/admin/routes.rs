//! The admin API's endpoints: which request gets which answer.
use super::request::{form_value, Request, Response};
use super::view;
use crate::rtcserver_app::{CrashError, CrashTarget, ServerHandle};
use serde_json::json;
use std::net::SocketAddr;

/// The observer page is part of the binary, so that the admin API works wherever it runs.
const OBSERVER_PAGE: &str = include_str!("../../static/observer.html");

/// What to do with a request.
pub enum Reply {
    Response(Response),
    /// Turn the connection into the event stream.
    Events,
}

const ENDPOINTS: [(&str, &str); 6] = [
    ("/", "GET"),
    ("/observer.html", "GET"),
    ("/tree", "GET"),
    ("/crash", "POST"),
    ("/metrics", "GET"),
    ("/events", "GET"),
];

const CHAOS: (&str, &str) = ("/chaos", "GET");

/// Listed in a 404's `endpoints`; the routes are in `faults.rs`.
const FAULTS: [(&str, &str); 8] = [
    ("/faults", "GET, POST"),
    ("/faults/populate", "POST"),
    ("/faults/reset", "POST"),
    ("/faults/log", "GET"),
    ("/faults/replay", "GET, POST, DELETE"),
    ("/faults/presets", "GET"),
    ("/faults/presets/{name}", "POST, DELETE"),
    ("/faults/{name}", "GET, POST, DELETE"),
];

/// `GET`/`HEAD` of the observer page: the one answer that needs no token (it holds no data).
pub fn is_page(req: &Request) -> bool {
    matches!(req.method.as_str(), "GET" | "HEAD") && is_page_path(&req.path)
}

fn is_page_path(path: &str) -> bool {
    matches!(path, "/" | "/observer.html")
}

pub fn route(handle: &ServerHandle, req: &Request, client: SocketAddr) -> Reply {
    let method = req.method.as_str();
    let head = method == "HEAD";
    let get = method == "GET" || head;
    if let Some(response) = super::faults::route(&handle.shared.faults, req) {
        return Reply::Response(if head { response.head_only() } else { response });
    }
    let response = match (req.path.as_str(), get) {
        (path, true) if is_page_path(path) => {
            Response::new(200, "text/html; charset=utf-8", OBSERVER_PAGE)
                .with_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'")
        }
        ("/tree", true) => Response::json(200, &view::tree(handle)),
        ("/metrics", true) => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            handle.metrics_text(),
        ),
        ("/events", true) if !head => return Reply::Events,
        ("/chaos", true) => chaos(handle),
        ("/crash", _) if method == "POST" => crash(handle, req, client),
        (path, _) => match allowed_method(path) {
            Some(allowed) => Response::error(405, format!("{path} takes {allowed}"))
                .with_header("Allow", allowed),
            None => Response::json(
                404,
                &json!({
                    "error": format!("no endpoint {path}"),
                    "status": 404,
                    "endpoints": ENDPOINTS.iter().chain([&CHAOS]).chain(FAULTS.iter())
                        .map(|(p, m)| format!("{m} {p}")).collect::<Vec<_>>(),
                }),
            ),
        },
    };
    Reply::Response(if head { response.head_only() } else { response })
}

fn allowed_method(path: &str) -> Option<&'static str> {
    ENDPOINTS
        .iter()
        .chain([&CHAOS])
        .find(|(p, _)| *p == path)
        .map(|(_, m)| *m)
}

fn chaos(handle: &ServerHandle) -> Response {
    let Some(chaos) = handle.chaos() else {
        return Response::json(200, &json!({ "enabled": false }));
    };
    let crashes: Vec<_> = chaos
        .recent()
        .iter()
        .map(|c| json!({ "target": c.target.to_string(), "trigger": c.trigger.to_string() }))
        .collect();
    Response::json(
        200,
        &json!({
            "enabled": true,
            "spec": chaos.spec().to_string(),
            "seed": chaos.seed(),
            "crashes": crashes,
        }),
    )
}

/// The target, from `?target=`, or a body that is `{"target": "..."}`, `target=...` or the
/// bare target.
fn target_of(req: &Request) -> Result<String, Response> {
    if let Some(target) = req.query_param("target") {
        return Ok(target);
    }
    let Ok(body) = std::str::from_utf8(&req.body) else {
        return Err(Response::error(400, "the body is not UTF-8"));
    };
    let body = body.trim();
    if body.starts_with('{') {
        let target = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("target")?.as_str().map(str::to_owned));
        return target
            .ok_or_else(|| Response::error(400, r#"a JSON body must be {"target": "<target>"}"#));
    }
    if body.contains('=') {
        return form_value(body, "target")
            .ok_or_else(|| Response::error(400, "a form body must have target=<target>"));
    }
    if body.is_empty() {
        return Err(Response::error(
            400,
            "no target: POST /crash?target=<target> (rtcserver_sup, listener, registry, rooms_sup, peers_sup, room:<N>, named:<name>, peer:<id>)",
        ));
    }
    Ok(body.to_owned())
}

fn crash(handle: &ServerHandle, req: &Request, client: SocketAddr) -> Response {
    let target = match target_of(req) {
        Ok(t) => t,
        Err(refusal) => return refusal,
    };
    let target: CrashTarget = match target.parse() {
        Ok(t) => t,
        Err(e) => return Response::error(400, e),
    };
    match handle.crash_for(&target, &format!("on request of admin client {client}")) {
        Ok(()) => {
            let (kind, supervisor) = view::target_kind(handle, &target);
            Response::json(
                200,
                &json!({ "crashed": target.to_string(), "kind": kind, "supervisor": supervisor }),
            )
        }
        Err(e @ (CrashError::NoSuchRoom(_) | CrashError::NoSuchPeer(_))) => Response::error(404, e),
        Err(e @ CrashError::UnknownTarget(_)) => Response::error(400, e),
        Err(e @ CrashError::Stopped) => Response::error(503, e),
    }
}
