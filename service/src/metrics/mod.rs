//! Metrics, in the OpenMetrics text format Prometheus scrapes, on `[telemetry]
//! metrics_listen`. One registry per idlinkd (a test's instance counts alone). No label ever
//! carries a user, a tenant or a token: methods are the contract's own (anything else is
//! `unknown`), codes are gRPC's, reasons idlink's. The same registry is pushed over OTLP when a
//! collector is configured ([`otlp`]); the store's calls are timed by [`store::MeasuredStore`].

pub mod otlp;
pub mod store;

use std::{
    collections::HashSet,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use http_body::Frame;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodCode {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// A provider's key fetches, counted where they happen (`oidc::jwks`).
#[derive(Clone, Debug, Default)]
pub struct JwksCounters {
    pub fetches: Counter,
    pub failures: Counter,
}

/// What full and named recalculations found.
#[derive(Clone, Debug, Default)]
pub struct RecalculationCounters {
    pub organizations: Counter,
    pub drifted: Counter,
}

/// What a scrape reads from the running service just before it is encoded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub store_up: bool,
    pub footprint: Option<crate::store::Footprint>,
    pub watch_streams: u64,
}

pub struct Metrics {
    registry: Registry,
    /// When counting began: the start of every cumulative series.
    started: SystemTime,
    requests: Family<MethodCode, Counter>,
    duration: Family<Method, Histogram>,
    in_flight: Gauge,
    refusals: Family<Reason, Counter>,
    pub jwks: JwksCounters,
    pub recalculation: RecalculationCounters,
    pub store: store::StoreTimings,
    pub feed_lag: Histogram,
    store_up: Gauge,
    store_bytes_on_disk: Gauge,
    store_memory_bytes: Gauge,
    flows_pending: Gauge,
    watch_streams: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("idlink");
        let requests = Family::<MethodCode, Counter>::default();
        registry.register("rpc_requests", "RPCs answered, by method and gRPC code", requests.clone());
        let duration = Family::<Method, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        registry.register("rpc_duration_seconds", "Time from a call's arrival to its answer's end, by method", duration.clone());
        let in_flight = Gauge::default();
        registry.register("rpc_in_flight", "Calls being answered now (change-feed streams included)", in_flight.clone());
        let refusals = Family::<Reason, Counter>::default();
        registry.register("rpc_refusals", "Refusals by idlink's stable reason (rate limits and quotas among them)", refusals.clone());
        let jwks = JwksCounters::default();
        registry.register("jwks_fetches", "Signing-key fetches on an unknown kid or the scheduled refresh", jwks.fetches.clone());
        registry.register("jwks_failures", "Signing-key fetches that failed (the last good keys were kept)", jwks.failures.clone());
        let recalculation = RecalculationCounters::default();
        registry.register("recalculated_organizations", "Organisations recalculated", recalculation.organizations.clone());
        registry.register(
            "recalculation_drift",
            "Organisations whose stored credit had drifted and was repaired",
            recalculation.drifted.clone(),
        );
        let store = store::StoreTimings::register(&mut registry);
        // From 1 ms to about 2.3 hours: a stream resuming from an old cursor delivers old events.
        let feed_lag = Histogram::new(exponential_buckets(0.001, 2.0, 24));
        registry.register(
            "watch_delivery_lag_seconds",
            "Age of each change-feed event (since its commit) when a stream delivered it",
            feed_lag.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let store_up = gauge(&mut registry, "store_up", "1 when the store answered the scrape (within 1 s)");
        let store_bytes_on_disk = gauge(&mut registry, "store_bytes_on_disk", "sled: the size of its files");
        let store_memory_bytes = gauge(&mut registry, "store_memory_bytes", "Redis: used_memory of the server");
        let flows_pending = gauge(&mut registry, "flows_pending", "Association flows begun and not yet completed or purged");
        let watch_streams = gauge(&mut registry, "watch_streams", "Open change-feed streams on this replica");
        Arc::new(Self {
            registry,
            started: SystemTime::now(),
            requests,
            duration,
            in_flight,
            refusals,
            jwks,
            recalculation,
            store,
            feed_lag,
            store_up,
            store_bytes_on_disk,
            store_memory_bytes,
            flows_pending,
            watch_streams,
        })
    }

    /// The scrape: the sample's gauges set, then every instrument encoded.
    pub fn encode(&self, sample: Sample) -> String {
        self.set(sample);
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        text
    }

    /// The same as [`Metrics::encode`], as Prometheus's data model (for the OTLP push).
    pub fn families(&self, sample: Sample) -> Vec<prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily> {
        self.set(sample);
        prometheus_client::encoding::prometheus_protobuf::encode(&self.registry).unwrap_or_else(|e| {
            tracing::error!(error = %e, "metrics could not be encoded");
            Vec::new()
        })
    }

    /// When counting began.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    fn set(&self, sample: Sample) {
        self.store_up.set(i64::from(sample.store_up));
        let footprint = sample.footprint.unwrap_or_default();
        let as_gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.store_bytes_on_disk.set(footprint.bytes_on_disk.map_or(0, as_gauge));
        self.store_memory_bytes.set(footprint.memory_bytes.map_or(0, as_gauge));
        self.flows_pending.set(as_gauge(footprint.flows_pending));
        self.watch_streams.set(as_gauge(sample.watch_streams));
    }

    fn answered(&self, method: &'static str, status: Option<i32>, reason: Option<&'static str>, started: Instant) {
        let code = code_name(status);
        self.requests.get_or_create(&MethodCode { method, code }).inc();
        self.duration.get_or_create(&Method { method }).observe(started.elapsed().as_secs_f64());
        if let Some(reason) = reason {
            self.refusals.get_or_create(&Reason { reason }).inc();
        }
    }
}

