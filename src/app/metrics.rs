//! Counters, gauges and latency histograms for `GET /metrics`, rendered in
//! Prometheus' text exposition format (version 0.0.4) by hand.
//!
//! Everything on the request path is an atomic add: per-route entries are
//! created once, at start, for the route templates the caller names, and
//! never change. Labels are bounded: a route label is one of those templates
//! (the one the request matched, worked out by `routes`) or `other` (paths
//! that are no route: scanners, typos). Figures that live in the database
//! (live agents, file size) are read at scrape time by the caller and passed
//! to [`Metrics::render`].
//!
//! This module knows neither warp, HTTP nor SQL: a status is a number the
//! caller got from the response, a sign-in arrives as its [`SignInOutcome`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::MetricsConfig;

/// The label of every path that is no route.
pub const OTHER_ROUTE: &str = "other";

/// Upper bounds of the latency buckets, in seconds (`+Inf` is implied).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub const CLOUDS: [&str; 3] = ["aws", "azure", "google"];

/// How an instance-identity sign-in ended (`routes` decides, from its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInOutcome {
    Success,
    /// The proof did not verify.
    InvalidProof,
    /// No agent, or several, for the instance.
    NoMatchingAgent,
    RateLimited,
    /// A malformed body or proof, or an agent not in the latest build.
    BadRequest,
    /// The server failed.
    Error,
}

impl SignInOutcome {
    pub const ALL: [SignInOutcome; 6] = [
        SignInOutcome::Success,
        SignInOutcome::InvalidProof,
        SignInOutcome::NoMatchingAgent,
        SignInOutcome::RateLimited,
        SignInOutcome::BadRequest,
        SignInOutcome::Error,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            SignInOutcome::Success => "success",
            SignInOutcome::InvalidProof => "invalid_proof",
            SignInOutcome::NoMatchingAgent => "no_matching_agent",
            SignInOutcome::RateLimited => "rate_limited",
            SignInOutcome::BadRequest => "bad_request",
            SignInOutcome::Error => "error",
        }
    }
}

/// Statuses counted individually: 100..=599.
const STATUSES: usize = 500;

struct RouteStats {
    /// Index: status - 100.
    statuses: Vec<AtomicU64>,
    /// Non-cumulative; the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl RouteStats {
    fn new() -> RouteStats {
        RouteStats {
            statuses: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn record(&self, status: u16, latency: Duration) {
        let i = usize::from(status.clamp(100, 599)) - 100;
        self.statuses[i].fetch_add(1, Relaxed);
        let secs = latency.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        self.buckets[b].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(
            latency.as_micros().min(u128::from(u64::MAX)) as u64,
            Relaxed,
        );
        self.count.fetch_add(1, Relaxed);
    }
}

/// Who may scrape.
#[derive(Clone)]
struct Access {
    enabled: bool,
    /// SHA-256 of the token, so comparing takes the same time however much matches.
    token: Option<[u8; 32]>,
}

/// Why a scrape is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// `metrics.enabled = false`: answer as for an unknown route.
    Disabled,
    /// A token is configured and the request did not carry it.
    Unauthorized,
}

/// Which kind of long-lived stream is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    WebSocket,
    Sse,
}

pub struct Metrics {
    /// By route template, plus [`OTHER_ROUTE`]; fixed at start.
    routes: HashMap<&'static str, RouteStats>,
    log_lines: AtomicU64,
    log_bytes: AtomicU64,
    log_overflows: AtomicU64,
    sign_ins: [[AtomicU64; SignInOutcome::ALL.len()]; CLOUDS.len()],
    websockets: Arc<AtomicI64>,
    sse: Arc<AtomicI64>,
    access: RwLock<Access>,
}

