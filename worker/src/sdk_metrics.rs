//! The Temporal SDK's own worker metrics (task slots, poll results, schedule-to-start and
//! execution latencies, workflow and activity failures, sticky cache) in a `prometheus` registry,
//! so the worker's one `/metrics` serves them next to ours.
//!
//! The SDK reports through a [`CoreMeter`]. Its bundled Prometheus meter only serves from a
//! listener of its own; this meter records into `prometheus` vectors instead. One SDK metric name
//! may be recorded with different label sets (some counters gain a label in some code paths), so
//! each name keeps one vector per label set and the registry merges them into one family.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use temporalio_common::telemetry::metrics::{
    CoreMeter, Counter, CounterBase, Gauge, GaugeBase, GaugeF64, GaugeF64Base, Histogram,
    HistogramBase, HistogramDuration, HistogramDurationBase, HistogramF64, HistogramF64Base,
    MetricAttributable, MetricAttributes, MetricParameters, NewAttributes, OrderedPromLabelSet,
    UpDownCounter, UpDownCounterBase, default_buckets_for,
};
use temporalio_common::telemetry::{METRIC_PREFIX, TelemetryOptions};

/// The registry the SDK's metrics land in. Unprefixed: they keep Temporal's names
/// (`temporal_workflow_task_schedule_to_start_latency_seconds`, ...), as Temporal's own
/// dashboards and documentation use them.
pub fn sdk_registry() -> prometheus::Result<(prometheus::Registry, Arc<SdkMeter>)> {
    let registry = prometheus::Registry::new();
    let meter = Arc::new(SdkMeter::default());
    registry.register(Box::new(meter.collector()))?;
    Ok((registry, meter))
}

/// Telemetry options that send the SDK's metrics to `meter` and leave logging to our
/// subscriber.
pub fn telemetry_options(meter: Arc<SdkMeter>) -> TelemetryOptions {
    TelemetryOptions::builder()
        .metrics(meter as Arc<dyn CoreMeter>)
        // Prometheus' job/instance labels say which process; a constant label adds nothing.
        .attach_service_name(false)
        .build()
}

type Vectors = Arc<RwLock<HashMap<(String, Vec<String>), Vector>>>;

#[derive(Clone)]
enum Vector {
    Counter(IntCounterVec),
    Gauge(IntGaugeVec),
    GaugeF64(GaugeVec),
    Histogram(HistogramVec),
}

impl Vector {
    fn collect(&self) -> Vec<MetricFamily> {
        match self {
            Vector::Counter(v) => v.collect(),
            Vector::Gauge(v) => v.collect(),
            Vector::GaugeF64(v) => v.collect(),
            Vector::Histogram(v) => v.collect(),
        }
    }
}

/// A [`CoreMeter`] recording into `prometheus` vectors.
#[derive(Debug, Default)]
pub struct SdkMeter {
    vectors: Vectors,
    /// Every metric the SDK created, recorded or not yet (a vector appears on first record).
    declared: Arc<RwLock<BTreeMap<String, DeclaredMetric>>>,
}

/// A metric the SDK declared: its exported name, Prometheus type and help text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredMetric {
    pub name: String,
    pub kind: &'static str,
    pub help: String,
}

impl std::fmt::Debug for Vector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vector")
    }
}

impl SdkMeter {
    fn collector(&self) -> SdkCollector {
        SdkCollector {
            vectors: self.vectors.clone(),
        }
    }

    /// The metrics the SDK has declared so far, by name. A worker declares all of its own when
    /// it is created.
    pub fn declared(&self) -> Vec<DeclaredMetric> {
        let declared = self.declared.read().expect("sdk metrics lock");
        declared.values().cloned().collect()
    }

    fn instrument(&self, name: String, help: &str, kind: Kind) -> Instrument {
        let name = name.replace('-', "_");
        let help = if help.is_empty() {
            name.clone()
        } else {
            help.to_owned()
        };
        self.declared.write().expect("sdk metrics lock").insert(
            name.clone(),
            DeclaredMetric {
                name: name.clone(),
                kind: kind.prometheus_type(),
                help: help.clone(),
            },
        );
        Instrument {
            name,
            help,
            kind,
            vectors: self.vectors.clone(),
        }
    }

