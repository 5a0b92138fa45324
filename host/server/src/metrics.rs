//! Prometheus metrics: the engine's attempts, budget refusals and
//! healthchecks (through [`Observer`]), runs as the API serves them, and,
//! read at scrape time, breaker states and each app's instance and egress
//! counters, admission state and instance slots. Rendered in the Prometheus text format (version 0.0.4).

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;
use switchyard_engine::Recover;
use switchyard_engine::{
    AppAdmission, AttemptEvent, BreakerState, HealthKey, Observer, OverloadReason, ProbeOutcome,
};
use switchyard_runtime::App;

/// Breakers shown one series each in `switchyard_breaker_state` (the
/// first by key); `switchyard_breakers` counts all of them by state.
pub const MAX_BREAKER_SERIES: usize = 1_000;

/// Upper bounds of the duration histograms, seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric: name, type, help.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "switchyard_adaptive_choices_total",
        "counter",
        "Quota and fallback runs with adaptive routing, by mode and choice: `adaptive` (routed by the strategy), `agreed` (the strategy chose as the weights did), `disagreed` (shadow: it would have chosen otherwise), `configured` (a live run that explored or fell outside the rollout).",
    ),
    (
        "switchyard_hedges_total",
        "counter",
        "Hedged requests of safe actions, by what came of them: `sent` (extra requests sent), `won` (an extra request answered first), `cancelled` (requests dropped when another won), `withheld` (a hedge was due but the retry budget or admission had no room).",
    ),
    (
        "switchyard_auth_failures_total",
        "counter",
        "Requests refused by authentication or authorisation, by reason: missing, unknown, expired (401), forbidden (403), throttled (429 after too many failed tokens from one address).",
    ),
    (
        "switchyard_runs_total",
        "counter",
        "Runs served, by outcome code (`ok` or the error code).",
    ),
    (
        "switchyard_run_duration_seconds",
        "histogram",
        "Duration of runs.",
    ),
    (
        "switchyard_attempts_total",
        "counter",
        "Calls of an app action made by runs.",
    ),
    (
        "switchyard_attempt_errors_total",
        "counter",
        "Failed attempts, by error class.",
    ),
    (
        "switchyard_attempt_duration_seconds",
        "histogram",
        "Duration of attempts.",
    ),
    (
        "switchyard_retries_total",
        "counter",
        "Attempts that were retries on the same provider.",
    ),
    (
        "switchyard_budget_rejections_total",
        "counter",
        "Retries or failovers refused by the retry budget.",
    ),
    (
        "switchyard_healthchecks_total",
        "counter",
        "Healthcheck rounds, by result.",
    ),
    (
        "switchyard_healthcheck_up",
        "gauge",
        "1 if the last healthcheck round passed, else 0.",
    ),
    (
        "switchyard_breaker_state",
        "gauge",
        "1 for the breaker's current state (closed, open, half-open); the first 1,000 breakers by key.",
    ),
    (
        "switchyard_breakers",
        "gauge",
        "Breakers by state, all of them.",
    ),
    (
        "switchyard_breaker_blocked_total",
        "counter",
        "Requests a run did not send because the provider's breaker was open, by target (`app/action` or `feature:tag`).",
    ),
    (
        "switchyard_plugin_instantiations_total",
        "counter",
        "Plugin instances created (one per call).",
    ),
    (
        "switchyard_plugin_instantiate_seconds_total",
        "counter",
        "Time spent instantiating plugins.",
    ),
    (
        "switchyard_plugin_answers_read_by_host_total",
        "counter",
        "Exchange-world answers the host read itself, with no `resume` step (a 2xx JSON success of an action the adapter lists in `exchange-reading`).",
    ),
    (
        "switchyard_plugin_load_seconds",
        "gauge",
        "Time the app's plugin took to load (compile or cache, link, describe).",
    ),
    (
        "switchyard_egress_requests_total",
        "counter",
        "Requests plugins sent to providers.",
    ),
    (
        "switchyard_egress_denied_total",
        "counter",
        "Requests the egress gate refused.",
    ),
    (
        "switchyard_oauth2_token_fetches_total",
        "counter",
        "OAuth2 client-credentials tokens the host fetched for the app (one per expiry or 401, shared by concurrent calls).",
    ),
    (
        "switchyard_oauth2_token_failures_total",
        "counter",
        "OAuth2 token fetches that failed (endpoint unreachable or no usable token).",
    ),
    (
        "switchyard_admission_in_flight",
        "gauge",
        "Attempts of the app in flight now.",
    ),
    (
        "switchyard_admission_queued",
        "gauge",
        "Attempts of the app waiting for admission now.",
    ),
    (
        "switchyard_admission_limit",
        "gauge",
        "The app's max_in_flight.",
    ),
    (
        "switchyard_admission_tokens",
        "gauge",
        "Tokens in the app's rate-limit bucket (apps with a rate limit).",
    ),
    (
        "switchyard_admission_cooldown_seconds",
        "gauge",
        "Time left of a pause the provider asked for (429 Retry-After), 0 if none.",
    ),
    (
        "switchyard_admission_wait_seconds",
        "histogram",
        "Time attempts waited for admission.",
    ),
    (
        "switchyard_overloaded_total",
        "counter",
        "Attempts the host could not start (not provider failures), by reason.",
    ),
    (
        "switchyard_plugin_instances_in_use",
        "gauge",
        "Plugin instance slots in use now.",
    ),
    (
        "switchyard_plugin_instances_max",
        "gauge",
        "Plugin instance slots (the pool size).",
    ),
];