/// Counts an open stream until dropped.
pub struct StreamGuard(Arc<AtomicI64>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Metrics {
    /// Counts requests under each of `routes` (route templates) and
    /// [`OTHER_ROUTE`].
    pub fn new(config: &MetricsConfig, routes: impl IntoIterator<Item = &'static str>) -> Metrics {
        let routes = routes
            .into_iter()
            .chain([OTHER_ROUTE])
            .map(|r| (r, RouteStats::new()))
            .collect();
        let m = Metrics {
            routes,
            log_lines: AtomicU64::new(0),
            log_bytes: AtomicU64::new(0),
            log_overflows: AtomicU64::new(0),
            sign_ins: Default::default(),
            websockets: Arc::new(AtomicI64::new(0)),
            sse: Arc::new(AtomicI64::new(0)),
            access: RwLock::new(Access {
                enabled: true,
                token: None,
            }),
        };
        m.configure(config);
        m
    }

    /// Applies `metrics.enabled` and `metrics.token` (at start and on reload).
    pub fn configure(&self, config: &MetricsConfig) {
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = Access {
            enabled: config.enabled,
            token: config.token.as_ref().map(|t| digest(&t.0)),
        };
    }

    /// Whether a scrape with this `Authorization` header value may read.
    pub fn check_access(&self, authorization: Option<&str>) -> Result<(), Denied> {
        let access = self
            .access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !access.enabled {
            return Err(Denied::Disabled);
        }
        let Some(want) = access.token else {
            return Ok(());
        };
        let given = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .map(digest);
        if given == Some(want) {
            Ok(())
        } else {
            Err(Denied::Unauthorized)
        }
    }

    /// One answered request: the route template it matched (anything not
    /// given to [`Metrics::new`] counts as [`OTHER_ROUTE`]), its status and
    /// latency.
    pub fn record_request(&self, template: &str, status: u16, latency: Duration) {
        if let Some(stats) = self
            .routes
            .get(template)
            .or_else(|| self.routes.get(OTHER_ROUTE))
        {
            stats.record(status, latency);
        }
    }

    /// A stored log batch.
    pub fn logs_ingested(&self, lines: usize, bytes: i64) {
        self.log_lines.fetch_add(lines as u64, Relaxed);
        self.log_bytes.fetch_add(bytes.max(0) as u64, Relaxed);
    }

    /// A log batch refused for crossing the agent's cap.
    pub fn log_overflow(&self) {
        self.log_overflows.fetch_add(1, Relaxed);
    }

    /// An instance-identity sign-in and how it ended.
    pub fn sign_in(&self, cloud: &str, outcome: SignInOutcome) {
        let o = SignInOutcome::ALL
            .iter()
            .position(|x| *x == outcome)
            .unwrap_or(SignInOutcome::ALL.len() - 1);
        if let Some(c) = CLOUDS.iter().position(|c| *c == cloud) {
            self.sign_ins[c][o].fetch_add(1, Relaxed);
        }
    }

    /// Counts a stream as open until the guard is dropped.
    pub fn stream_opened(&self, kind: Stream) -> StreamGuard {
        let gauge = match kind {
            Stream::WebSocket => &self.websockets,
            Stream::Sse => &self.sse,
        };
        gauge.fetch_add(1, Relaxed);
        StreamGuard(gauge.clone())
    }

    /// The exposition text. `live_agents` is `None` when it could not be read.
    /// `connected` is (agents connected over `/me/rpc`, tailnet peers
    /// coordinating: agents and clients, the server peer's WireGuard tunnels
    /// to agents); `derp` the embedded relay's counters.
    pub fn render(
        &self,
        live_agents: Option<i64>,
        database_bytes: u64,
        connected: (usize, usize, usize),
        derp: crate::derp::Stats,
    ) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let w = &mut out;
        header(w, "appliance_build_info", "gauge", "The running version.");
        line(
            w,
            "appliance_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );

        let mut routes: Vec<(&str, &RouteStats)> =
            self.routes.iter().map(|(k, s)| (*k, s)).collect();
        routes.sort_by(|a, b| a.0.cmp(b.0));
        header(
            w,
            "appliance_http_requests_total",
            "counter",
            "HTTP requests answered, by route template and status.",
        );
        for (route, stats) in &routes {
            for (i, n) in stats.statuses.iter().enumerate() {
                let n = n.load(Relaxed);
                if n > 0 {
                    let status = (i + 100).to_string();
                    line(
                        w,
                        "appliance_http_requests_total",
                        &[("route", route), ("status", &status)],
                        n,
                    );
                }
            }
        }
        header(
            w,
            "appliance_http_request_duration_seconds",
            "histogram",
            "Time to answer (headers sent), by route template.",
        );
        for (route, stats) in &routes {
            let count = stats.count.load(Relaxed);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, b) in stats.buckets.iter().enumerate() {
                cumulative += b.load(Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |v| v.to_string());
                line(
                    w,
                    "appliance_http_request_duration_seconds_bucket",
                    &[("route", route), ("le", &le)],
                    cumulative,
                );
            }
            let sum = stats.sum_micros.load(Relaxed) as f64 / 1e6;
            line_f(
                w,
                "appliance_http_request_duration_seconds_sum",
                &[("route", route)],
                sum,
            );
            // The count equals the +Inf bucket read above (not re-read: a request
            // finishing meanwhile must not make them disagree).
            line(
                w,
                "appliance_http_request_duration_seconds_count",
                &[("route", route)],
                cumulative,
            );
        }

        for (name, help, v) in [
            (
                "appliance_log_lines_ingested_total",
                "Agent log lines stored.",
                &self.log_lines,
            ),
            (
                "appliance_log_bytes_ingested_total",
                "Bytes of agent log output stored (before long lines are cut).",
                &self.log_bytes,
            ),
            (
                "appliance_log_overflows_total",
                "Log batches refused because the agent's log cap was reached.",
                &self.log_overflows,
            ),
        ] {
            header(w, name, "counter", help);
            line(w, name, &[], v.load(Relaxed));
        }

        header(
            w,
            "appliance_instance_identity_signins_total",
            "counter",
            "Instance-identity sign-ins, by cloud and outcome.",
        );
        for (c, cloud) in CLOUDS.iter().enumerate() {
            for (o, outcome) in SignInOutcome::ALL.iter().enumerate() {
                line(
                    w,
                    "appliance_instance_identity_signins_total",
                    &[("cloud", cloud), ("outcome", outcome.label())],
                    self.sign_ins[c][o].load(Relaxed),
                );
            }
        }

        if let Some(agents) = live_agents {
            header(
                w,
                "appliance_agents_live",
                "gauge",
                "Agents of workspaces' latest builds.",
            );
            line_i(w, "appliance_agents_live", &[], agents);
        }
        header(
            w,
            "appliance_agents_connected",
            "gauge",
            "Agent connections open on /me/rpc (monitored sessions).",
        );
        line(w, "appliance_agents_connected", &[], connected.0 as u64);
        header(
            w,
            "appliance_tailnet_peers",
            "gauge",
            "Peers on the tailnet coordinator (agents and clients).",
        );
        line(w, "appliance_tailnet_peers", &[], connected.1 as u64);
        header(
            w,
            "appliance_tailnet_server_tunnels",
            "gauge",
            "WireGuard tunnels from the server to agents (listening ports, containers, /pty).",
        );
        line(
            w,
            "appliance_tailnet_server_tunnels",
            &[],
            connected.2 as u64,
        );
        header(
            w,
            "appliance_derp_clients",
            "gauge",
            "Connections open on the embedded DERP relay.",
        );
        line(w, "appliance_derp_clients", &[], derp.connected);
        header(
            w,
            "appliance_derp_connections_total",
            "counter",
            "DERP relay connections that completed the handshake.",
        );
        line(w, "appliance_derp_connections_total", &[], derp.accepted);
        header(
            w,
            "appliance_derp_packets_relayed_total",
            "counter",
            "Packets the DERP relay queued for a connected peer.",
        );
        line(
            w,
            "appliance_derp_packets_relayed_total",
            &[],
            derp.packets_relayed,
        );
        header(
            w,
            "appliance_derp_packets_dropped_total",
            "counter",
            "Packets the DERP relay dropped, by reason.",
        );
        for (reason, n) in [
            ("queue_full", derp.dropped_queue_full),
            ("unknown_destination", derp.dropped_unknown_dest),
            ("peer_gone", derp.dropped_gone),
        ] {
            line(
                w,
                "appliance_derp_packets_dropped_total",
                &[("reason", reason)],
                n,
            );
        }
        header(
            w,
            "appliance_streams_open",
            "gauge",
            "Open long-lived streams (log-follow WebSockets, server-sent events).",
        );
        line_i(
            w,
            "appliance_streams_open",
            &[("kind", "websocket")],
            self.websockets.load(Relaxed),
        );
        line_i(
            w,
            "appliance_streams_open",
            &[("kind", "sse")],
            self.sse.load(Relaxed),
        );
        header(
            w,
            "appliance_database_size_bytes",
            "gauge",
            "Bytes on disk of the database file and its write-ahead log.",
        );
        line(w, "appliance_database_size_bytes", &[], database_bytes);
        out
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

fn labels(w: &mut String, name: &str, labels: &[(&str, &str)]) {
    w.push_str(name);
    if labels.is_empty() {
        return;
    }
    w.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            w.push(',');
        }
        w.push_str(k);
        w.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => w.push_str("\\\\"),
                '"' => w.push_str("\\\""),
                '\n' => w.push_str("\\n"),
                c => w.push(c),
            }
        }
        w.push('"');
    }
    w.push('}');
}

