//! Logs, traces and metrics.
//!
//! Logs: human-readable lines by default, JSON lines on request; `RUST_LOG` filters them. The
//! IS-10 audit events use the target `audit`, so an operator can route them.
//!
//! Traces and metrics: exported over OTLP/gRPC when the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or its `_TRACES_`/`_METRICS_` forms) is set, with `OTEL_SERVICE_NAME` and the other standard
//! variables honoured. Otherwise nothing is collected: the request spans are DEBUG spans that
//! no subscriber enables, the W3C trace context is neither read nor written, and no metric
//! attributes are built.
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::metrics::{Counter, Gauge, Histogram};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::codegen::http::{HeaderMap, HeaderName, HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::LogFormat;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces and metrics are being exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The exporters, to flush at exit.
#[must_use = "call shutdown() at exit so that the last spans and metrics are sent"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Sends what is buffered and stops the exporters.
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer {
            let _ = tracer.shutdown();
        }
        if let Some(meter) = self.meter {
            let _ = meter.shutdown();
        }
    }
}

/// Sets up logging, and OTLP export when configured. `service` names this process in traces
/// (`OTEL_SERVICE_NAME` overrides it). Must run inside the Tokio runtime.
pub fn init(format: LogFormat, service: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = log_layer(format, std::io::stderr, ansi).with_filter(filter);
    let (otel, telemetry) = match otlp(service) {
        Ok(Some((tracer, meter))) => {
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer.tracer("nmos-auth"))
                // Our request spans (DEBUG) and warnings; nothing else becomes a span.
                .with_filter(LevelFilter::DEBUG)
                .with_filter(filter_fn(|meta| {
                    meta.target().starts_with("nmos_auth") && (meta.is_span() || *meta.level() <= tracing::Level::WARN)
                }));
            ENABLED.store(true, Ordering::Relaxed);
            (Some(layer), Telemetry { tracer: Some(tracer), meter: Some(meter) })
        }
        Ok(None) => (None, Telemetry { tracer: None, meter: None }),
        Err(e) => {
            eprintln!("nmos-auth: OpenTelemetry export is off: {e:#}");
            (None, Telemetry { tracer: None, meter: None })
        }
    };
    // A second initialisation (tests, embedding) keeps the first subscriber.
    let _ = Registry::default().with(fmt).with(otel).try_init();
    telemetry
}

/// The log lines, written to `writer`.
///
/// Values from outside (client names, usernames, redirect URIs, scopes, user agents, error
/// descriptions) reach the log as fields, so that no value can forge a line or a field. In the
/// text format a value holding a space, `=`, a quote, or a control or format character (newline,
/// carriage return, ANSI escape, NUL, Unicode line separators and direction overrides) is written
/// quoted, with those characters escaped, and such characters in a message are escaped (OWASP's
/// logging guidance, CWE-117). The JSON format writes every value as a JSON string.
pub fn log_layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Text => fmt.fmt_fields(EscapedFields).boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
}

/// The text format's fields: `name=value`, quoted and escaped where a value could be mistaken
/// for more than one value or more than one line.
struct EscapedFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for EscapedFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = EscapingVisitor { writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

/// A character that could end a line, rewrite the terminal, or hide text from a reader.
fn unsafe_in_log(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `text`, each character that `escape` picks as its Rust escape (`\n`, `\u{1b}`). Text
/// with nothing to escape (nearly every line) is written as it is, without a copy.
fn write_escaped(
    writer: &mut tracing_subscriber::fmt::format::Writer<'_>,
    text: &str,
    escape: impl Fn(char) -> bool,
) -> std::fmt::Result {
    let mut rest = text;
    while let Some((at, c)) = rest.char_indices().find(|&(_, c)| escape(c)) {
        writer.write_str(&rest[..at])?;
        write!(writer, "{}", c.escape_default())?;
        rest = &rest[at + c.len_utf8()..];
    }
    writer.write_str(rest)
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &tracing::field::Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) { "" } else { " " };
        let name = field.name();
        let writer = &mut self.writer;
        self.result = if name == "message" {
            // Our own words, with values formatted in: only what could break the line is escaped.
            writer.write_str(separator).and_then(|()| write_escaped(writer, text, unsafe_in_log))
        } else if !text.is_empty() && !text.chars().any(|c| c == ' ' || c == '=' || c == '"' || unsafe_in_log(c)) {
            write!(writer, "{separator}{name}={text}")
        } else {
            // Quoted, with quotes, backslashes, control and format characters escaped.
            write!(writer, "{separator}{name}=\"")
                .and_then(|()| write_escaped(writer, text, |c| c == '"' || c == '\\' || unsafe_in_log(c)))
                .and_then(|()| writer.write_str("\""))
        };
    }
}

impl tracing::field::Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