/// What a scrape reads at scrape time.
#[derive(Debug)]
pub struct Scrape<'a> {
    /// Every breaker and its state.
    pub breakers: &'a [(String, BreakerState)],
    /// Loaded apps, for their instance and egress counters.
    pub apps: &'a [AppHandle],
    /// Admission state per app and env.
    pub admission: &'a [AppAdmission],
    /// Instance slots: (in use, pool size).
    pub instances: (u32, u32),
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: [0; BUCKETS.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, secs: f64) {
        for (b, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Labels as a caller holds them: borrowed, so that counting into a
/// series that exists allocates nothing (a run counts into several).
type LabelRefs<'a> = [(&'static str, &'a str)];

/// Series of one value type, found by name and labels without allocating
/// when the series exists, and rendered in (name, labels) order. Hashed
/// with foldhash, seeded per process: a run counts into several series,
/// and SipHash showed in the profile of a run. Series whose hashes
/// collide share a bucket and are told apart by name and labels.
#[derive(Debug)]
struct Series<V> {
    by_hash: HashMap<u64, Vec<(&'static str, Labels, V)>, foldhash::fast::RandomState>,
    seed: foldhash::fast::RandomState,
}

impl<V> Default for Series<V> {
    fn default() -> Self {
        Self {
            by_hash: HashMap::default(),
            seed: foldhash::fast::RandomState::default(),
        }
    }
}

impl<V> Series<V> {
    fn hash(&self, name: &str, labels: &LabelRefs<'_>) -> u64 {
        let mut h = self.seed.build_hasher();
        name.hash(&mut h);
        for (k, v) in labels {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        h.finish()
    }

    /// The series `name{labels}`, made with `new` if it is not there.
    fn entry(
        &mut self,
        name: &'static str,
        labels: &LabelRefs<'_>,
        new: impl FnOnce() -> V,
    ) -> &mut V {
        let bucket = self.by_hash.entry(self.hash(name, labels)).or_default();
        let same = |(n, l, _): &(&'static str, Labels, V)| {
            *n == name
                && l.len() == labels.len()
                && l.iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2)
        };
        let i = match bucket.iter().position(same) {
            Some(i) => i,
            None => {
                let owned = labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
                bucket.push((name, owned, new()));
                bucket.len() - 1
            }
        };
        &mut bucket[i].2
    }

    /// Sets the series `name{labels}` to `v`.
    fn put(&mut self, name: &'static str, labels: &LabelRefs<'_>, v: V)
    where
        V: Copy,
    {
        *self.entry(name, labels, || v) = v;
    }

    /// Drops every series named `name`.
    fn remove_all(&mut self, name: &str) {
        for bucket in self.by_hash.values_mut() {
            bucket.retain(|(n, _, _)| *n != name);
        }
        self.by_hash.retain(|_, b| !b.is_empty());
    }

    /// The series named `name`, by labels.
    fn sorted(&self, name: &str) -> Vec<(&Labels, &V)> {
        let mut out: Vec<(&Labels, &V)> = self
            .by_hash
            .values()
            .flatten()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, l, v)| (l, v))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }
}

#[derive(Debug, Default)]
struct State {
    values: Series<f64>,
    histograms: Series<Histogram>,
}

/// An app as metrics see it at scrape time.
#[derive(Debug, Clone)]
pub struct AppHandle {
    /// Product.
    pub product: String,
    /// App tag.
    pub app: String,
    /// Env.
    pub env: String,
    /// The loaded app.
    pub handle: App,
}

/// The metrics registry. Share one per process (`Arc`).
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, name: &'static str, labels: &LabelRefs<'_>, by: f64) {
        *self.state.locked().values.entry(name, labels, || 0.0) += by;
    }

    fn set(&self, name: &'static str, labels: &LabelRefs<'_>, value: f64) {
        self.state.locked().values.put(name, labels, value);
    }

    fn observe(&self, name: &'static str, labels: &LabelRefs<'_>, d: Duration) {
        self.state
            .locked()
            .histograms
            .entry(name, labels, Histogram::new)
            .observe(d.as_secs_f64());
    }

    /// A request failed authentication or authorisation: `missing`,
    /// `unknown`, `expired`, `forbidden`, or `throttled` (answered 429).
    pub fn auth_failure(&self, reason: &str) {
        self.add("switchyard_auth_failures_total", &[("reason", reason)], 1.0);
    }

    /// A quota's adaptive choice: how it went (`mode`, and whether the
    /// adaptive choice agreed with the configured one, where both were
    /// made: in shadow mode, or a live run that explored or fell outside
    /// the rollout).
    pub fn adaptive_choice(
        &self,
        product: &str,
        env: &str,
        tag: &str,
        a: &switchyard_engine::AdaptiveTrace,
    ) {
        let how = match (&a.configured, a.explored || a.outside_rollout) {
            (None, _) => "adaptive",
            (Some(c), _) if *c == a.chosen => "agreed",
            (Some(_), true) => "configured",
            (Some(_), false) => "disagreed",
        };
        let mode = match a.mode {
            switchyard_engine::AdaptiveMode::Live => "live",
            switchyard_engine::AdaptiveMode::Shadow => "shadow",
        };
        self.add(
            "switchyard_adaptive_choices_total",
            &[
                ("product", product),
                ("env", env),
                ("tag", tag),
                ("mode", mode),
                ("choice", how),
            ],
            1.0,
        );
    }

    /// A run ended with `code` (`ok` or an error code).
    pub fn run(&self, product: &str, env: &str, kind: &str, tag: &str, code: &str, d: Duration) {
        let labels = [
            ("product", product),
            ("env", env),
            ("kind", kind),
            ("tag", tag),
            ("code", code),
        ];
        self.add("switchyard_runs_total", &labels, 1.0);
        self.observe("switchyard_run_duration_seconds", &labels[..4], d);
    }

    /// The text exposition, with what `scrape` read now.
    pub fn render(&self, scrape: &Scrape<'_>) -> String {
        let mut state = self.state.locked();
        for a in scrape.admission {
            let labels = [
                ("product", a.product.as_str()),
                ("env", a.env.as_str()),
                ("app", a.app.as_str()),
            ];
            let s = &a.state;
            let mut values = vec![
                ("switchyard_admission_in_flight", f64::from(s.in_flight)),
                ("switchyard_admission_queued", f64::from(s.queued)),
                ("switchyard_admission_limit", f64::from(s.max_in_flight)),
                (
                    "switchyard_admission_cooldown_seconds",
                    s.cooldown_remaining_ms.unwrap_or(0) as f64 / 1e3,
                ),
            ];
            if let Some(t) = s.tokens {
                values.push(("switchyard_admission_tokens", t));
            }
            for (name, v) in values {
                state.values.put(name, &labels, v);
            }
        }
        let (in_use, max) = scrape.instances;
        state
            .values
            .put("switchyard_plugin_instances_in_use", &[], f64::from(in_use));
        state
            .values
            .put("switchyard_plugin_instances_max", &[], f64::from(max));
        // Per-breaker series are capped (keys can come from input); the
        // totals by state always cover every breaker. Rebuilt each scrape,
        // so a forgotten breaker leaves no series behind.
        state.values.remove_all("switchyard_breaker_state");
        let mut totals = [0u64; 3];
        for (_, s) in scrape.breakers {
            totals[*s as usize] += 1;
        }
        for (name, n) in ["closed", "open", "half-open"].iter().zip(totals) {
            state
                .values
                .put("switchyard_breakers", &[("state", name)], n as f64);
        }
        for (key, s) in scrape.breakers.iter().take(MAX_BREAKER_SERIES) {
            for (name, v) in [
                ("closed", BreakerState::Closed),
                ("open", BreakerState::Open),
                ("half-open", BreakerState::HalfOpen),
            ] {
                state.values.put(
                    "switchyard_breaker_state",
                    &[("breaker", key.as_str()), ("state", name)],
                    f64::from(u8::from(*s == v)),
                );
            }
        }
        for a in scrape.apps {
            let labels = [
                ("product", a.product.as_str()),
                ("env", a.env.as_str()),
                ("app", a.app.as_str()),
            ];
            let inst = a.handle.instance_counts();
            let egress = a.handle.egress_stats();
            let values = [
                (
                    "switchyard_plugin_instantiations_total",
                    inst.instantiations as f64,
                ),
                (
                    "switchyard_plugin_instantiate_seconds_total",
                    inst.instantiate_total.as_secs_f64(),
                ),
                (
                    "switchyard_plugin_answers_read_by_host_total",
                    inst.read_by_host as f64,
                ),
                (
                    "switchyard_plugin_load_seconds",
                    a.handle.load_report().total.as_secs_f64(),
                ),
                ("switchyard_egress_requests_total", egress.requests as f64),
                ("switchyard_egress_denied_total", egress.denied as f64),
                (
                    "switchyard_oauth2_token_fetches_total",
                    egress.token_fetches as f64,
                ),
                (
                    "switchyard_oauth2_token_failures_total",
                    egress.token_failures as f64,
                ),
            ];
            for (name, v) in values {
                state.values.put(name, &labels, v);
            }
        }
        let mut out = String::new();
        for (family, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}");
            let _ = writeln!(out, "# TYPE {family} {kind}");
            let name = family;
            for (labels, v) in state.values.sorted(family) {
                let _ = writeln!(out, "{name}{} {v}", render_labels(labels, None));
            }
            for (labels, h) in state.histograms.sorted(family) {
                for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                    let le = bound.to_string();
                    let _ = writeln!(out, "{name}_bucket{} {n}", render_labels(labels, Some(&le)));
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    render_labels(labels, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{} {}", render_labels(labels, None), h.sum);
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    render_labels(labels, None),
                    h.count
                );
            }
        }
        out
    }
}

