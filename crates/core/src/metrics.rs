//! The metrics a Prometheus server scrapes (`metrics_listen`, `GET /metrics`), in the text
//! exposition format 0.0.4.
//!
//! One registry per process, like a Prometheus client library's default registry: in the single
//! process every service records into it, in the split deployment each process serves its own.
//! Counters, gauges and histograms are atomics updated where the event happens (a few
//! nanoseconds, recorded whether or not anyone scrapes). What is a state rather than an event
//! (clients by status, the signing key's age, lock-outs in force, the process's memory) is
//! read when scraped, by the [`Collect`]ors the services register.
//!
//! Every label value is one of a known few (grant types, error codes, routes, limits), never a
//! client's or person's name (gRPC paths are recorded only after the caller was authenticated);
//! and each family holds at most [`MAX_SERIES`] series ([`MAX_HTTP_SERIES`] for the HTTP
//! histogram), past which new label sets are counted under `other`, so nothing a caller sends
//! can grow the registry.
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

/// The most series one family keeps (the HTTP histogram: [`MAX_HTTP_SERIES`]).
pub const MAX_SERIES: usize = 256;
/// Routes × methods × status classes, with room to spare.
pub const MAX_HTTP_SERIES: usize = 1024;

/// What `Content-Type` a scrape is answered with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Seconds: the bounds of the latency histograms' buckets, from 0.25 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 15] =
    [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// One series: its label values, and its metric.
type Entry<M> = (Box<[Box<str>]>, Arc<M>);

/// A family's series: label values and their metric, found by a linear scan (a family has a
/// few dozen series; comparing short strings is cheaper than hashing and allocating a key).
struct Series<M> {
    label_names: &'static [&'static str],
    series: RwLock<Vec<Entry<M>>>,
    max: usize,
}

impl<M: Default> Series<M> {
    const fn new(label_names: &'static [&'static str], max: usize) -> Series<M> {
        Series { label_names, series: RwLock::new(Vec::new()), max }
    }

    fn get(&self, values: &[&str]) -> Arc<M> {
        debug_assert_eq!(values.len(), self.label_names.len());
        let found = |series: &[Entry<M>], values: &[&str]| {
            series.iter().find(|(v, _)| v.iter().map(|s| &**s).eq(values.iter().copied())).map(|(_, m)| m.clone())
        };
        if let Some(metric) = found(&self.series.read().unwrap_or_else(|p| p.into_inner()), values) {
            return metric;
        }
        let mut series = self.series.write().unwrap_or_else(|p| p.into_inner());
        let other: Vec<&str>;
        let values = if series.len() >= self.max {
            other = vec!["other"; values.len()];
            &other[..]
        } else {
            values
        };
        if let Some(metric) = found(&series, values) {
            return metric;
        }
        let metric = Arc::new(M::default());
        series.push((values.iter().map(|v| Box::from(*v)).collect(), metric.clone()));
        metric
    }

    fn snapshot(&self) -> Vec<Entry<M>> {
        let mut series = self.series.read().unwrap_or_else(|p| p.into_inner()).clone();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        series
    }
}

/// A counter family: `<name>_total` by its labels.
pub struct Counter {
    name: &'static str,
    help: &'static str,
    series: Series<AtomicU64>,
}

impl Counter {
    pub const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Counter {
        Counter { name, help, series: Series::new(labels, MAX_SERIES) }
    }

    pub fn add(&self, values: &[&str], n: u64) {
        self.series.get(values).fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    /// Every series' label values and count, in label order (for this process's own pages).
    pub fn values(&self) -> Vec<(Vec<String>, u64)> {
        let series = self.series.snapshot();
        series
            .into_iter()
            .map(|(v, n)| (v.iter().map(|s| s.to_string()).collect(), n.load(Ordering::Relaxed)))
            .collect()
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        for (values, count) in self.series.snapshot() {
            sample(out, self.name, self.series.label_names, &values, None, count.load(Ordering::Relaxed) as f64);
        }
    }
}

/// A gauge family set where its value changes.
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    series: Series<AtomicI64>,
}

impl Gauge {
    pub const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Gauge {
        Gauge { name, help, series: Series::new(labels, MAX_SERIES) }
    }

    pub fn set(&self, values: &[&str], value: i64) {
        self.series.get(values).store(value, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "gauge");
        for (values, value) in self.series.snapshot() {
            sample(out, self.name, self.series.label_names, &values, None, value.load(Ordering::Relaxed) as f64);
        }
    }
}

