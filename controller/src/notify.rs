//! Webhook notifications: a rollout's `notifications` say which of its events go where, as JSON or as
//! a Slack message.
//!
//! Delivery is at least once and survives a crash: every delivery an event owes is rendered and
//! written to the store's outbox in the event's own transaction ([`deliveries`], called from the one
//! commit path), and the task started by [`spawn`] sends what the outbox holds. A delivery keeps its
//! id (`x-fledge-delivery`) and its exact body on every attempt, so a receiver that saw it before a
//! crash or a lost answer recognises the repeat. With a webhook secret each request carries
//! `x-fledge-signature: sha256=<hex HMAC-SHA256 of the body>`.
//!
//! Each receiver (URL) gets its deliveries one at a time, in the order of their events; at most
//! [`CONCURRENCY`] receivers are sent to at once, each request bounded by the timeout. A 2xx is
//! delivered (the row is deleted); a timeout, a connection error, a 408, 429 or 5xx is retried after
//! `0.5 s · 2^(attempts−1)`, at most the backoff cap (plus up to 25 % jitter); any other answer is a
//! refusal and is not retried, nor is a request the client cannot build, nor a delivery still failing
//! after [`MAX_AGE_MS`]. The secret is
//! never logged, and a receiver is logged by its origin only (a webhook URL's path is often a
//! credential of its own).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use fledge_core::analysis::GateStatus;
use fledge_core::rollout::{NotificationFormat, NotificationSpec};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::model::Rollout;
use crate::state::{now_ms, AppState};
use crate::store::{NewDelivery, Pending};

/// The delivery's id: the same on every attempt.
pub const DELIVERY_HEADER: &str = "x-fledge-delivery";
/// `sha256=<hex>`: HMAC-SHA256 of the body under the webhook secret.
pub const SIGNATURE_HEADER: &str = "x-fledge-signature";
/// The event's kind (`rolled_back`, …).
pub const EVENT_HEADER: &str = "x-fledge-event";
/// Receivers sent to at once.
pub const CONCURRENCY: usize = 4;
/// The first retry's delay; each further one doubles, up to the backoff cap.
pub const FIRST_RETRY_MS: u64 = 500;
/// A delivery still failing this long after its event is given up.
pub const MAX_AGE_MS: u64 = 24 * 3_600 * 1_000;
/// How often the outbox is looked at when nothing wakes the task.
const IDLE: Duration = Duration::from_secs(1);

/// A secret that does not print (Debug shows only that there is one).
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: &str) -> Self {
        Self(Arc::from(s))
    }

    fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Signs every delivery when set (`--webhook-secret`).
    pub secret: Option<Secret>,
    /// The longest wait between two attempts of one delivery.
    pub backoff_cap: Duration,
    /// One attempt's time limit, connecting included.
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self { secret: None, backoff_cap: Duration::from_secs(60), timeout: Duration::from_secs(10) }
    }
}

/// The deliveries event `seq` of kind `kind` (body `event`) owes the receivers of `rollout` (as the
/// event left it) that subscribe to that kind. Ids are `<epoch>-<seq>-<index of the receiver>`:
/// unique within the data, the same on every attempt.
pub fn deliveries(epoch: &str, rollout: &Rollout, kind: &str, event: &Value, seq: i64) -> Vec<NewDelivery> {
    let subscribed = rollout.spec.notifications.iter().flatten().enumerate().filter(|(_, n)| n.wants(kind));
    subscribed
        .map(|(i, n)| {
            let delivery = format!("{epoch}-{seq}-{i}");
            let body = render(n, &delivery, rollout, kind, event, seq);
            NewDelivery { delivery, kind: kind.to_string(), url: n.url.clone(), body }
        })
        .collect()
}

fn render(n: &NotificationSpec, delivery: &str, rollout: &Rollout, kind: &str, event: &Value, seq: i64) -> Vec<u8> {
    let body = match n.format {
        NotificationFormat::Json => json_payload(delivery, rollout, event, seq),
        NotificationFormat::Slack => json!({ "text": slack_text(rollout, kind) }),
    };
    body.to_string().into_bytes()
}