/// The full names of the RPCs idlinkd serves (`/package.Service/Method`), read once from the
/// contract's descriptors and the health and reflection services'.
fn methods() -> &'static HashSet<&'static str> {
    static METHODS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut paths: Vec<String> = [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]
        .map(str::to_owned)
        .to_vec();
        paths.extend(idlink_proto::rpc_paths());
        // Once per process, a few dozen names: labels borrow them for good.
        paths.into_iter().map(|p| &*Box::leak(p.into_boxed_str())).collect()
    })
}

fn method_label(path: &str) -> &'static str {
    methods().get(path).copied().unwrap_or("unknown")
}

fn code_name(status: Option<i32>) -> &'static str {
    status.map_or("UNKNOWN", |status| idlink_proto::code_name(tonic::Code::from(status)))
}

/// The gRPC status and idlink's reason a header map (headers of a trailers-only answer, or
/// trailers) carries; the reason only when it is one of idlink's.
fn outcome(headers: &http::HeaderMap) -> Option<(i32, Option<&'static str>)> {
    let status: i32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    if status == 0 {
        return Some((0, None));
    }
    let reason = tonic::Status::from_header_map(headers)
        .and_then(|s| tonic_types::StatusExt::get_error_details(&s).error_info().map(|i| i.reason.clone()))
        .and_then(|reason| crate::api::messages::ALL.iter().find(|r| r.name == reason).map(|r| r.name));
    Some((status, reason))
}

/// Counts every call: by method and code, its duration to the end of its answer, and those in
/// flight. Outermost, so refusals of the layers inside are counted too.
#[derive(Clone)]
pub struct MetricsLayer {
    pub metrics: Arc<Metrics>,
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Measured<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Measured { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// A call being answered: counted once, when its answer ends (or is dropped: `CANCELLED`).
struct Answering {
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
    done: bool,
}

impl Answering {
    fn finish(&mut self, status: Option<i32>, reason: Option<&'static str>) {
        if !self.done {
            self.done = true;
            self.metrics.in_flight.dec();
            self.metrics.answered(self.method, status, reason, self.started);
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.finish(Some(tonic::Code::Cancelled as i32), None);
    }
}

impl<S, B> tower::Service<http::Request<B>> for Measured<S>
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        self.metrics.in_flight.inc();
        let mut answering =
            Answering { metrics: self.metrics.clone(), method: method_label(req.uri().path()), started: Instant::now(), done: false };
        Box::pin(async move {
            let response = inner.call(req).await?;
            let (parts, body) = response.into_parts();
            if let Some((status, reason)) = outcome(&parts.headers) {
                // Trailers-only: the answer is all in the headers.
                answering.finish(Some(status), reason);
                return Ok(http::Response::from_parts(parts, body));
            }
            Ok(http::Response::from_parts(parts, tonic::body::Body::new(Observed { inner: body, answering })))
        })
    }
}

/// An answer's body, watched for its trailers (where the status of a call that sent messages is).
struct Observed {
    inner: tonic::body::Body,
    answering: Answering,
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let (status, reason) = outcome(trailers).map_or((None, None), |(s, r)| (Some(s), r));
                    self.answering.finish(status, reason);
                }
            }
            Poll::Ready(Some(Err(_))) => self.answering.finish(Some(tonic::Code::Internal as i32), None),
            Poll::Ready(None) => self.answering.finish(None, None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_the_contracts_and_nothing_else_is_a_label() {
        assert_eq!(method_label("/idlink.v1.LinkService/GetLinks"), "/idlink.v1.LinkService/GetLinks");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "/grpc.health.v1.Health/Check");
        assert_eq!(method_label("/idlink.v1.LinkService/GetLinks2"), "unknown");
        assert_eq!(method_label("/3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01/x"), "unknown", "a caller cannot mint labels");
        assert!(methods().len() > 15);
    }
}