    fn histogram_instrument(&self, params: &MetricParameters, seconds: bool) -> Instrument {
        let base = params.name.to_string();
        let unprefixed = base.strip_prefix(METRIC_PREFIX).unwrap_or(&base);
        let buckets = default_buckets_for(unprefixed, seconds).to_vec();
        let name = if seconds {
            format!("{base}_seconds")
        } else if params.unit.is_empty() {
            base.clone()
        } else {
            format!("{base}_{}", params.unit)
        };
        self.instrument(name, &params.description, Kind::Histogram(buckets))
    }
}

/// Hands the registry every vector recorded so far. It declares no descriptors up front (the
/// SDK creates its metrics as it goes), which the registry accepts for one such collector.
struct SdkCollector {
    vectors: Vectors,
}

impl Collector for SdkCollector {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let vectors = self.vectors.read().expect("sdk metrics lock");
        vectors.values().flat_map(Vector::collect).collect()
    }
}

#[derive(Clone)]
enum Kind {
    Counter,
    Gauge,
    GaugeF64,
    Histogram(Vec<f64>),
}

impl Kind {
    fn prometheus_type(&self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::GaugeF64 => "gauge",
            Kind::Histogram(_) => "histogram",
        }
    }
}

/// One SDK metric: its vectors (one per label set) are created on first use.
#[derive(Clone)]
struct Instrument {
    name: String,
    help: String,
    kind: Kind,
    vectors: Vectors,
}

impl Instrument {
    fn vector(&self, keys: &[&str]) -> Result<Vector, Box<dyn std::error::Error>> {
        let key = (
            self.name.clone(),
            keys.iter().map(|k| (*k).to_owned()).collect(),
        );
        if let Some(vector) = self.vectors.read().expect("sdk metrics lock").get(&key) {
            return Ok(vector.clone());
        }
        let mut vectors = self.vectors.write().expect("sdk metrics lock");
        if let Some(vector) = vectors.get(&key) {
            return Ok(vector.clone());
        }
        let opts = Opts::new(&self.name, &self.help);
        let vector = match &self.kind {
            Kind::Counter => Vector::Counter(IntCounterVec::new(opts, keys)?),
            Kind::Gauge => Vector::Gauge(IntGaugeVec::new(opts, keys)?),
            Kind::GaugeF64 => Vector::GaugeF64(GaugeVec::new(opts, keys)?),
            Kind::Histogram(buckets) => Vector::Histogram(HistogramVec::new(
                HistogramOpts::from(opts).buckets(buckets.clone()),
                keys,
            )?),
        };
        vectors.insert(key, vector.clone());
        Ok(vector)
    }

    /// The vector of these attributes' label set, and their values in its order.
    fn bind(
        &self,
        attributes: &MetricAttributes,
    ) -> Result<(Vector, Vec<String>), Box<dyn std::error::Error>> {
        static NO_LABELS: OrderedPromLabelSet = OrderedPromLabelSet::new();
        let labels: &OrderedPromLabelSet = match attributes {
            MetricAttributes::Prometheus { labels } => labels,
            MetricAttributes::Empty => &NO_LABELS,
            other => return Err(format!("attributes of another meter: {other:?}").into()),
        };
        let keys: Vec<&str> = labels.keys_ordered().collect();
        let mut by_key = labels.as_prom_labels();
        let values = keys
            .iter()
            .map(|k| by_key.remove(k).unwrap_or_default())
            .collect();
        Ok((self.vector(&keys)?, values))
    }
}

fn mismatch(name: &str) -> Box<dyn std::error::Error> {
    format!("{name} was created as another kind of metric").into()
}

/// The series of one label set, from a vector of the expected kind.
macro_rules! series {
    ($instrument:expr, $attributes:expr, $variant:ident) => {{
        let (vector, values) = $instrument.bind($attributes)?;
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        match vector {
            Vector::$variant(vector) => vector.get_metric_with_label_values(&values)?,
            _ => return Err(mismatch(&$instrument.name)),
        }
    }};
}

impl MetricAttributable<Box<dyn CounterBase>> for Instrument {
    fn with_attributes(
        &self,
        attributes: &MetricAttributes,
    ) -> Result<Box<dyn CounterBase>, Box<dyn std::error::Error>> {
        Ok(Box::new(CounterSeries(series!(self, attributes, Counter))))
    }
}

