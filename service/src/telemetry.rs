//! Telemetry in one place: `tracing` events and spans, formatted as text or JSON, and — only
//! when an OTLP endpoint is configured (`telemetry.otlp_endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) — exported as OpenTelemetry traces over OTLP/gRPC, with W3C
//! trace context taken from incoming requests; an `https://` endpoint is verified against the
//! public web roots, or the CA of `telemetry.otlp_ca_file`. `RUST_LOG` overrides the default filter; `h2`,
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
    let endpoint =
        settings.otlp_endpoint.clone().or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()).filter(|e| !e.trim().is_empty());
    let exporter = match endpoint {
        Some(endpoint) => {
            let tls = collector_tls(&endpoint, settings.otlp_ca_file.as_deref())?;
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint);
            if let Some(tls) = tls {
                builder = builder.with_tls_config(tls);
            }
            Some(builder.build())
        }
        None => None,
    };
    let provider = exporter.and_then(|exporter| match exporter {
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
    Ok(Telemetry { provider })
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
