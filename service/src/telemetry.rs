//! Telemetry in one place: `tracing` events and spans, formatted as text or JSON, and — only
//! when an OTLP endpoint is configured (`telemetry.otlp_endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) — exported as OpenTelemetry traces over OTLP/gRPC, with W3C
//! trace context taken from incoming requests. `RUST_LOG` overrides the default filter; `h2`,
//! `hyper` and `tonic` stay at `warn`. Spans carry ids and outcomes, never tokens or emails.

use opentelemetry::{propagation::Extractor, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::Deserialize;
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};

pub const DEFAULT_FILTER: &str = "info,h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,reqwest=warn,sled=warn,opentelemetry=warn";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// e.g. `http://otel-collector:4317`; `OTEL_EXPORTER_OTLP_ENDPOINT` also works.
    pub otlp_endpoint: Option<String>,
    /// One JSON object per log line.
    #[serde(default)]
    pub json_logs: bool,
}

/// Keeps the exporter; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered (call on shutdown).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("idlinkd: flushing traces failed: {e}");
        }
    }
}

/// Installs the global subscriber (once per process; later calls keep the first).
pub fn init(settings: &TelemetrySettings) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let endpoint =
        settings.otlp_endpoint.clone().or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()).filter(|e| !e.trim().is_empty());
    let provider =
        endpoint.and_then(|endpoint| match opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build() {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("idlinkd").build())
                    .build(),
            ),
            Err(e) => {
                eprintln!("idlinkd: traces are not exported: {e}");
                None
            }
        });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let format = if settings.json_logs { fmt::layer().json().with_target(true).boxed() } else { fmt::layer().with_target(true).boxed() };
    let traces = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("idlinkd")));
    let _ = tracing_subscriber::registry().with(filter).with(format).with(traces).try_init();
    Telemetry { provider }
}

/// Reads W3C `traceparent` / `tracestate` from gRPC request headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
