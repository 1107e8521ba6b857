//! Listeners and the per-request pipeline: log the request, apply any fault
//! rule, route it, and turn the [`Reply`] into an HTTP response (possibly a
//! corrupted or truncated one).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::faults::FaultAction;
use crate::log::{LoggedRequest, RequestLog};
use crate::reply::Reply;
use crate::request::Req;
use crate::state::Shared;
use crate::util::lock;
use crate::{redirect, router};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    Main,
    Redirect,
}

/// Accepts connections until the returned task is aborted; aborting it drops
/// the `JoinSet`, which aborts every open connection too.
pub(crate) fn spawn(listener: TcpListener, shared: Arc<Shared>, kind: Listener) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let accepted = listener.accept().await;
            while conns.try_join_next().is_some() {}
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let local = stream
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let shared = shared.clone();
            conns.spawn(async move {
                let service =
                    service_fn(move |req| serve(shared.clone(), kind, local.clone(), req));
                // Errors here are client disconnects or injected closes.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn header_string(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// One request. An `Err` makes hyper drop the connection without answering,
/// which is how connection faults are injected.
async fn serve(
    shared: Arc<Shared>,
    kind: Listener,
    local: String,
    req: Request<Incoming>,
) -> Result<Response<Body>, BoxError> {
    let method = req.method().as_str().to_string();
    let path_and_query = req.uri().path_and_query().map_or_else(
        || req.uri().path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let log: &RequestLog = match kind {
        Listener::Main => &shared.log,
        Listener::Redirect => &shared.redirect_log,
    };
    let id = log.start(LoggedRequest {
        method: method.clone(),
        path: path_and_query.clone(),
        status: 0,
        bytes_received: 0,
        authorization: header_string(&req, "authorization"),
        content_type: header_string(&req, "content-type"),
        content_range: header_string(&req, "content-range"),
    });
    let fault = lock(&shared.faults).check(&method, &path_and_query);

    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let received = body.len() as u64;
    let is_head = method == "HEAD";

    if let Some(FaultAction::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let mut reply = match &fault {
        Some(
            action @ FaultAction::Status {
                status,
                retry_after,
                ..
            },
        ) => injected_status(action, *status, retry_after.as_deref()),
        Some(FaultAction::CloseBeforeResponse) => {
            log.finish(id, 0, received);
            return Err("injected fault: connection closed before response".into());
        }
        _ => {
            let r = Req::new(
                &method,
                parts.uri.path(),
                parts.uri.query(),
                parts.headers,
                body,
                &local,
            );
            match kind {
                Listener::Main => router::handle(&shared, &r),
                Listener::Redirect => redirect::handle(&shared, &r),
            }
        }
    };
    if kind == Listener::Main && parts.uri.path().starts_with("/v2") {
        reply = reply.header("Docker-Distribution-API-Version", "registry/2.0");
    }
    log.finish(id, reply.status, received);
    match fault {
        Some(FaultAction::CloseMidBody) if is_head => {
            Err("injected fault: connection closed instead of HEAD response".into())
        }
        Some(FaultAction::CloseMidBody) => Ok(truncated(reply)),
        Some(FaultAction::CorruptBody) => {
            let mut data = reply.body.to_vec();
            FaultAction::corrupt(&mut data);
            reply.body = Bytes::from(data);
            Ok(response(reply, is_head))
        }
        _ => Ok(response(reply, is_head)),
    }
}

/// The answer of a `Status` fault ([`FaultAction::status_body`]).
fn injected_status(action: &FaultAction, status: u16, retry_after: Option<&str>) -> Reply {
    let mut reply = Reply::new(status);
    if let Some((content_type, data)) = action.status_body() {
        reply = reply.header("Content-Type", content_type).body(data);
    }
    if let Some(ra) = retry_after {
        reply = reply.header("Retry-After", ra);
    }
    reply
}

fn with_headers(mut resp: Response<Body>, reply: &Reply) -> Response<Body> {
    // Informational statuses would confuse the HTTP/1 framing; never send them.
    *resp.status_mut() = StatusCode::from_u16(reply.status)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &reply.headers {
        // Header values derive from validated names and digests; anything
        // that still fails to encode is dropped rather than panicking.
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

fn response(reply: Reply, is_head: bool) -> Response<Body> {
    let body: Body = if is_head {
        Full::new(Bytes::new())
            .map_err(|e| match e {})
            .boxed_unsync()
    } else {
        Full::new(reply.body.clone())
            .map_err(|e| match e {})
            .boxed_unsync()
    };
    let mut resp = with_headers(Response::new(body), &reply);
    // hyper only computes Content-Length from the body, which HEAD lacks.
    if is_head && reply.status != 204 && reply.get_header("content-length").is_none() {
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(reply.body.len()));
    }
    resp
}

/// Announces the full length, sends half ([`FaultAction::cut`]), then fails
/// the body so hyper drops the connection. The yield lets hyper flush the half
/// before the error.
fn truncated(reply: Reply) -> Response<Body> {
    let (sent, announced) = FaultAction::cut(reply.body.len());
    let half = reply.body.slice(..sent);
    let first: Vec<Result<Frame<Bytes>, BoxError>> = if half.is_empty() {
        Vec::new()
    } else {
        vec![Ok(Frame::data(half))]
    };
    let stream = futures::stream::iter(first).chain(futures::stream::once(async {
        tokio::task::yield_now().await;
        Err::<Frame<Bytes>, BoxError>("injected fault: connection closed mid-body".into())
    }));
    let body: Body = StreamBody::new(stream).boxed_unsync();
    let mut resp = with_headers(Response::new(body), &reply);
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(announced));
    resp
}