/// `{"delivery", "rollout", "kind", "seq", "event"}`: the event as `GET …/events` shows it (phase,
/// step, weight, message, the verdict with every gate's values), except that a replaced spec is not
/// repeated (it lists every receiver's URL).
fn json_payload(delivery: &str, rollout: &Rollout, event: &Value, seq: i64) -> Value {
    let mut event = event.clone();
    if let Some(fields) = event.as_object_mut() {
        fields.insert("seq".into(), json!(seq));
        if fields.get("input").and_then(|i| i.get("kind")).and_then(Value::as_str) == Some("replace") {
            fields.insert("input".into(), json!({"kind": "replace"}));
        }
    }
    json!({
        "delivery": delivery,
        "rollout": rollout.name,
        "kind": event.get("kind").cloned().unwrap_or(Value::Null),
        "seq": seq,
        "event": event,
    })
}

/// One readable message: the rollout, what happened, where it stands, and for a rollback or a
/// failing gate each failing gate's canary against stable.
pub fn slack_text(rollout: &Rollout, kind: &str) -> String {
    let s = &rollout.status;
    let what = match kind {
        "rolled_back" => "rolled back".to_string(),
        "gate_failing" => "has a failing gate".to_string(),
        "gate_recovered" => "recovered: no gate failing".to_string(),
        other => other.replace('_', " "),
    };
    let mut text = format!(
        "fledge: rollout *{}* {what} (stable {}, canary {}; canary at {}%, phase {})\n{}",
        escape(&rollout.name),
        escape(&rollout.spec.stable),
        escape(&rollout.spec.canary),
        s.weight.percent(),
        s.phase.as_str(),
        escape(&s.message)
    );
    if matches!(kind, "rolled_back" | "gate_failing") {
        let failing = s.last_verdict.iter().flat_map(|v| &v.gates).filter(|g| g.status == GateStatus::Fail);
        for g in failing {
            let value = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| g.metric.format_value(v));
            text.push_str(&format!(
                "\n• {}{}: canary {} (n={}) vs stable {} (n={}); gate: {}",
                g.metric,
                if g.critical { " (critical)" } else { "" },
                value(g.canary),
                g.canary_n,
                value(g.stable),
                g.stable_n,
                escape(&g.threshold)
            ));
        }
    }
    text
}

/// Slack's mrkdwn control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `sha256=<lower-case hex HMAC-SHA256 of body under secret>`.
pub fn signature(secret: &[u8], body: &[u8]) -> Option<String> {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).ok()?;
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("sha256={hex}"))
}

/// `scheme://host[:port]` of a receiver's URL: what the logs name (the path may carry a token).
pub fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url.get(after_scheme..).and_then(|rest| rest.find(['/', '?', '#'])).map_or(url.len(), |i| after_scheme + i);
    url.get(..end).unwrap_or(url)
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx.
    Delivered(u16),
    /// An answer that retrying will not change (3xx, 4xx but 408 and 429).
    Refused(u16),
    /// No answer (connection, timeout), or 408, 429, 5xx: tried again later.
    Failed(String),
    /// The request could not even be built (a URL the HTTP client will not take): not retried.
    Unsendable(String),
}

impl Outcome {
    pub fn from_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Delivered(status),
            408 | 429 | 500..=599 => Self::Failed(format!("HTTP {status}")),
            _ => Self::Refused(status),
        }
    }
}

/// Starts the delivery task; it ends at shutdown (deliveries in flight are retried by the next
/// controller: at least once).
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let settings = state.settings().webhooks.clone();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fledge/", env!("CARGO_PKG_VERSION")))
            .build();
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook client; notifications stay in the outbox");
                return;
            }
        };
        let mut shutdown = state.shutdown_signal();
        let mut inflight: JoinSet<(Pending, Outcome)> = JoinSet::new();
        // Receivers with a delivery on the wire, by task (a task that fails frees its receiver).
        let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            let now = now_ms();
            let mut wake = now.saturating_add(IDLE.as_millis() as u64);
            // Several replicas share one outbox: the leader delivers (a follower would send each
            // notification again), and a new leader takes over what the old one left.
            let leads = state.cluster().role() == crate::cluster::Role::Leader;
            if !leads {
                wake = now.saturating_add(crate::cluster::RENEW.as_millis() as u64);
            }
            match if leads { state.outbox_heads() } else { Ok(Vec::new()) } {
                Ok(heads) => {
                    let on_wire: HashSet<&String> = busy.values().collect();
                    let mut start = Vec::new();
                    for h in heads.into_iter().filter(|h| !on_wire.contains(&h.url)) {
                        if h.next_attempt_ms > now {
                            wake = wake.min(h.next_attempt_ms);
                        } else if inflight.len() + start.len() < CONCURRENCY {
                            start.push(h);
                        }
                    }
                    for h in start {
                        let url = h.url.clone();
                        let handle = inflight.spawn(attempt(client.clone(), settings.secret.clone(), h));
                        busy.insert(handle.id(), url);
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the notification outbox"),
            }
            let idle = tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now)));
            tokio::select! {
                Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => match done {
                    Ok((id, (pending, outcome))) => {
                        busy.remove(&id);
                        settle(&state, &settings, pending, outcome);
                    }
                    Err(e) => {
                        busy.remove(&e.id());
                        tracing::error!(error = %e, "a webhook delivery task failed; it is retried");
                    }
                },
                _ = state.outbox_written() => {}
                _ = idle => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
        }
    })
}