fn otlp(service: &str) -> anyhow::Result<Option<(SdkTracerProvider, SdkMeterProvider)>> {
    let set = |name: &&str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let endpoints =
        ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"];
    if !endpoints.iter().any(set) {
        return Ok(None);
    }
    let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| service.to_owned());
    let resource = Resource::builder().with_service_name(name).build();
    let spans = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    let tracer = SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();
    let metrics = opentelemetry_otlp::MetricExporter::builder().with_tonic().build()?;
    let meter = SdkMeterProvider::builder().with_periodic_exporter(metrics).with_resource(resource).build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(tracer.clone());
    global::set_meter_provider(meter.clone());
    Ok(Some((tracer, meter)))
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(key), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes the current span's W3C trace context (`traceparent`) into outgoing headers.
pub fn inject_context(headers: &mut HeaderMap) {
    if enabled() {
        let context = tracing::Span::current().context();
        global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut HeaderInjector(headers)));
    }
}

/// Makes `span` a child of the trace context in incoming headers, if they carry one.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if enabled() && headers.contains_key("traceparent") {
        let context = global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
        let _ = span.set_parent(context);
    }
}

/// The instruments every service records into (no-ops unless exporting).
pub struct Metrics {
    /// Seconds per HTTP request, by route, method and status.
    pub http_duration: Histogram<f64>,
    /// Seconds per gRPC call served, by service and method.
    pub rpc_duration: Histogram<f64>,
    /// Access tokens issued, by grant type.
    pub tokens_issued: Counter<u64>,
    /// Token requests refused, by grant type and error code.
    pub tokens_refused: Counter<u64>,
    /// OAuth error responses, by error code.
    pub oauth_errors: Counter<u64>,
    /// Expired rows purged, by table.
    pub housekeeping_removed: Counter<u64>,
    /// Whether each dependency of a process (its database, the peers it calls) answers: 1 or 0.
    pub dependency_up: Gauge<u64>,
    /// Sign-in lock-outs started, by the limit met.
    pub sign_in_locks: Counter<u64>,
    /// Sign-ins refused during a lock-out, by the limit.
    pub sign_in_refusals: Counter<u64>,
}

/// The instruments, created on first use (after [`init`] installed the meter provider).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = global::meter("nmos-auth");
        Metrics {
            http_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP requests served by the gateway")
                .build(),
            rpc_duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("s")
                .with_description("Duration of gRPC calls served")
                .build(),
            tokens_issued: meter
                .u64_counter("nmos_auth.tokens.issued")
                .with_description("Access tokens issued, by grant type")
                .build(),
            tokens_refused: meter
                .u64_counter("nmos_auth.tokens.refused")
                .with_description("Token requests refused, by grant type and error code")
                .build(),
            oauth_errors: meter
                .u64_counter("nmos_auth.oauth.errors")
                .with_description("OAuth error responses, by error code")
                .build(),
            housekeeping_removed: meter
                .u64_counter("nmos_auth.housekeeping.removed")
                .with_description("Expired rows purged, by table")
                .build(),
            dependency_up: meter
                .u64_gauge("nmos_auth.dependency.up")
                .with_description("Whether a dependency (the database, a peer service) answers: 1 or 0")
                .build(),
            sign_in_locks: meter
                .u64_counter("nmos_auth.signin.lockouts")
                .with_description("Sign-in lock-outs started, by the limit met")
                .build(),
            sign_in_refusals: meter
                .u64_counter("nmos_auth.signin.refused")
                .with_description("Sign-ins refused during a lock-out, by the limit")
                .build(),
        }
    })
}