/// One histogram's counts: per bucket (not cumulative; summed when rendered), the sum in
/// nanoseconds, and the count.
pub struct Buckets {
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Buckets {
    fn default() -> Buckets {
        Buckets { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum_nanos: AtomicU64::new(0) }
    }
}

/// A histogram family of durations, in seconds, over [`LATENCY_BUCKETS`].
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    series: Series<Buckets>,
}

impl Histogram {
    pub const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Histogram {
        Histogram::with_max(name, help, labels, MAX_SERIES)
    }

    pub const fn with_max(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        max: usize,
    ) -> Histogram {
        Histogram { name, help, series: Series::new(labels, max) }
    }

    pub fn observe(&self, values: &[&str], duration: Duration) {
        let buckets = self.series.get(values);
        let seconds = duration.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(LATENCY_BUCKETS.len());
        buckets.counts[bucket].fetch_add(1, Ordering::Relaxed);
        buckets.sum_nanos.fetch_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let labels = self.series.label_names;
        for (values, buckets) in self.series.snapshot() {
            let mut cumulative = 0u64;
            for (i, count) in buckets.counts.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                let le = LATENCY_BUCKETS.get(i).map_or_else(|| "+Inf".to_owned(), |le| format_value(*le));
                let name = format!("{}_bucket", self.name);
                sample(out, &name, labels, &values, Some(&le), cumulative as f64);
            }
            let sum = buckets.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            sample(out, &format!("{}_sum", self.name), labels, &values, None, sum);
            sample(out, &format!("{}_count", self.name), labels, &values, None, cumulative as f64);
        }
    }
}

/// A value read when scraped.
pub struct Reading {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Reading {
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Reading {
        Reading { name, help, kind: Kind::Gauge, labels: Vec::new(), value }
    }

    pub fn label(mut self, name: &'static str, value: impl Into<String>) -> Reading {
        self.labels.push((name, value.into()));
        self
    }
}

pub type Readings<'a> = Pin<Box<dyn Future<Output = Vec<Reading>> + Send + 'a>>;

/// What a service reads when scraped (a database count, its key set).
pub trait Collect: Send + Sync + 'static {
    fn collect(&self) -> Readings<'_>;
}

/// The collectors, held weakly: a service that has stopped (tests start many in one process)
/// is dropped from the list rather than kept alive by it.
fn collectors() -> &'static Mutex<Vec<Weak<dyn Collect>>> {
    static COLLECTORS: OnceLock<Mutex<Vec<Weak<dyn Collect>>>> = OnceLock::new();
    COLLECTORS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Adds a collector, read at every scrape for as long as the caller keeps the `Arc`.
pub fn register(collector: &Arc<dyn Collect>) {
    let mut list = collectors().lock().unwrap_or_else(|p| p.into_inner());
    list.retain(|c| c.strong_count() > 0);
    list.push(Arc::downgrade(collector));
}

/// How long a scrape waits for one collector (a database that does not answer, say) before
/// leaving its readings out and saying so in `nmos_auth_scrape_collector_failures_total`.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(2);

// The families. Names and labels follow Prometheus's conventions (base units, `_total`).

pub static TOKENS_ISSUED: Counter =
    Counter::new("nmos_auth_tokens_issued_total", "Access tokens issued, by grant type", &["grant_type"]);
pub static TOKENS_REFUSED: Counter = Counter::new(
    "nmos_auth_token_requests_refused_total",
    "Token requests refused, by grant type and OAuth error code",
    &["grant_type", "error"],
);
pub static OAUTH_ERRORS: Counter = Counter::new(
    "nmos_auth_oauth_errors_total",
    "OAuth error responses from every endpoint, by error code",
    &["error"],
);
pub static SIGN_IN_LOCKOUTS: Counter =
    Counter::new("nmos_auth_sign_in_lockouts_total", "Sign-in lock-outs started, by the limit met", &["limit"]);
pub static SIGN_INS_REFUSED: Counter =
    Counter::new("nmos_auth_sign_ins_refused_total", "Sign-ins refused during a lock-out, by the limit", &["limit"]);
pub static HOUSEKEEPING_REMOVED: Counter =
    Counter::new("nmos_auth_housekeeping_removed_rows_total", "Expired rows purged, by table", &["table"]);
