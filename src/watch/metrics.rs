//! Health and Prometheus metrics: what the loop counts, and the HTTP endpoint that serves it
//! (`GET /healthz`, `GET /metrics`) on the address the user gave, through axum.

use super::reconcile::{Outcome, Report, Trigger};
use crate::model::{ActionKind, Timestamp};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

const ACTIONS: [ActionKind; 5] = [
    ActionKind::DeleteAppPasswords,
    ActionKind::RequireReregistration,
    ActionKind::ResetPassword,
    ActionKind::RevokeSessions,
    ActionKind::RevokeTrustedDevices,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

/// The daemon's metrics and the last result, shared by the loop and the HTTP server.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    duration: Histogram,
    applied: Family<ActionLabel, Counter>,
    drifted: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    manifests_valid: Gauge,
    leader: Gauge,
    leadership_changes: Counter,
    last: Mutex<Option<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabel, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let applied = Family::<ActionLabel, Counter>::default();
        let drifted = Gauge::default();
        let last_success = Gauge::<f64, AtomicU64>::default();
        let manifests_valid = Gauge::default();
        let leader = Gauge::default();
        let leadership_changes = Counter::default();
        // Every series exists from the start at 0, so rate() and alerts work before the first event.
        for o in Outcome::ALL {
            let _ = reconciles.get_or_create(&ResultLabel {
                result: o.as_str().into(),
            });
        }
        for a in ACTIONS {
            let _ = applied.get_or_create(&ActionLabel {
                action: a.verb().into(),
            });
        }
        registry.register(
            "mfactl_reconciles",
            "Reconciles by result",
            reconciles.clone(),
        );
        registry.register(
            "mfactl_reconcile_duration_seconds",
            "How long a reconcile took (read, plan, apply)",
            duration.clone(),
        );
        registry.register(
            "mfactl_changes_applied",
            "Changes applied, by action",
            applied.clone(),
        );
        registry.register(
            "mfactl_drifted_users",
            "Users whose state differs from the manifests after the last reconcile",
            drifted.clone(),
        );
        registry.register(
            "mfactl_last_success_timestamp_seconds",
            "Unix time of the last successful reconcile",
            last_success.clone(),
        );
        registry.register(
            "mfactl_manifests_valid",
            "1 when the manifests last read were valid, else 0",
            manifests_valid.clone(),
        );
        registry.register(
            "mfactl_leader",
            "1 while this replica leads (reconciles), 0 while it stands by",
            leader.clone(),
        );
        registry.register(
            "mfactl_leadership_changes",
            "Times this replica became leader or stopped leading",
            leadership_changes.clone(),
        );
        Metrics {
            registry,
            reconciles,
            duration,
            applied,
            drifted,
            last_success,
            manifests_valid,
            leader,
            leadership_changes,
            last: Mutex::new(None),
        }
    }

    /// Counts one finished reconcile.
    pub fn record(&self, trigger: Trigger, r: &Report) {
        self.reconciles
            .get_or_create(&ResultLabel {
                result: r.outcome.as_str().into(),
            })
            .inc();
        self.duration.observe(r.duration.as_secs_f64());
        for (kind, n) in &r.applied {
            self.applied
                .get_or_create(&ActionLabel {
                    action: kind.verb().into(),
                })
                .inc_by(*n as u64);
        }
        if let Some(n) = r.drifted {
            self.drifted.set(n as i64);
        }
        if let Some(valid) = r.manifests_valid {
            self.manifests_valid.set(i64::from(valid));
        }
        let at = crate::ops::wall_clock();
        if r.outcome.is_success() {
            self.last_success.set(at.unix() as f64);
        }
        let line = format!(
            "last reconcile: {} (trigger {}) at {}",
            r.outcome.as_str(),
            trigger.as_str(),
            Timestamp::from_unix(at.unix())
        );
        if let Ok(mut last) = self.last.lock() {
            *last = Some(line);
        }
    }

    /// Whether this replica leads now: the gauge and the health body follow it.
    pub fn set_leader(&self, leads: bool) {
        self.leader.set(i64::from(leads));
    }

    pub fn leadership_changed(&self) {
        self.leadership_changes.inc();
    }

    /// `leader` or `standby`, then the last reconcile this replica ran (a standby's is from
    /// when it last led, or `none yet`).
    fn health(&self) -> String {
        let last = self.last.lock().ok().and_then(|l| l.clone());
        let role = if self.leader.get() == 1 {
            "leader"
        } else {
            "standby"
        };
        format!(
            "{role}\n{}\n",
            last.unwrap_or_else(|| "last reconcile: none yet".into())
        )
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut body = String::new();
        encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

/// Serves `/healthz` and `/metrics` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(m): State<Arc<Metrics>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m.health(),
    )
        .into_response()
}

async fn prometheus(State(m): State<Arc<Metrics>>) -> Response {
    match m.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn every_named_metric_is_exposed_from_the_start() {
        let m = Metrics::new();
        let text = m.encode().unwrap();
        for name in [
            "mfactl_reconciles_total{result=\"applied\"} 0",
            "mfactl_reconciles_total{result=\"panic\"} 0",
            "mfactl_reconcile_duration_seconds_bucket",
            "mfactl_changes_applied_total{action=\"revoke-sessions\"} 0",
            "mfactl_drifted_users 0",
            "mfactl_last_success_timestamp_seconds",
            "mfactl_manifests_valid 0",
            "mfactl_leader 0",
            "mfactl_leadership_changes_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(m.health().contains("none yet"));
        assert!(m.health().starts_with("standby\n"), "{}", m.health());
    }

    #[test]
    fn the_role_shows_in_health_and_metrics() {
        let m = Metrics::new();
        m.set_leader(true);
        m.leadership_changed();
        assert!(m.health().starts_with("leader\n"), "{}", m.health());
        let text = m.encode().unwrap();
        assert!(text.contains("mfactl_leader 1"), "{text}");
        assert!(text.contains("mfactl_leadership_changes_total 1"), "{text}");
        m.set_leader(false);
        assert!(m.health().starts_with("standby\n"), "{}", m.health());
    }

    #[test]
    fn a_report_is_counted() {
        let m = Metrics::new();
        let mut applied = BTreeMap::new();
        applied.insert(ActionKind::RevokeSessions, 2);
        let r = Report {
            outcome: Outcome::Applied,
            applied,
            touched: vec!["a@x".into()],
            requested_by: Vec::new(),
            drifted: Some(0),
            drift: Vec::new(),
            manifests_valid: Some(true),
            problems: Vec::new(),
            plan_id: None,
            revision: Some(3),
            credentials: None,
            settled: Vec::new(),
            warnings: Vec::new(),
            duration: Duration::from_millis(20),
        };
        m.record(Trigger::File, &r);
        let text = m.encode().unwrap();
        assert!(text.contains("mfactl_reconciles_total{result=\"applied\"} 1"));
        assert!(text.contains("mfactl_changes_applied_total{action=\"revoke-sessions\"} 2"));
        assert!(text.contains("mfactl_manifests_valid 1"));
        assert!(text.contains("mfactl_reconcile_duration_seconds_count 1"));
        assert!(m.health().contains("applied (trigger file)"));
    }
}