/// Records an HTTP request the gateway served.
pub fn http_request_served(route: &str, method: &str, status: u16, elapsed: std::time::Duration) {
    // By class: a caller can provoke a dozen 4xx codes on any route, and the series must stay few.
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    crate::metrics::HTTP_DURATION.observe(&[route, method, class], elapsed);
    if enabled() {
        let attributes = [
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        metrics().http_duration.record(elapsed.as_secs_f64(), &attributes);
    }
}

/// Records a gRPC call served.
pub fn rpc_served(service: &str, method: &str, elapsed: std::time::Duration) {
    crate::metrics::RPC_DURATION.observe(&[service, method], elapsed);
    if enabled() {
        let attributes =
            [KeyValue::new("rpc.service", service.to_owned()), KeyValue::new("rpc.method", method.to_owned())];
        metrics().rpc_duration.record(elapsed.as_secs_f64(), &attributes);
    }
}

/// Counts expired rows purged from `table`.
pub fn housekeeping_removed(table: &'static str, rows: u64) {
    crate::metrics::HOUSEKEEPING_REMOVED.add(&[table], rows);
    if enabled() {
        metrics().housekeeping_removed.add(rows, &[KeyValue::new("table", table)]);
    }
}

/// Records whether `dependency` (`database`, or a peer's gRPC service name) answers.
pub fn dependency_up(dependency: &'static str, up: bool) {
    crate::metrics::DEPENDENCY_UP.set(&[dependency], i64::from(up));
    if enabled() {
        metrics().dependency_up.record(u64::from(up), &[KeyValue::new("dependency", dependency)]);
    }
}

/// Counts a sign-in lock-out that started, by the limit met.
pub fn sign_in_locked(limit: &'static str) {
    crate::metrics::SIGN_IN_LOCKOUTS.inc(&[limit]);
    if enabled() {
        metrics().sign_in_locks.add(1, &[KeyValue::new("limit", limit)]);
    }
}

/// Counts a sign-in refused during a lock-out.
pub fn sign_in_refused(limit: &'static str) {
    crate::metrics::SIGN_INS_REFUSED.inc(&[limit]);
    if enabled() {
        metrics().sign_in_refusals.add(1, &[KeyValue::new("limit", limit)]);
    }
}

/// Counts a token issued with `grant_type` (one of the grant types' own names).
pub fn token_issued(grant_type: &'static str) {
    crate::metrics::TOKENS_ISSUED.inc(&[grant_type]);
    if enabled() {
        metrics().tokens_issued.add(1, &[KeyValue::new("grant_type", grant_type)]);
    }
}

/// Counts a token request refused: `grant_type` is a grant type's name, `unsupported` or `none`.
pub fn token_refused(grant_type: &'static str, code: &'static str) {
    crate::metrics::TOKENS_REFUSED.inc(&[grant_type, code]);
    if enabled() {
        let attributes = [KeyValue::new("grant_type", grant_type), KeyValue::new("error", code)];
        metrics().tokens_refused.add(1, &attributes);
    }
}

/// Counts an OAuth error response.
pub fn oauth_error(code: &'static str) {
    crate::metrics::OAUTH_ERRORS.inc(&[code]);
    if enabled() {
        metrics().oauth_errors.add(1, &[KeyValue::new("error", code)]);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;

    /// What a log layer wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `format` writes for one audit event whose values came from outside.
    fn logged(format: LogFormat, name: &str, username: &str) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = Registry::default().with(log_layer(format, move || writer.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", user_agent = %name);
            let _entered = span.enter();
            tracing::info!(target: "audit", event = "client_registered", client_name = %name, username, "client registered");
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    /// The line with its quoted values left out (a backslash escapes the character after it).
    fn outside_quotes(line: &str) -> String {
        let (mut out, mut quoted, mut escaped) = (String::new(), false, false);
        for c in line.chars() {
            match (quoted, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, _, '"') => quoted = !quoted,
                (true, false, _) => {}
                (false, _, c) => out.push(c),
            }
        }
        out
    }

    const FORGED: &str = "x\n2026-11-30T00:00:00.000000Z  INFO audit: user signed in username=forged-admin";

    #[test]
    fn outside_values_cannot_forge_a_line_or_a_field_in_text() {
        for evil in [
            FORGED,
            "x\r2026-11-30T00:00:00Z  INFO audit: user signed in",
            "\u{1b}[2J\u{1b}[1;31mcleared",
            "nul\0byte",
            "x username=forged-admin",
            "line\u{2028}separator \u{202e}reversed",
        ] {
            let text = logged(LogFormat::Text, evil, "alice");
            assert_eq!(text.matches('\n').count(), 1, "one line, ending in a newline: {text:?}");
            assert!(!text.trim_end().chars().any(unsafe_in_log), "a raw control or format character: {text:?}");
            assert!(!outside_quotes(&text).contains(" username=forged-admin"), "a forged field: {text:?}");
            assert!(text.contains(" username=alice"), "{text:?}");
        }
        let text = logged(LogFormat::Text, FORGED, "alice");
        assert!(
            text.contains(
                r#"client_name="x\n2026-11-30T00:00:00.000000Z  INFO audit: user signed in username=forged-admin""#
            ),
            "quoted, the newline escaped: {text}"
        );
        let plain = logged(LogFormat::Text, "Node-1", "alice");
        assert!(plain.contains(" client_name=Node-1 "), "{plain}");
    }

    /// Messages are this server's own words (outside values go in fields, never in the message),
    /// but should one carry a line break or an escape, it still stays one line.
    #[test]
    fn a_message_stays_one_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = Registry::default().with(log_layer(LogFormat::Text, move || writer.clone(), false));
        tracing::subscriber::with_default(subscriber, || tracing::warn!("first\nsecond\r\u{1b}[2J"));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("first\\nsecond\\r\\u{1b}[2J\n"), "{text:?}");
    }

    #[test]
    fn outside_values_are_json_strings_in_json() {
        for evil in [FORGED, "x\ry", "\u{1b}[2Jcleared", "nul\0byte", "quote\" and \\ backslash"] {
            let json = logged(LogFormat::Json, evil, "alice");
            assert_eq!(json.matches('\n').count(), 1, "one line: {json:?}");
            let line: Value = serde_json::from_str(json.trim_end()).unwrap();
            assert_eq!(line["fields"]["client_name"], evil, "the value as it came: {json}");
            assert_eq!(line["fields"]["username"], "alice", "{json}");
            assert_eq!(line["span"]["user_agent"], evil, "{json}");
        }
    }
}
