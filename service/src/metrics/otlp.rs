//! The metrics over OTLP/gRPC, to the collector the traces go to: every interval, and once more
//! at shutdown, the registry the scrape reads is converted from Prometheus's data model to
//! OpenTelemetry's (the OpenTelemetry specification's Prometheus compatibility rules) and
//! exported. Counters become monotonic cumulative sums named without `_total`, gauges stay
//! gauges, histograms become explicit-bucket histograms; every series starts when idlinkd's
//! counting did. One registry, two ways out: a scrape and a push always agree.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric::Data, number_data_point,
    },
    resource::v1::Resource,
};
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as prom;

use crate::{config::ConfigError, telemetry::Collector};

/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an export did not land.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the collector answered {}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("the collector rejected {count} data points: {message}")]
    Rejected { count: i64, message: String },
}

/// A collector's metrics service, reached lazily: a collector that is down costs an export,
/// never the service.
pub struct OtlpMetrics {
    client: MetricsServiceClient<tonic::transport::Channel>,
    resource: Resource,
}

impl OtlpMetrics {
    pub fn new(collector: &Collector, resource: &opentelemetry_sdk::Resource) -> Result<Self, ConfigError> {
        let invalid = |e: tonic::transport::Error| ConfigError::Invalid(format!("telemetry.otlp_endpoint {}: {e}", collector.endpoint));
        let mut endpoint = tonic::transport::Endpoint::from_shared(collector.endpoint.clone())
            .map_err(invalid)?
            .connect_timeout(EXPORT_TIMEOUT)
            .timeout(EXPORT_TIMEOUT);
        if let Some(tls) = &collector.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(invalid)?;
        }
        let attributes = opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema::from(resource).attributes.0;
        Ok(Self { client: MetricsServiceClient::new(endpoint.connect_lazy()), resource: Resource { attributes, ..Default::default() } })
    }

    /// Sends one export of these families, their series begun at `started`.
    pub async fn export(&mut self, families: &[prom::MetricFamily], started: SystemTime) -> Result<(), ExportError> {
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "idlinkd".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics: convert(families, unix_nanos(started), unix_nanos(SystemTime::now())),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let answer = self.client.export(request).await?.into_inner();
        match answer.partial_success {
            Some(partial) if partial.rejected_data_points > 0 => {
                Err(ExportError::Rejected { count: partial.rejected_data_points, message: partial.error_message })
            }
            _ => Ok(()),
        }
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Prometheus's families as OpenTelemetry metrics (types the registry does not use are left out).
pub fn convert(families: &[prom::MetricFamily], start: u64, now: u64) -> Vec<Metric> {
    let cumulative = AggregationTemporality::Cumulative as i32;
    families
        .iter()
        .filter_map(|family| {
            let number = |value: f64, labels: &[prom::LabelPair]| NumberDataPoint {
                attributes: attributes(labels),
                start_time_unix_nano: start,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            };
            let data = match prom::MetricType::try_from(family.r#type).ok()? {
                prom::MetricType::Counter => Data::Sum(Sum {
                    data_points: family.metric.iter().filter_map(|m| Some(number(m.counter.as_ref()?.value, &m.label))).collect(),
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                }),
                prom::MetricType::Gauge => Data::Gauge(Gauge {
                    data_points: family.metric.iter().filter_map(|m| Some(number(m.gauge.as_ref()?.value, &m.label))).collect(),
                }),
                prom::MetricType::Histogram => Data::Histogram(Histogram {
                    data_points: family
                        .metric
                        .iter()
                        .filter_map(|m| Some(histogram(m.histogram.as_ref()?, &m.label, start, now)))
                        .collect(),
                    aggregation_temporality: cumulative,
                }),
                _ => return None,
            };
            let name = family.name.strip_suffix("_total").filter(|_| matches!(data, Data::Sum(_))).unwrap_or(&family.name);
            Some(Metric {
                name: name.to_owned(),
                description: family.help.clone(),
                unit: unit(name).to_owned(),
                metadata: Vec::new(),
                data: Some(data),
            })
        })
        .collect()
}

/// The unit a name's suffix states, in UCUM as OpenTelemetry writes it.
fn unit(name: &str) -> &'static str {
    if name.ends_with("_seconds") {
        "s"
    } else if name.ends_with("_bytes") || name.ends_with("_bytes_on_disk") {
        "By"
    } else {
        ""
    }
}