fn line(w: &mut String, name: &str, l: &[(&str, &str)], value: u64) {
    labels(w, name, l);
    let _ = writeln!(w, " {value}");
}

fn line_i(w: &mut String, name: &str, l: &[(&str, &str)], value: i64) {
    labels(w, name, l);
    let _ = writeln!(w, " {value}");
}

fn line_f(w: &mut String, name: &str, l: &[(&str, &str)], value: f64) {
    labels(w, name, l);
    let _ = writeln!(w, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const ROUTES: [&str; 3] = [
        "/healthz",
        "/api/v2/workspaceagents/me/logs",
        "/api/v2/workspaceagents/me/manifest",
    ];

    fn metrics(token: Option<&str>) -> Metrics {
        Metrics::new(
            &MetricsConfig {
                enabled: true,
                token: token.map(|t| Secret(t.to_owned())),
            },
            ROUTES,
        )
    }

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_match_the_count() {
        let m = metrics(None);
        let r = "/healthz";
        m.record_request(r, 200, Duration::from_micros(300));
        m.record_request(r, 200, Duration::from_millis(3));
        m.record_request(r, 503, Duration::from_secs(20));
        let derp = crate::derp::Stats {
            accepted: 5,
            connected: 2,
            packets_relayed: 70,
            dropped_queue_full: 1,
            dropped_unknown_dest: 3,
            dropped_gone: 0,
        };
        let text = m.render(Some(2), 4096, (1, 3, 2), derp);
        let b = |le: &str| {
            value(
                &text,
                &format!(
                    "appliance_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(b("0.0005").as_deref(), Some("1"));
        assert_eq!(b("0.0025").as_deref(), Some("1"));
        assert_eq!(b("0.005").as_deref(), Some("2"));
        assert_eq!(b("10").as_deref(), Some("2"));
        assert_eq!(b("+Inf").as_deref(), Some("3"));
        assert_eq!(
            value(
                &text,
                "appliance_http_request_duration_seconds_count{route=\"/healthz\"}"
            )
            .as_deref(),
            Some("3")
        );
        assert_eq!(
            value(
                &text,
                "appliance_http_requests_total{route=\"/healthz\",status=\"503\"}"
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(value(&text, "appliance_agents_live").as_deref(), Some("2"));
        assert_eq!(
            value(&text, "appliance_agents_connected").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, "appliance_tailnet_server_tunnels").as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, "appliance_tailnet_peers").as_deref(),
            Some("3")
        );
        assert_eq!(value(&text, "appliance_derp_clients").as_deref(), Some("2"));
        assert_eq!(
            value(&text, "appliance_derp_connections_total").as_deref(),
            Some("5")
        );
        assert_eq!(
            value(&text, "appliance_derp_packets_relayed_total").as_deref(),
            Some("70")
        );
        for (reason, n) in [
            ("queue_full", "1"),
            ("unknown_destination", "3"),
            ("peer_gone", "0"),
        ] {
            assert_eq!(
                value(
                    &text,
                    &format!("appliance_derp_packets_dropped_total{{reason=\"{reason}\"}}")
                )
                .as_deref(),
                Some(n)
            );
        }
        assert_eq!(
            value(&text, "appliance_database_size_bytes").as_deref(),
            Some("4096")
        );
    }

    #[test]
    fn only_the_given_routes_get_a_label_of_their_own() {
        let m = metrics(None);
        for i in 0..100 {
            m.record_request(&format!("/scan/{i}"), 404, Duration::ZERO);
            m.record_request(&format!("/new/{i}"), 200, Duration::ZERO);
        }
        m.record_request("/api/v2/workspaceagents/me/manifest", 200, Duration::ZERO);
        m.record_request("/api/v2/workspaceagents/me/manifest", 401, Duration::ZERO);
        let text = m.render(None, 0, (0, 0, 0), crate::derp::Stats::default());
        assert_eq!(
            value(
                &text,
                "appliance_http_requests_total{route=\"other\",status=\"404\"}"
            )
            .as_deref(),
            Some("100")
        );
        assert_eq!(
            value(
                &text,
                "appliance_http_requests_total{route=\"other\",status=\"200\"}"
            )
            .as_deref(),
            Some("100"),
            "a success does not make a path a route"
        );
        assert!(text.contains(
            "appliance_http_requests_total{route=\"/api/v2/workspaceagents/me/manifest\",status=\"401\"} 1"
        ));
        assert!(!text.contains("/scan/") && !text.contains("/new/"));
        assert!(
            !text.contains("appliance_agents_live"),
            "omitted when unknown"
        );
        assert_eq!(m.routes.len(), ROUTES.len() + 1);
    }

    #[test]
    fn sign_ins_are_counted_by_cloud_and_outcome() {
        use SignInOutcome::*;
        let m = metrics(None);
        for outcome in [
            Success,
            InvalidProof,
            InvalidProof,
            NoMatchingAgent,
            NoMatchingAgent,
            RateLimited,
            BadRequest,
            BadRequest,
            Error,
        ] {
            m.sign_in("google", outcome);
        }
        m.sign_in("nowhere", Success);
        let text = m.render(None, 0, (0, 0, 0), crate::derp::Stats::default());
        let v = |outcome: &str| {
            value(
                &text,
                &format!(
                    "appliance_instance_identity_signins_total{{cloud=\"google\",outcome=\"{outcome}\"}}"
                ),
            )
        };
        assert_eq!(v("success").as_deref(), Some("1"));
        assert_eq!(v("invalid_proof").as_deref(), Some("2"));
        assert_eq!(v("no_matching_agent").as_deref(), Some("2"));
        assert_eq!(v("rate_limited").as_deref(), Some("1"));
        assert_eq!(v("bad_request").as_deref(), Some("2"));
        assert_eq!(v("error").as_deref(), Some("1"));
        assert!(text.contains(
            "appliance_instance_identity_signins_total{cloud=\"aws\",outcome=\"success\"} 0"
        ));
    }

    #[test]
    fn streams_are_counted_while_open() {
        let m = metrics(None);
        let a = m.stream_opened(Stream::WebSocket);
        let b = m.stream_opened(Stream::WebSocket);
        drop(a);
        let text = m.render(None, 0, (0, 0, 0), crate::derp::Stats::default());
        assert!(text.contains("appliance_streams_open{kind=\"websocket\"} 1\n"));
        assert!(text.contains("appliance_streams_open{kind=\"sse\"} 0\n"));
        drop(b);
        assert!(
            m.render(None, 0, (0, 0, 0), crate::derp::Stats::default())
                .contains("appliance_streams_open{kind=\"websocket\"} 0\n")
        );
    }

    #[test]
    fn the_token_gate() {
        assert_eq!(metrics(None).check_access(None), Ok(()));
        let m = metrics(Some("s3cret"));
        assert_eq!(m.check_access(None), Err(Denied::Unauthorized));
        assert_eq!(
            m.check_access(Some("Bearer wrong")),
            Err(Denied::Unauthorized)
        );
        assert_eq!(m.check_access(Some("s3cret")), Err(Denied::Unauthorized));
        assert_eq!(m.check_access(Some("Bearer s3cret")), Ok(()));
        assert_eq!(m.check_access(Some("bearer  s3cret ")), Ok(()));
        m.configure(&MetricsConfig {
            enabled: false,
            token: None,
        });
        assert_eq!(m.check_access(None), Err(Denied::Disabled));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        line(&mut s, "x", &[("route", "a\"b\\c\nd")], 1);
        assert_eq!(s, "x{route=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