pub static COLLECTOR_FAILURES: Counter = Counter::new(
    "nmos_auth_scrape_collector_failures_total",
    "Scrapes that left a service's readings out because it did not answer within 2 s",
    &[],
);
pub static DEPENDENCY_UP: Gauge = Gauge::new(
    "nmos_auth_dependency_up",
    "Whether a dependency of this process (its database, a peer service) answers: 1 or 0",
    &["dependency"],
);
pub static HTTP_DURATION: Histogram = Histogram::with_max(
    "nmos_auth_http_request_duration_seconds",
    "Duration of HTTP requests the gateway served, by route, method and status class",
    &["route", "method", "status"],
    MAX_HTTP_SERIES,
);
pub static RPC_DURATION: Histogram = Histogram::new(
    "nmos_auth_grpc_server_duration_seconds",
    "Duration of gRPC calls served, by service and method",
    &["service", "method"],
);

/// The whole exposition: the families, then what the collectors read, then the process. One
/// scrape at a time: the collectors query databases and walk the sign-in throttle, and a burst
/// of scrapes must not multiply that.
pub async fn render() -> String {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut out = String::with_capacity(16 * 1024);
    TOKENS_ISSUED.render(&mut out);
    TOKENS_REFUSED.render(&mut out);
    OAUTH_ERRORS.render(&mut out);
    SIGN_IN_LOCKOUTS.render(&mut out);
    SIGN_INS_REFUSED.render(&mut out);
    HOUSEKEEPING_REMOVED.render(&mut out);
    DEPENDENCY_UP.render(&mut out);
    HTTP_DURATION.render(&mut out);
    RPC_DURATION.render(&mut out);

    let live: Vec<Arc<dyn Collect>> =
        collectors().lock().unwrap_or_else(|p| p.into_inner()).iter().filter_map(Weak::upgrade).collect();
    let mut readings = process_readings();
    for collector in &live {
        match tokio::time::timeout(COLLECT_TIMEOUT, collector.collect()).await {
            Ok(more) => readings.extend(more),
            Err(_) => COLLECTOR_FAILURES.inc(&[]),
        }
    }
    COLLECTOR_FAILURES.render(&mut out);
    // Grouped by name, each name's HELP and TYPE once, as the format requires.
    readings.sort_by(|a, b| a.name.cmp(b.name).then_with(|| a.labels.cmp(&b.labels)));
    let mut previous = "";
    for r in &readings {
        if r.name != previous {
            header(&mut out, r.name, r.help, if r.kind == Kind::Counter { "counter" } else { "gauge" });
            previous = r.name;
        }
        let names: Vec<&str> = r.labels.iter().map(|(n, _)| *n).collect();
        let values: Vec<&str> = r.labels.iter().map(|(_, v)| v.as_str()).collect();
        sample(&mut out, r.name, &names, &values, None, r.value);
    }
    out
}

