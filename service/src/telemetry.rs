//! Telemetry in one place: `tracing` events and spans, formatted as text or JSON, and — only
//! when an OTLP endpoint is configured (`telemetry.otlp_endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) — exported as OpenTelemetry traces over OTLP/gRPC, with W3C
//! trace context taken from incoming requests; an `https://` endpoint is verified against the
//! public web roots, or the CA of `telemetry.otlp_ca_file`. The metrics go to the same
//! collector ([`crate::metrics::otlp`]). `RUST_LOG` overrides the default filter; `h2`,
//! `hyper` and `tonic` stay at `warn`. Spans carry ids and outcomes, never tokens or emails.

use opentelemetry::{propagation::Extractor, trace::TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::Deserialize;
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::ConfigError;

pub const DEFAULT_FILTER: &str = "info,h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,reqwest=warn,sled=warn,opentelemetry=warn";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// e.g. `http://otel-collector:4317`; `OTEL_EXPORTER_OTLP_ENDPOINT` also works.
    pub otlp_endpoint: Option<String>,
    /// The CA certificate(s), PEM, an `https://` collector's certificate chains to (default:
    /// the public web roots).
    pub otlp_ca_file: Option<std::path::PathBuf>,
    /// One JSON object per log line.
    #[serde(default)]
    pub json_logs: bool,
    /// Where `GET /metrics` answers (OpenMetrics text, plaintext), e.g. `0.0.0.0:9464`; off when unset.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How often the metrics are pushed to the OTLP collector, when one is configured (default:
    /// `OTEL_METRIC_EXPORT_INTERVAL`, in milliseconds, else 60 s; at least 1).
    #[serde(default)]
    pub otlp_metrics_interval_seconds: Option<u64>,
}

/// Where telemetry goes over OTLP/gRPC: the endpoint and, for `https://`, its TLS.
#[derive(Debug, Clone)]
pub struct Collector {
    pub endpoint: String,
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl TelemetrySettings {
    /// The collector: `otlp_endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`; `None` when neither
    /// is set (nothing is exported).
    pub fn collector(&self) -> Result<Option<Collector>, ConfigError> {
        let endpoint = self.otlp_endpoint.clone().or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok());
        let Some(endpoint) = endpoint.filter(|e| !e.trim().is_empty()) else {
            return Ok(None);
        };
        let tls = collector_tls(&endpoint, self.otlp_ca_file.as_deref())?;
        Ok(Some(Collector { endpoint, tls }))
    }

    /// How often metrics are pushed to the collector.
    pub fn metrics_interval(&self) -> Result<std::time::Duration, ConfigError> {
        let seconds = match self.otlp_metrics_interval_seconds {
            Some(0) => return Err(ConfigError::Invalid("telemetry.otlp_metrics_interval_seconds must be at least 1".into())),
            Some(seconds) => return Ok(std::time::Duration::from_secs(seconds)),
            None => std::env::var("OTEL_METRIC_EXPORT_INTERVAL").ok(),
        };
        let millis = seconds.and_then(|ms| ms.trim().parse::<u64>().ok()).filter(|ms| *ms >= 1000).unwrap_or(60_000);
        Ok(std::time::Duration::from_millis(millis))
    }
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

/// TLS for an `https://` collector: the configured CA, else the public web roots.
fn collector_tls(endpoint: &str, ca_file: Option<&std::path::Path>) -> Result<Option<tonic::transport::ClientTlsConfig>, ConfigError> {
    if !endpoint.starts_with("https://") {
        return match ca_file {
            Some(_) => Err(ConfigError::Invalid(format!("telemetry.otlp_ca_file is set but the OTLP endpoint {endpoint} is not https://"))),
            None => Ok(None),
        };
    }
    let tls = tonic::transport::ClientTlsConfig::new();
    Ok(Some(match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            tls.ca_certificate(tonic::transport::Certificate::from_pem(pem))
        }
        None => tls.with_webpki_roots(),
    }))
}

/// Installs the global subscriber (once per process; later calls keep the first). A collector
/// that cannot be reached costs spans, never the service; a CA file that cannot be read (or
/// one given for a plaintext endpoint) is a configuration error.
pub fn init(settings: &TelemetrySettings) -> Result<Telemetry, ConfigError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = match settings.collector()? {
        Some(Collector { endpoint, tls }) => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint);
            if let Some(tls) = tls {
                builder = builder.with_tls_config(tls);
            }
            Some(builder.build())
        }
        None => None,
    };
    let provider = exporter.and_then(|exporter| match exporter {
        Ok(exporter) => Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource()).build()),
        Err(e) => {
            eprintln!("idlinkd: traces are not exported: {e}");
            None
        }
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let format = if settings.json_logs { fmt::layer().json().with_target(true).boxed() } else { fmt::layer().with_target(true).boxed() };
    let traces = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("idlinkd")));
    let _ = tracing_subscriber::registry().with(filter).with(format).with(traces).try_init();
    Ok(Telemetry { provider })
}

/// Who is reporting: `service.name` idlinkd, its version, what `OTEL_RESOURCE_ATTRIBUTES` adds
/// (the SDK's detectors) and — unless that names one — a `service.instance.id` of this process,
/// so that replicas pushing cumulative metrics are told apart.
pub fn resource() -> Resource {
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::resource::{EnvResourceDetector, SdkProvidedResourceDetector, TelemetryResourceDetector};
    let id: [u8; 16] = rand::random();
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    // Later ones win: the environment's attributes over the instance id drawn here.
    Resource::builder_empty()
        .with_attribute(KeyValue::new("service.instance.id", id))
        .with_detectors(&[Box::new(SdkProvidedResourceDetector), Box::new(TelemetryResourceDetector), Box::new(EnvResourceDetector::new())])
        .with_service_name("idlinkd")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_ca_needs_https_and_a_readable_file() {
        let ca = std::path::Path::new("/nonexistent/ca.pem");
        assert!(matches!(collector_tls("http://collector:4317", Some(ca)), Err(ConfigError::Invalid(why)) if why.contains("otlp_ca_file")));
        assert!(matches!(collector_tls("https://collector:4317", Some(ca)), Err(ConfigError::Read { .. })));
        assert!(collector_tls("http://collector:4317", None).unwrap().is_none(), "plaintext stays plaintext");
        assert!(collector_tls("https://collector:4317", None).unwrap().is_some(), "https gets the web roots");
    }
}