impl MetricAttributable<Box<dyn GaugeBase>> for Instrument {
    fn with_attributes(
        &self,
        attributes: &MetricAttributes,
    ) -> Result<Box<dyn GaugeBase>, Box<dyn std::error::Error>> {
        Ok(Box::new(GaugeSeries(series!(self, attributes, Gauge))))
    }
}

impl MetricAttributable<Box<dyn UpDownCounterBase>> for Instrument {
    fn with_attributes(
        &self,
        attributes: &MetricAttributes,
    ) -> Result<Box<dyn UpDownCounterBase>, Box<dyn std::error::Error>> {
        Ok(Box::new(GaugeSeries(series!(self, attributes, Gauge))))
    }
}

impl MetricAttributable<Box<dyn GaugeF64Base>> for Instrument {
    fn with_attributes(
        &self,
        attributes: &MetricAttributes,
    ) -> Result<Box<dyn GaugeF64Base>, Box<dyn std::error::Error>> {
        Ok(Box::new(GaugeF64Series(series!(
            self, attributes, GaugeF64
        ))))
    }
}

impl MetricAttributable<Box<dyn HistogramBase>> for Instrument {
    fn with_attributes(
        &self,
        attributes: &MetricAttributes,
    ) -> Result<Box<dyn HistogramBase>, Box<dyn std::error::Error>> {
        Ok(Box::new(HistogramSeries(series!(
            self, attributes, Histogram
        ))))
    }
}

impl MetricAttributable<Box<dyn HistogramF64Base>> for Instrument {
    fn with_attributes(
        &self,
        attributes: &MetricAttributes,
    ) -> Result<Box<dyn HistogramF64Base>, Box<dyn std::error::Error>> {
        Ok(Box::new(HistogramSeries(series!(
            self, attributes, Histogram
        ))))
    }
}

impl MetricAttributable<Box<dyn HistogramDurationBase>> for Instrument {
    fn with_attributes(
        &self,
        attributes: &MetricAttributes,
    ) -> Result<Box<dyn HistogramDurationBase>, Box<dyn std::error::Error>> {
        Ok(Box::new(HistogramSeries(series!(
            self, attributes, Histogram
        ))))
    }
}

struct CounterSeries(prometheus::IntCounter);
impl CounterBase for CounterSeries {
    fn adds(&self, value: u64) {
        self.0.inc_by(value);
    }
}

struct GaugeSeries(prometheus::IntGauge);
impl GaugeBase for GaugeSeries {
    fn records(&self, value: u64) {
        self.0.set(i64::try_from(value).unwrap_or(i64::MAX));
    }
}
impl UpDownCounterBase for GaugeSeries {
    fn adds(&self, value: i64) {
        self.0.add(value);
    }
}

struct GaugeF64Series(prometheus::Gauge);
impl GaugeF64Base for GaugeF64Series {
    fn records(&self, value: f64) {
        self.0.set(value);
    }
}

/// Durations are recorded in seconds (the histogram's name ends in `_seconds`).
struct HistogramSeries(prometheus::Histogram);
impl HistogramBase for HistogramSeries {
    fn records(&self, value: u64) {
        self.0.observe(value as f64);
    }
}
impl HistogramF64Base for HistogramSeries {
    fn records(&self, value: f64) {
        self.0.observe(value);
    }
}
impl HistogramDurationBase for HistogramSeries {
    fn records(&self, value: Duration) {
        self.0.observe(value.as_secs_f64());
    }
}

impl CoreMeter for SdkMeter {
    fn new_attributes(&self, attribs: NewAttributes) -> MetricAttributes {
        MetricAttributes::Prometheus {
            labels: Arc::new(attribs.into()),
        }
    }

    fn extend_attributes(
        &self,
        existing: MetricAttributes,
        attribs: NewAttributes,
    ) -> MetricAttributes {
        let mut labels = match existing {
            MetricAttributes::Prometheus { labels } => Arc::unwrap_or_clone(labels),
            _ => OrderedPromLabelSet::new(),
        };
        for kv in attribs.attributes {
            labels.add_kv(kv);
        }
        MetricAttributes::Prometheus {
            labels: Arc::new(labels),
        }
    }