fn render_labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Observer for Metrics {
    fn attempt(&self, e: &AttemptEvent<'_>) {
        let mut labels = [
            ("product", e.product),
            ("env", e.env),
            ("app", e.app),
            ("action", e.action),
            ("provider", e.provider),
            ("class", ""),
        ];
        if let Err(err) = e.result {
            labels[5].1 = err.class.as_str();
            self.add("switchyard_attempt_errors_total", &labels, 1.0);
        }
        let labels = &labels[..5];
        if e.try_number > 1 {
            self.add("switchyard_retries_total", labels, 1.0);
        }
        self.add("switchyard_attempts_total", labels, 1.0);
        self.observe("switchyard_attempt_duration_seconds", labels, e.duration);
    }

    fn hedged(&self, product: &str, env: &str, app: &str, r: &switchyard_engine::HedgeRecord) {
        let of = |what| {
            [
                ("product", product),
                ("env", env),
                ("app", app),
                ("what", what),
            ]
        };
        if r.sent > 0 {
            self.add("switchyard_hedges_total", &of("sent"), f64::from(r.sent));
        }
        if r.won_by.is_some_and(|w| w > 0) {
            self.add("switchyard_hedges_total", &of("won"), 1.0);
        }
        if r.cancelled > 0 {
            self.add(
                "switchyard_hedges_total",
                &of("cancelled"),
                f64::from(r.cancelled),
            );
        }
        if r.withheld.is_some() {
            self.add("switchyard_hedges_total", &of("withheld"), 1.0);
        }
    }

    fn budget_rejected(&self, product: &str, env: &str, app: &str) {
        let labels = [("product", product), ("env", env), ("app", app)];
        self.add("switchyard_budget_rejections_total", &labels, 1.0);
    }

    fn admitted(&self, product: &str, env: &str, app: &str, waited: Duration) {
        let labels = [("product", product), ("env", env), ("app", app)];
        self.observe("switchyard_admission_wait_seconds", &labels, waited);
    }

    fn overloaded(&self, product: &str, env: &str, app: &str, reason: &OverloadReason) {
        let labels = [
            ("product", product),
            ("env", env),
            ("app", app),
            ("reason", reason.label()),
        ];
        self.add("switchyard_overloaded_total", &labels, 1.0);
    }

    fn blocked(&self, product: &str, env: &str, target: &str) {
        let labels = [("product", product), ("env", env), ("target", target)];
        self.add("switchyard_breaker_blocked_total", &labels, 1.0);
    }

    fn healthcheck(&self, key: &HealthKey, outcome: &ProbeOutcome) {
        let labels = [
            ("product", key.product.as_str()),
            ("env", key.env.as_str()),
            ("healthcheck", key.tag.as_str()),
            ("result", if outcome.ok { "ok" } else { "failed" }),
        ];
        self.add("switchyard_healthchecks_total", &labels, 1.0);
        self.set(
            "switchyard_healthcheck_up",
            &labels[..3],
            f64::from(u8::from(outcome.ok)),
        );
    }
}