async fn attempt(client: reqwest::Client, secret: Option<Secret>, p: Pending) -> (Pending, Outcome) {
    let mut req = client
        .post(&p.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(DELIVERY_HEADER, &p.delivery)
        .header(EVENT_HEADER, &p.kind)
        .body(p.body.clone());
    if let Some(sig) = secret.as_ref().and_then(|s| signature(s.expose(), &p.body)) {
        req = req.header(SIGNATURE_HEADER, sig);
    }
    let outcome = match req.send().await {
        Ok(resp) => Outcome::from_status(resp.status().as_u16()),
        Err(e) if e.is_builder() => Outcome::Unsendable(describe(&e.without_url())),
        Err(e) => Outcome::Failed(describe(&e.without_url())),
    };
    (p, outcome)
}

/// An error with its causes ("error sending request: connection refused"), without the URL.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Records an attempt's outcome in the outbox.
fn settle(state: &AppState, settings: &WebhookSettings, p: Pending, outcome: Outcome) {
    let receiver = origin(&p.url);
    let counters = state.counters();
    let result = match outcome {
        Outcome::Delivered(status) => {
            counters.delivered();
            tracing::info!(rollout = %p.rollout, event = %p.kind, delivery = %p.delivery, receiver, status, attempts = p.attempts + 1, "notification delivered");
            state.outbox_remove(p.id)
        }
        Outcome::Refused(status) => {
            counters.dropped(1);
            tracing::warn!(rollout = %p.rollout, event = %p.kind, delivery = %p.delivery, receiver, status, "the receiver refused the notification; not retried");
            state.outbox_remove(p.id)
        }
        Outcome::Unsendable(error) => {
            counters.dropped(1);
            tracing::warn!(rollout = %p.rollout, event = %p.kind, delivery = %p.delivery, receiver, %error, "the notification cannot be sent to this URL; not retried");
            state.outbox_remove(p.id)
        }
        Outcome::Failed(error) => {
            counters.failed();
            let now = now_ms();
            let attempts = p.attempts.saturating_add(1);
            if now.saturating_sub(p.created_ms) >= MAX_AGE_MS {
                counters.dropped(1);
                tracing::warn!(rollout = %p.rollout, event = %p.kind, delivery = %p.delivery, receiver, attempts, %error, "notification given up: still failing a day after its event");
                state.outbox_remove(p.id)
            } else {
                let cap_ms = settings.backoff_cap.as_millis().min(u128::from(u64::MAX)) as u64;
                let delay = fledge_core::backoff::delay_ms(FIRST_RETRY_MS, cap_ms, attempts - 1, jitter());
                tracing::warn!(rollout = %p.rollout, event = %p.kind, delivery = %p.delivery, receiver, attempts, %error, retry_in_ms = delay, "notification not delivered; retrying");
                state.outbox_retry(p.id, attempts, now.saturating_add(delay), &error)
            }
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, delivery = %p.delivery, "cannot record a notification attempt; it may be sent again");
    }
}

fn jitter() -> u32 {
    getrandom::u32().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?").unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(Outcome::from_status(204), Outcome::Delivered(204));
        for retried in [408, 429, 500, 503] {
            assert!(matches!(Outcome::from_status(retried), Outcome::Failed(_)), "{retried}");
        }
        for refused in [301, 400, 401, 404, 410] {
            assert_eq!(Outcome::from_status(refused), Outcome::Refused(refused));
        }
    }

    #[test]
    fn receivers_are_logged_by_origin() {
        assert_eq!(origin("https://hooks.slack.com/services/T0/B0/secret"), "https://hooks.slack.com");
        assert_eq!(origin("http://127.0.0.1:9000?token=x"), "http://127.0.0.1:9000");
        assert_eq!(origin("http://[::1]:80"), "http://[::1]:80");
        assert!(!format!("{:?}", WebhookSettings { secret: Some(Secret::new("hunter2")), ..WebhookSettings::default() }).contains("hunter2"));
    }

    fn rollout(notifications: Value) -> Rollout {
        let spec = serde_json::from_value(json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "notifications": notifications})).unwrap();
        Rollout::new("support", spec, 1).unwrap()
    }

    #[test]
    fn deliveries_go_to_the_subscribers_of_the_kind() {
        let r = rollout(json!([
            {"url": "http://a/hook", "events": ["paused", "rolled_back"]},
            {"url": "http://b/slack", "events": ["rolled_back"], "format": "slack"},
        ]));
        let input = crate::machine::Input::Replace { spec: Box::new(r.spec.clone()) };
        let event = crate::events::body("paused", &r, &input);
        let paused = deliveries("e", &r, "paused", &event, 7);
        assert_eq!(paused.len(), 1);
        assert_eq!((paused[0].delivery.as_str(), paused[0].url.as_str(), paused[0].kind.as_str()), ("e-7-0", "http://a/hook", "paused"));
        let body: Value = serde_json::from_slice(&paused[0].body).unwrap();
        assert_eq!((body["delivery"].as_str(), body["rollout"].as_str(), body["kind"].as_str(), body["seq"].as_i64()), (Some("e-7-0"), Some("support"), Some("paused"), Some(7)));
        assert_eq!(body["event"]["seq"], 7);
        assert_eq!(body["event"]["input"], json!({"kind": "replace"}), "the spec, with every receiver's URL, is not sent");
        assert!(!String::from_utf8_lossy(&paused[0].body).contains("http://b/slack"));
        let rolled = deliveries("e", &r, "rolled_back", &event, 8);
        assert_eq!(rolled.iter().map(|d| d.delivery.as_str()).collect::<Vec<_>>(), ["e-8-0", "e-8-1"]);
        let slack: Value = serde_json::from_slice(&rolled[1].body).unwrap();
        assert!(slack["text"].as_str().unwrap().starts_with("fledge: rollout *support* rolled back"), "{slack}");
        assert!(deliveries("e", &r, "advanced", &event, 9).is_empty());
    }

    #[test]
    fn a_slack_message_names_the_failing_gate_with_canary_and_stable() {
        use fledge_core::analysis::{Action, GateResult, Metric, StepState, Verdict};
        let mut r = rollout(json!([{"url": "http://b/", "events": ["rolled_back"], "format": "slack"}]));
        let gate = |metric, status, canary, stable| GateResult {
            metric,
            threshold: "canary ≥ stable − 2.00 pp".into(),
            critical: false,
            status,
            canary: Some(canary),
            stable: Some(stable),
            canary_n: 200,
            stable_n: 2_000,
            evidence: None,
            proof: None,
            bounds: None,
            note: String::new(),
            comparison: None,
        };
        r.status.phase = crate::model::Phase::RolledBack;
        r.status.message = "rolled back: task_success_rate <regressed>".into();
        r.status.last_verdict = Some(Verdict {
            action: Action::Rollback,
            reason: String::new(),
            gates: vec![gate(Metric::ErrorRate, GateStatus::Pass, 0.01, 0.01), gate(Metric::TaskSuccessRate, GateStatus::Fail, 0.4, 0.95)],
            next_state: StepState::default(),
            canary_weight: 0.0,
            waiting: None,
        });
        let text = slack_text(&r, "rolled_back");
        assert!(text.contains("rolled back: task_success_rate &lt;regressed&gt;"), "{text}");
        assert!(text.contains("• task_success_rate: canary 40.00% (n=200) vs stable 95.00% (n=2000); gate: canary ≥ stable − 2.00 pp"), "{text}");
        assert!(!text.contains("error_rate:"), "only failing gates: {text}");
        assert!(!slack_text(&r, "paused").contains('•'), "a pause lists no gates");
    }
}