/// The process's own readings, from /proc (Linux): memory, CPU, threads, open files, start.
fn process_readings() -> Vec<Reading> {
    let mut readings = vec![
        Reading::gauge("nmos_auth_build_info", "The running version, as a label; always 1", 1.0)
            .label("version", env!("CARGO_PKG_VERSION")),
    ];
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return readings;
    };
    // Fields after the command (which may hold spaces), numbered from 3 (state) as in proc(5).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return readings;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    // The kernel's clock ticks: 100 on every Linux this runs on (USER_HZ, fixed by the ABI).
    const TICKS: f64 = 100.0;
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        let mut cpu = Reading::gauge("process_cpu_seconds_total", "User and system CPU time spent, in seconds", 0.0);
        cpu.kind = Kind::Counter;
        cpu.value = (utime + stime) / TICKS;
        readings.push(cpu);
    }
    if let Some(threads) = field(20) {
        readings.push(Reading::gauge("process_threads", "Threads in this process", threads));
    }
    if let Some(vsize) = field(23) {
        readings.push(Reading::gauge("process_virtual_memory_bytes", "Virtual memory, in bytes", vsize));
    }
    // In kB from the kernel, whatever the page size.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().strip_suffix("kB"));
    if let Some(kb) = rss_kb.and_then(|kb| kb.trim().parse::<f64>().ok()) {
        readings.push(Reading::gauge("process_resident_memory_bytes", "Resident memory, in bytes", kb * 1024.0));
    }
    // Worked out once: the clock may be stepped later, and a start time that moves looks like a restart.
    static STARTED: OnceLock<Option<f64>> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
        let up = uptime.split_whitespace().next()?.parse::<f64>().ok()?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
        Some((now.as_secs_f64() - up + field(22)? / TICKS).round())
    });
    if let Some(started) = *started {
        readings.push(Reading::gauge(
            "process_start_time_seconds",
            "When this process started, in seconds since the Unix epoch",
            started,
        ));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        readings.push(Reading::gauge("process_open_fds", "Open file descriptors", fds.count() as f64));
    }
    readings
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, names: &[&str], values: &[impl AsRef<str>], le: Option<&str>, value: f64) {
    out.push_str(name);
    let labels = names.iter().zip(values.iter().map(AsRef::as_ref)).chain(le.map(|le| (&"le", le)));
    let mut first = true;
    for (label, value) in labels {
        out.push(if std::mem::take(&mut first) { '{' } else { ',' });
        let _ = write!(out, "{label}=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    out.push('\n');
}

fn format_value(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.is_nan() {
        "NaN".to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static REQUESTS: Counter = Counter::new("test_requests_total", "Requests", &["route"]);
    static LATENCY: Histogram = Histogram::new("test_latency_seconds", "Latency", &["route"]);

    fn rendered(f: impl Fn(&mut String)) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn counters_escape_label_values_and_stop_growing_at_the_bound() {
        REQUESTS.inc(&["a\"b\\c\nd"]);
        for i in 0..MAX_SERIES + 10 {
            REQUESTS.inc(&[&format!("r{i}")]);
        }
        let out = rendered(|out| REQUESTS.render(out));
        assert!(out.contains("test_requests_total{route=\"a\\\"b\\\\c\\nd\"} 1\n"), "{out}");
        assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), MAX_SERIES + 1, "{out}");
        assert!(out.contains("test_requests_total{route=\"other\"} 11\n"), "{out}");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        LATENCY.observe(&["/token"], Duration::from_micros(300));
        LATENCY.observe(&["/token"], Duration::from_millis(3));
        LATENCY.observe(&["/token"], Duration::from_secs(20));
        let out = rendered(|out| LATENCY.render(out));
        let value = |needle: &str| {
            let line = out.lines().find(|l| l.starts_with(needle)).unwrap_or_else(|| panic!("{needle} in {out}"));
            line.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap()
        };
        assert_eq!(value("test_latency_seconds_bucket{route=\"/token\",le=\"0.00025\"}"), 0.0);
        assert_eq!(value("test_latency_seconds_bucket{route=\"/token\",le=\"0.0005\"}"), 1.0);
        assert_eq!(value("test_latency_seconds_bucket{route=\"/token\",le=\"0.005\"}"), 2.0);
        assert_eq!(value("test_latency_seconds_bucket{route=\"/token\",le=\"10\"}"), 2.0);
        assert_eq!(value("test_latency_seconds_bucket{route=\"/token\",le=\"+Inf\"}"), 3.0);
        assert_eq!(value("test_latency_seconds_count{route=\"/token\"}"), 3.0);
        assert!((value("test_latency_seconds_sum{route=\"/token\"}") - 20.0033).abs() < 1e-9, "{out}");
        assert!(out.starts_with("# HELP test_latency_seconds Latency\n# TYPE test_latency_seconds histogram\n"));
    }

    struct Fixed(f64);

    impl Collect for Fixed {
        fn collect(&self) -> Readings<'_> {
            let value = self.0;
            Box::pin(async move {
                vec![
                    Reading::gauge("test_clients", "Clients by status", value).label("status", "pending"),
                    Reading::gauge("test_clients", "Clients by status", 1.0).label("status", "approved"),
                ]
            })
        }
    }

    #[tokio::test]
    async fn collectors_are_read_while_their_service_lives() {
        let collector: Arc<dyn Collect> = Arc::new(Fixed(7.0));
        register(&collector);
        let out = render().await;
        assert!(
            out.contains(
                "# TYPE test_clients gauge\ntest_clients{status=\"approved\"} 1\ntest_clients{status=\"pending\"} 7\n"
            ),
            "{out}"
        );
        assert!(out.contains("\nprocess_resident_memory_bytes "), "{out}");
        drop(collector);
        assert!(!render().await.contains("test_clients"));
    }
}