/// Unlabelled series as Prometheus text: `(name, type, help, value)`.
pub(crate) fn unlabelled(series: &[(&str, &str, &str, u64)]) -> String {
    series
        .iter()
        .map(|(name, kind, help, v)| {
            format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_engine::{AttemptError, ErrorClass, FailureKind};

    #[test]
    fn renders_counters_histograms_and_breakers() {
        let m = Metrics::new();
        let err = AttemptError::new(ErrorClass::Unavailable, FailureKind::Host, "x");
        for (try_number, result) in [(1, Err(&err)), (2, Ok(()))] {
            m.attempt(&AttemptEvent {
                product: "p",
                env: "dev",
                app: "a\"b",
                action: "send",
                provider: "a",
                try_number,
                result,
                duration: Duration::from_millis(3),
            });
        }
        m.blocked("p", "dev", "a/send");
        m.blocked("p", "dev", "a/send");
        let text = m.render(&Scrape {
            breakers: &[("p/dev/a/send".into(), BreakerState::Open)],
            apps: &[],
            admission: &[],
            instances: (3, 1024),
        });
        assert!(
            text.contains(
                "switchyard_breaker_blocked_total{product=\"p\",env=\"dev\",target=\"a/send\"} 2\n"
            ),
            "{text}"
        );
        let l = r#"product="p",env="dev",app="a\"b",action="send",provider="a""#;
        assert!(
            text.contains(&format!("switchyard_attempts_total{{{l}}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("switchyard_retries_total{{{l}}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "switchyard_attempt_errors_total{{{l},class=\"unavailable\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "switchyard_attempt_duration_seconds_bucket{{{l},le=\"0.0025\"}} 0\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "switchyard_attempt_duration_seconds_bucket{{{l},le=\"0.005\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "switchyard_attempt_duration_seconds_count{{{l}}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains("switchyard_breaker_state{breaker=\"p/dev/a/send\",state=\"open\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "switchyard_breaker_state{breaker=\"p/dev/a/send\",state=\"closed\"} 0\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE switchyard_attempt_duration_seconds histogram"));
    }

    #[test]
    fn each_label_set_is_one_series_counted_in_place_and_rendered_in_order() {
        let m = Metrics::new();
        // 300 tags, counted in a shuffled order, each 1 + (i % 3) times.
        for round in 0..3 {
            for i in (0..300).map(|i| (i * 7) % 300) {
                if round <= i % 3 {
                    let tag = format!("t{i:03}");
                    m.run("p", "dev", "quota", &tag, "ok", Duration::from_millis(1));
                }
            }
        }
        m.run(
            "p",
            "dev",
            "quota",
            "t000",
            "all-failed",
            Duration::from_millis(1),
        );
        let text = m.render(&Scrape {
            breakers: &[],
            apps: &[],
            admission: &[],
            instances: (0, 1),
        });
        let runs: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("switchyard_runs_total{"))
            .collect();
        assert_eq!(runs.len(), 301, "{text}");
        for i in 0..300 {
            let line = format!(
                "switchyard_runs_total{{product=\"p\",env=\"dev\",kind=\"quota\",tag=\"t{i:03}\",code=\"ok\"}} {}",
                1 + i % 3
            );
            assert!(runs.contains(&line.as_str()), "{line} in {text}");
        }
        let mut sorted = runs.clone();
        sorted.sort_unstable();
        assert_eq!(runs, sorted, "series render in label order");
        assert!(text.contains(
            "switchyard_run_duration_seconds_count{product=\"p\",env=\"dev\",kind=\"quota\",tag=\"t000\"} 2\n"
        ));
    }

    #[test]
    fn breaker_series_are_capped_and_rebuilt_each_scrape() {
        let m = Metrics::new();
        let many: Vec<(String, BreakerState)> = (0..1_500)
            .map(|i| (format!("p/dev/a/k{i:05}"), BreakerState::Closed))
            .collect();
        let scrape = |b: &[(String, BreakerState)]| {
            m.render(&Scrape {
                breakers: b,
                apps: &[],
                admission: &[],
                instances: (0, 1),
            })
        };
        let text = scrape(&many);
        let series = |t: &str| {
            t.lines()
                .filter(|l| l.starts_with("switchyard_breaker_state{"))
                .count()
        };
        assert_eq!(series(&text), MAX_BREAKER_SERIES * 3);
        assert!(
            text.contains("switchyard_breakers{state=\"closed\"} 1500\n"),
            "{text}"
        );
        let text = scrape(&many[..2]);
        assert_eq!(series(&text), 6, "forgotten breakers leave no series");
    }
}