fn attributes(labels: &[prom::LabelPair]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|l| KeyValue {
            key: l.name.clone(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(l.value.clone())) }),
            ..Default::default()
        })
        .collect()
}

/// Prometheus's buckets count every observation up to their bound (cumulatively, `+Inf` last
/// or left out); OpenTelemetry's count those between one bound and the next, with one more
/// bucket past the last bound.
fn histogram(h: &prom::Histogram, labels: &[prom::LabelPair], start: u64, now: u64) -> HistogramDataPoint {
    let finite: Vec<&prom::Bucket> = h.bucket.iter().filter(|b| b.upper_bound.is_finite()).collect();
    let mut bucket_counts = Vec::with_capacity(finite.len() + 1);
    let mut below = 0;
    for bucket in &finite {
        bucket_counts.push(bucket.cumulative_count.saturating_sub(below));
        below = bucket.cumulative_count;
    }
    bucket_counts.push(h.sample_count.saturating_sub(below));
    HistogramDataPoint {
        attributes: attributes(labels),
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: h.sample_count,
        sum: Some(h.sample_sum),
        bucket_counts,
        explicit_bounds: finite.iter().map(|b| b.upper_bound).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_name<'a>(metrics: &'a [Metric], name: &str) -> &'a Data {
        metrics.iter().find(|m| m.name == name).and_then(|m| m.data.as_ref()).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn each_instrument_keeps_its_meaning_across_the_models() {
        let metrics = super::super::Metrics::new();
        for seconds in [0.0001, 0.0001, 0.003, 100.0] {
            metrics.duration.get_or_create(&super::super::Method { method: "/m" }).observe(seconds);
        }
        metrics.requests.get_or_create(&super::super::MethodCode { method: "/m", code: "OK" }).inc_by(7);
        metrics.in_flight.set(2);
        let converted = convert(&metrics.families(super::super::Sample::default()), 10, 20);

        let Data::Histogram(h) = by_name(&converted, "idlink_rpc_duration_seconds") else { panic!("not a histogram") };
        assert_eq!(h.aggregation_temporality, AggregationTemporality::Cumulative as i32);
        let point = &h.data_points[0];
        assert_eq!((point.count, point.start_time_unix_nano, point.time_unix_nano), (4, 10, 20));
        assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1, "one bucket past the last bound");
        assert_eq!(point.bucket_counts.iter().sum::<u64>(), 4, "buckets count each observation once, not cumulatively");
        assert_eq!(point.bucket_counts[0], 2, "the two observations below the first bound (0.5 ms)");
        assert_eq!(*point.bucket_counts.last().unwrap(), 1, "100 s is past every bound");
        assert!((point.sum.unwrap() - 100.0032).abs() < 1e-9);

        let Data::Sum(requests) = by_name(&converted, "idlink_rpc_requests") else { panic!("not a sum") };
        assert!(requests.is_monotonic);
        let point = &requests.data_points[0];
        assert_eq!(point.value, Some(number_data_point::Value::AsDouble(7.0)));
        let labels: Vec<(&str, String)> = point.attributes.iter().map(|kv| (kv.key.as_str(), format!("{:?}", kv.value))).collect();
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert!(labels[0].1.contains("\"/m\"") && labels[1].1.contains("\"OK\""), "{labels:?}");

        let Data::Gauge(in_flight) = by_name(&converted, "idlink_rpc_in_flight") else { panic!("not a gauge") };
        assert_eq!(in_flight.data_points[0].value, Some(number_data_point::Value::AsDouble(2.0)));
        assert_eq!(converted.iter().find(|m| m.name == "idlink_rpc_duration_seconds").unwrap().unit, "s");
    }
}