    fn counter(&self, params: MetricParameters) -> Counter {
        // Counters end in `_total`, once (the SDK already names one `local_activity_total`).
        let name = if params.name.ends_with("_total") {
            params.name.to_string()
        } else {
            format!("{}_total", params.name)
        };
        Counter::new(Arc::new(self.instrument(
            name,
            &params.description,
            Kind::Counter,
        )))
    }

    fn histogram(&self, params: MetricParameters) -> Histogram {
        Histogram::new(Arc::new(self.histogram_instrument(&params, false)))
    }

    fn histogram_f64(&self, params: MetricParameters) -> HistogramF64 {
        HistogramF64::new(Arc::new(self.histogram_instrument(&params, false)))
    }

    fn histogram_duration(&self, params: MetricParameters) -> HistogramDuration {
        HistogramDuration::new(Arc::new(self.histogram_instrument(&params, true)))
    }

    fn gauge(&self, params: MetricParameters) -> Gauge {
        Gauge::new(Arc::new(self.instrument(
            params.name.to_string(),
            &params.description,
            Kind::Gauge,
        )))
    }

    fn gauge_f64(&self, params: MetricParameters) -> GaugeF64 {
        GaugeF64::new(Arc::new(self.instrument(
            params.name.to_string(),
            &params.description,
            Kind::GaugeF64,
        )))
    }

    fn up_down_counter(&self, params: MetricParameters) -> UpDownCounter {
        UpDownCounter::new(Arc::new(self.instrument(
            params.name.to_string(),
            &params.description,
            Kind::Gauge,
        )))
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};
    use temporalio_common::telemetry::metrics::MetricKeyValue;

    use super::*;

    fn text(registry: &prometheus::Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn records_every_kind_under_prometheus_names() {
        let (registry, meter) = sdk_registry().unwrap();
        let attrs = meter.new_attributes(NewAttributes::new(vec![
            MetricKeyValue::new("task_queue", "delivery-orders"),
            MetricKeyValue::new("worker-type", "WorkflowWorker"),
        ]));
        meter
            .counter("temporal_workflow_task_execution_failed".into())
            .add(2, &attrs);
        meter
            .histogram_duration("temporal_workflow_task_schedule_to_start_latency".into())
            .record(Duration::from_millis(250), &attrs);
        meter
            .gauge("temporal_worker_task_slots_available".into())
            .record(7, &attrs);
        meter
            .up_down_counter("temporal_num_pollers".into())
            .add(3, &attrs);
        let body = text(&registry);
        assert!(
            body.contains(
                r#"temporal_workflow_task_execution_failed_total{task_queue="delivery-orders",worker_type="WorkflowWorker"} 2"#
            ),
            "{body}"
        );
        assert!(
            body.contains(
                r#"temporal_workflow_task_schedule_to_start_latency_seconds_bucket{task_queue="delivery-orders",worker_type="WorkflowWorker",le="0.5"} 1"#
            ),
            "{body}"
        );
        assert!(
            body.contains(r#"temporal_worker_task_slots_available{task_queue="delivery-orders",worker_type="WorkflowWorker"} 7"#),
            "{body}"
        );
        assert!(body.contains(r#"temporal_num_pollers{"#), "{body}");
    }

    #[test]
    fn one_name_with_two_label_sets_is_one_family() {
        let (registry, meter) = sdk_registry().unwrap();
        let counter = meter.counter("temporal_request".into());
        let narrow = meter.new_attributes(NewAttributes::new(vec![MetricKeyValue::new(
            "operation",
            "PollWorkflowTaskQueue",
        )]));
        let wide = meter.extend_attributes(
            narrow.clone(),
            NewAttributes::new(vec![MetricKeyValue::new("task_queue", "q")]),
        );
        counter.add(1, &narrow);
        counter.add(1, &wide);
        let body = text(&registry);
        assert_eq!(
            body.matches("# TYPE temporal_request_total counter")
                .count(),
            1,
            "{body}"
        );
        assert!(
            body.contains(r#"temporal_request_total{operation="PollWorkflowTaskQueue"} 1"#),
            "{body}"
        );
        assert!(
            body.contains(
                r#"temporal_request_total{operation="PollWorkflowTaskQueue",task_queue="q"} 1"#
            ),
            "{body}"
        );
    }
}
