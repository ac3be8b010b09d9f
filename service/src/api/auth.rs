//! Authentication as a tower layer, so no RPC can forget it: every call must carry a valid
//! bearer token, except health and reflection (so generic tools work); the validated
//! [`crate::domain::Principal`] goes into the request extensions. A service added later is
//! authenticated by default.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use super::{
    refusals::RefusalLog,
    status::{self, ApiError, Locale, to_status},
};
use futures_util::FutureExt;

use crate::{clock::DynClock, oidc::Authenticator};

#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
    clock: DynClock,
    refusals: Arc<RefusalLog>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>, clock: DynClock) -> Self {
        Self { auth, clock, refusals: Arc::default() }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, auth: self.auth.clone(), clock: self.clock.clone(), refusals: self.refusals.clone() }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
    clock: DynClock,
    refusals: Arc<RefusalLog>,
}

/// The only paths served without a token.
const PUBLIC_SERVICES: &[&str] =
    &["/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

fn is_public(path: &str) -> bool {
    PUBLIC_SERVICES.iter().any(|prefix| path.starts_with(prefix))
}

fn header<'r, B>(req: &'r http::Request<B>, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (auth, clock, refusals) = (self.auth.clone(), self.clock.clone(), self.refusals.clone());
        // One request id per call: the caller's `x-request-id` when it is sane, else one of ours,
        // put back on the request (the audit reads it there) and echoed on the answer.
        let request_id = super::request_id(header(&req, "x-request-id"));
        let echoed = http::HeaderValue::from_str(&request_id).ok();
        if let Some(value) = &echoed {
            req.headers_mut().insert("x-request-id", value.clone());
        }
        // One span per RPC, continuing the caller's trace (W3C traceparent).
        let path = super::rpc_name(req.uri().path());
        let span = tracing::info_span!("rpc", otel.name = %path, otel.kind = "server", rpc.system = "grpc", rpc.method = %path,
            request_id = %request_id, rpc.grpc.status_code = tracing::field::Empty);
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&crate::telemetry::HeaderExtractor(req.headers())));
        let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);
        Box::pin(tracing::Instrument::instrument(
            async move {
                if !is_public(req.uri().path()) {
                    match auth.authenticate(header(&req, "authorization"), clock.now()).await {
                        Ok(caller) => {
                            req.extensions_mut().insert(caller);
                        }
                        Err(e) => {
                            let peer = req.extensions().get::<tonic::transport::server::TcpConnectInfo>().and_then(|i| i.remote_addr());
                            let error = ApiError::Auth(e);
                            let reason = status::reason(&error);
                            if let Some(dropped) = refusals.admit(peer.map(|p| p.ip()), reason, clock.now()) {
                                let request_id = super::request_id(header(&req, "x-request-id"));
                                tracing::info!(target: "audit", rpc = super::rpc_name(req.uri().path()), outcome = "refused", reason,
                                    detail = %error, request_id, peer = peer.map(|p| p.to_string()).unwrap_or_default(),
                                    dropped_since_last = dropped, "caller refused");
                            }
                            let locale = Locale::from_accept_language(header(&req, "accept-language"));
                            return Ok(to_status(&error, locale).into_http());
                        }
                    }
                }
                inner.call(req).await
            }
            .map(move |answer| answer.map(|response| answered(response, echoed))),
            span,
        ))
    }
}

/// The answer as it leaves: the call's request id echoed, and its gRPC code on the RPC span
/// (read from the headers of a trailers-only answer; an answer that sends messages began well:
/// 0, its final code is in its trailers and in the metrics).
fn answered(mut response: http::Response<tonic::body::Body>, request_id: Option<http::HeaderValue>) -> http::Response<tonic::body::Body> {
    let code = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    tracing::Span::current().record("rpc.grpc.status_code", code);
    if let Some(request_id) = request_id {
        response.headers_mut().insert("x-request-id", request_id);
    }
    response
}

/// While idlinkd starts, every RPC but health and reflection is answered UNAVAILABLE.
#[derive(Clone, Copy)]
pub struct StartingLayer;

impl<S> tower::Layer<S> for StartingLayer {
    type Service = StartingService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StartingService { inner }
    }
}

#[derive(Clone)]
pub struct StartingService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for StartingService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if is_public(req.uri().path()) {
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(async move { inner.call(req).await });
        }
        let locale = Locale::from_accept_language(header(&req, "accept-language"));
        Box::pin(async move { Ok(to_status(&ApiError::Starting, locale).into_http()) })
    }
}
