//! The rollout as users declare it (`PUT /v1/rollouts/{name}`), and the checks every layer shares.

use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisSpec, AnalysisSpecConfig, BlueGreen, GateConfig, StepConfig, StepHold};
use crate::bucket::Weight;
use crate::murmur3::murmur3_x86_32;
use crate::segment::{validate_segments, validate_session, SegmentSpec, SessionSpec};
use crate::shadow::ShadowSpec;

/// Steps of a spec that sets none (percent of traffic to the canary).
pub const DEFAULT_STEPS: [f64; 5] = [1.0, 5.0, 25.0, 50.0, 100.0];
pub const DEFAULT_STEP_SECONDS: u64 = 60;
pub const DEFAULT_MIN_REQUESTS: u64 = 100;
pub const DEFAULT_FAILURE_LIMIT: u32 = 3;
/// A blue-green rollout's preview and bake when the spec gives none.
pub const DEFAULT_PREVIEW_SECONDS: u64 = 60;
pub const DEFAULT_BAKE_SECONDS: u64 = 300;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RolloutError {
    #[error("name {0:?} is invalid: use 1-63 characters of a-z, 0-9, '-', '_' or '.' (not \".\" or \"..\")")]
    Name(String),
    #[error("hosts must not be empty")]
    NoHosts,
    #[error("host {0:?} is invalid: give a bare host name without scheme, port, path or spaces; a wildcard is \"*\" alone or a leading \"*.\" label")]
    Host(String),
    #[error("host {0:?} is listed twice")]
    DuplicateHost(String),
    #[error("{field} version {value:?} is invalid: use 1-64 characters of letters, digits, '-', '_' or '.'")]
    Version { field: &'static str, value: String },
    #[error("stable and canary must be different versions")]
    SameVersion,
    #[error("weight sets manual weighting and cannot be combined with {0}; remove weight to let fledge progress through steps")]
    ManualAndAutomated(&'static str),
    #[error("{0}")]
    Analysis(String),
    #[error("readiness.{field}: {reason}")]
    Readiness { field: &'static str, reason: String },
    /// A bad segment rule, named: `segments[1] "beta": match.source_cidr ...`.
    #[error("{0}")]
    Segment(String),
    #[error("{0}")]
    Session(String),
    /// `shadow.<field>: …`, and `shadow_seconds`.
    #[error("{0}")]
    Shadow(String),
    /// `strategy`, `preview_seconds`, `bake_seconds` and what they exclude.
    #[error("{0}")]
    Strategy(String),
    /// `notifications[i].<field>: …`.
    #[error("{0}")]
    Notification(String),
    /// `on_controller_loss.<field>: …`.
    #[error("{0}")]
    ControllerLoss(String),
}

/// Every event a rollout records (the state machine's event names): what a notification may
/// subscribe to.
pub const EVENT_KINDS: [&str; 12] = [
    "created",
    "replaced",
    "started",
    "advanced",
    "switched",
    "promoted",
    "rolled_back",
    "paused",
    "resumed",
    "aborted",
    "gate_failing",
    "gate_recovered",
];

/// At most this many `notifications` entries per rollout.
pub const MAX_NOTIFICATIONS: usize = 8;

/// How a notification's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationFormat {
    /// The event as stored (kind, phase, weight, message, the verdict with every gate's values).
    #[default]
    Json,
    /// `{"text": …}` for a Slack incoming webhook (or anything that takes one): the rollout, what
    /// happened, and the failing gates' canary against stable.
    Slack,
}

impl NotificationFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
        }
    }
}

/// One entry of `notifications`: where the rollout's events of the listed kinds are sent (HTTP POST).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSpec {
    /// `http://` or `https://` with a host; no `user:password@` (the spec is stored and shown).
    pub url: String,
    /// Event kinds to send, from [`EVENT_KINDS`].
    pub events: Vec<String>,
    #[serde(default)]
    pub format: NotificationFormat,
}

impl NotificationSpec {
    /// Whether events of `kind` go to this receiver.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }

    /// Checks one entry; errors name it as `notifications[i].<field>`.
    pub fn validate(&self, i: usize) -> Result<(), RolloutError> {
        let bad = |field: &str, reason: String| Err(RolloutError::Notification(format!("notifications[{i}].{field}: {reason}")));
        if let Err(reason) = check_webhook_url(&self.url) {
            return bad("url", reason);
        }
        if self.events.is_empty() {
            return bad("events", format!("list at least one of {}", EVENT_KINDS.join(", ")));
        }
        for (j, e) in self.events.iter().enumerate() {
            if !EVENT_KINDS.contains(&e.as_str()) {
                return bad(&format!("events[{j}]"), format!("unknown event {e:?}; use one of {}", EVENT_KINDS.join(", ")));
            }
            if self.events.iter().take(j).any(|earlier| earlier == e) {
                return bad(&format!("events[{j}]"), format!("{e:?} is listed twice"));
            }
        }
        Ok(())
    }
}

/// An `http(s)://host[:port][/path]` URL without credentials, spaces or control characters.
fn check_webhook_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else { return Err(format!("{url:?} is not an http:// or https:// URL")) };
    if url.len() > 2_048 {
        return Err("longer than 2048 characters".into());
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains spaces or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("has credentials (user:password@); specs are stored and shown, so keep secrets out of them: authenticate deliveries with the controller's --webhook-secret signature instead".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => match v6.split_once(']') {
            Some((addr, tail)) if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') => {
                (addr, tail.strip_prefix(':'))
            }
            _ => return Err(format!("{authority:?} is not a host")),
        },
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (authority.starts_with('[') || host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
    if !host_ok {
        return Err(format!("{authority:?} is not a host[:port]"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("port {p:?} is not 1-65535"));
        }
    }
    Ok(())
}

/// How an automated rollout moves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Through `steps`, judging the canary against stable at each.
    #[default]
    Canary,
    /// `previewing` (only `version: canary` segments on green), one switch of all traffic to green,
    /// `baking`, then `succeeded`.
    BlueGreen,
}

/// How the canary's weight is set.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The user sets `weight`; fledge only routes.
    Manual(Weight),
    /// fledge moves through `steps`, judging the canary at each.
    Automated(AnalysisSpec),
}

/// `analysis` options of a rollout spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AnalysisOptions {
    /// How often the canary is judged (default 1 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    /// Consecutive failing judgements of non-critical gates before a rollback (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
}

/// A rollout as users declare it. With `weight` (and no steps) it is a manual split; without
/// `weight` fledge progresses through `steps`, judging the canary against stable on `gates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    pub hosts: Vec<String>,
    pub stable: String,
    pub canary: String,
    /// Percent of traffic to the canary, 0-100 with two decimals: manual weighting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
    /// Seed for the sticky hash; defaults to a hash of the rollout's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<u32>,
    /// Canary weights, each a number or `{"weight": w, "pause": "manual"}` /
    /// `{"weight": w, "approval": {"url": …, "timeout_seconds": …}}`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "named_steps")]
    pub steps: Option<Vec<StepConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<Vec<GateConfig>>,
    /// A probe of the canary: no user traffic before it passes, a rollback when it fails later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ReadinessSpec>,
    /// Ordered rules evaluated before the weighted split; the first match wins.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "named_segments")]
    pub segments: Option<Vec<SegmentSpec>>,
    /// A session cookie that gives clients without a sticky key a key of their own.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "named_session")]
    pub session: Option<SessionSpec>,
    /// `"canary"` (the default) or `"blue_green"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Blue-green: how long only `version: canary` segments reach green before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_seconds: Option<u64>,
    /// Blue-green: how long green is judged on all traffic after the switch before it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_seconds: Option<u64>,
    /// Copy a share of stable's requests to the canary's cluster and judge its answers against
    /// stable's (dark launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSpec>,
    /// Start in phase `shadowing` for this long (no user on the canary) before the first step.
    /// Without it, `shadow` runs alongside the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_seconds: Option<u64>,
    /// Webhooks that receive the rollout's events (at most [`MAX_NOTIFICATIONS`]).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "named_notifications")]
    pub notifications: Option<Vec<NotificationSpec>>,
    /// What the proxies do when no controller answers (`hold`, the default, or `stable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_controller_loss: Option<crate::fallback::ControllerLoss>,
}

/// `readiness`: an HTTP GET the controller sends the canary. 2xx within `timeout_ms` is a pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessSpec {
    /// `http://host[:port]/path` of the canary's own health endpoint (plain HTTP).
    pub url: String,
    #[serde(default = "ReadinessSpec::default_interval")]
    pub interval_seconds: f64,
    #[serde(default = "ReadinessSpec::default_timeout")]
    pub timeout_ms: u64,
    /// Consecutive passes before the canary counts as ready.
    #[serde(default = "ReadinessSpec::default_threshold")]
    pub success_threshold: u32,
    /// Consecutive failures before it counts as not ready.
    #[serde(default = "ReadinessSpec::default_threshold")]
    pub failure_threshold: u32,
}

impl ReadinessSpec {
    fn default_interval() -> f64 {
        1.0
    }

    fn default_timeout() -> u64 {
        500
    }

    fn default_threshold() -> u32 {
        3
    }

    pub fn validate(&self) -> Result<(), RolloutError> {
        let bad = |field, reason: &str| Err(RolloutError::Readiness { field, reason: reason.to_string() });
        let rest = self.url.strip_prefix("http://").unwrap_or_default();
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        if rest.is_empty() || host.is_empty() || self.url.len() > 2_048 || self.url.chars().any(|c| c.is_control() || c == ' ') {
            return bad("url", "give an http:// URL with a host, e.g. http://support-agent-v2:8080/healthz");
        }
        if !(self.interval_seconds.is_finite() && self.interval_seconds >= 0.1 && self.interval_seconds <= 300.0) {
            return bad("interval_seconds", "must be between 0.1 and 300");
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return bad("timeout_ms", "must be between 1 and 60000");
        }
        for (field, n) in [("success_threshold", self.success_threshold), ("failure_threshold", self.failure_threshold)] {
            if !(1..=100).contains(&n) {
                return bad(field, "must be between 1 and 100");
            }
        }
        Ok(())
    }
}

/// Reads `steps` entry by entry, so a malformed one is named (`steps[2]: unknown field ...`).
fn named_steps<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<StepConfig>>, D::Error> {
    use serde::de::Error;
    let raw = Option::<Vec<serde_json::Value>>::deserialize(d).map_err(|e| D::Error::custom(format!("steps: {e}")))?;
    let Some(raw) = raw else { return Ok(None) };
    if raw.len() > 100 {
        return Err(D::Error::custom("steps: at most 100 steps"));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| serde_json::from_value::<StepConfig>(v).map_err(|e| D::Error::custom(format!("steps[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Reads `session` with its field named in a type error (`session: invalid type ...`).
fn named_session<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SessionSpec>, D::Error> {
    use serde::de::Error;
    Option::<SessionSpec>::deserialize(d).map_err(|e| D::Error::custom(format!("session: {e}")))
}

/// Reads `notifications` entry by entry, so that a malformed one (unknown field, unknown format) is
/// reported with its index, like the checks in [`NotificationSpec::validate`].
fn named_notifications<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<NotificationSpec>>, D::Error> {
    use serde::de::Error;
    let raw = Option::<Vec<serde_json::Value>>::deserialize(d).map_err(|e| D::Error::custom(format!("notifications: {e}")))?;
    let Some(raw) = raw else { return Ok(None) };
    if raw.len() > MAX_NOTIFICATIONS {
        return Err(D::Error::custom(format!("notifications: {} entries; at most {MAX_NOTIFICATIONS} are allowed", raw.len())));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| serde_json::from_value::<NotificationSpec>(v).map_err(|e| D::Error::custom(format!("notifications[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Reads `segments` rule by rule so that a malformed rule (unknown field, wrong type) is reported
/// with its index and name, like the checks in [`validate_segments`].
fn named_segments<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<SegmentSpec>>, D::Error> {
    use serde::de::Error;
    let raw = Option::<Vec<serde_json::Value>>::deserialize(d).map_err(|e| D::Error::custom(format!("segments: {e}")))?;
    let Some(raw) = raw else { return Ok(None) };
    if raw.len() > crate::segment::MAX_SEGMENTS {
        return Err(D::Error::custom(format!(
            "segments: {} rules; at most {} are allowed",
            raw.len(),
            crate::segment::MAX_SEGMENTS
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let name = v.get("name").and_then(|n| n.as_str()).filter(|n| crate::segment::valid_segment_name(n)).map(str::to_string);
            serde_json::from_value::<SegmentSpec>(v).map_err(|e| {
                let rule = match name {
                    Some(n) => format!("segments[{i}] {n:?}"),
                    None => format!("segments[{i}]"),
                };
                D::Error::custom(format!("{rule}: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl RolloutSpec {
    /// A manual rollout: routing only.
    pub fn manual(hosts: &[&str], stable: &str, canary: &str, weight: Weight) -> Self {
        Self {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            stable: stable.into(),
            canary: canary.into(),
            weight: Some(weight),
            salt: None,
            steps: None,
            step_seconds: None,
            min_requests: None,
            analysis: None,
            gates: None,
            readiness: None,
            segments: None,
            session: None,
            strategy: None,
            preview_seconds: None,
            bake_seconds: None,
            shadow: None,
            shadow_seconds: None,
            notifications: None,
            on_controller_loss: None,
        }
    }

    pub fn validate(&self) -> Result<(), RolloutError> {
        validate_hosts(&self.hosts)?;
        validate_version("stable", &self.stable)?;
        validate_version("canary", &self.canary)?;
        if self.stable == self.canary {
            return Err(RolloutError::SameVersion);
        }
        if let Some(r) = &self.readiness {
            r.validate()?;
        }
        validate_segments(self.segments.as_deref().unwrap_or_default()).map_err(|e| RolloutError::Segment(e.to_string()))?;
        if let Some(s) = &self.session {
            validate_session(s).map_err(RolloutError::Session)?;
        }
        if let Some(s) = &self.shadow {
            s.validate().map_err(RolloutError::Shadow)?;
        }
        let notifications = self.notifications.as_deref().unwrap_or_default();
        if notifications.len() > MAX_NOTIFICATIONS {
            return Err(RolloutError::Notification(format!(
                "notifications: {} entries; at most {MAX_NOTIFICATIONS} are allowed",
                notifications.len()
            )));
        }
        for (i, n) in notifications.iter().enumerate() {
            n.validate(i)?;
        }
        if self.shadow_seconds.is_some() && self.shadow.is_none() {
            return Err(RolloutError::Shadow("shadow_seconds needs shadow: say which cluster the copies go to".into()));
        }
        if self.shadow.is_some() && self.strategy == Some(Strategy::BlueGreen) {
            return Err(RolloutError::Shadow("shadow is not available with strategy \"blue_green\" yet (its preview judges green on real users before the switch)".into()));
        }
        if self.shadow.is_none() {
            if let Some((i, g)) = self.gates.iter().flatten().enumerate().find(|(_, g)| g.metric.is_shadow()) {
                return Err(RolloutError::Analysis(format!("gates[{i}]: {} judges shadow copies; add shadow to the spec", g.metric)));
            }
        }
        if let Some(l) = &self.on_controller_loss {
            l.validate().map_err(RolloutError::ControllerLoss)?;
            if self.weight.is_some() && l.mode == crate::fallback::LossMode::Stable {
                return Err(RolloutError::ControllerLoss(
                    "on_controller_loss: stable applies to automated rollouts; a manual weight is yours to change".into(),
                ));
            }
        }
        let mode = self.mode()?;
        if let Mode::Automated(a) = &mode {
            let canary_segment = self.segments.iter().flatten().any(|s| s.version.as_deref() == Some("canary"));
            if a.is_preview(0) && !canary_segment {
                return Err(RolloutError::Strategy(
                    "preview_seconds: a preview sends only segments with version \"canary\" to green, and there is none; add one (e.g. internal users) or set preview_seconds: 0 to switch without a preview".into(),
                ));
            }
        }
        Ok(())
    }

    /// Manual or automated, with the analysis spec (defaults filled in) validated.
    pub fn mode(&self) -> Result<Mode, RolloutError> {
        if let Some(w) = self.weight {
            let automated = [
                ("steps", self.steps.is_some()),
                ("step_seconds", self.step_seconds.is_some()),
                ("min_requests", self.min_requests.is_some()),
                ("analysis", self.analysis.is_some()),
                ("gates", self.gates.is_some()),
                ("readiness", self.readiness.is_some()),
                ("strategy", self.strategy.is_some()),
                ("preview_seconds", self.preview_seconds.is_some()),
                ("bake_seconds", self.bake_seconds.is_some()),
                ("shadow_seconds", self.shadow_seconds.is_some()),
            ];
            return match automated.iter().find(|(_, set)| *set) {
                Some((field, _)) => Err(RolloutError::ManualAndAutomated(field)),
                None => Ok(Mode::Manual(w)),
            };
        }
        let blue_green = self.blue_green()?;
        let options = self.analysis.clone().unwrap_or_default();
        let (steps, holds) = match &self.steps {
            Some(steps) => {
                let holds = steps.iter().enumerate().map(|(i, s)| s.hold(i)).collect::<Result<Vec<_>, _>>().map_err(RolloutError::Analysis)?;
                let holds = if holds.iter().all(|h| *h == StepHold::None) { Vec::new() } else { holds };
                (steps.iter().map(StepConfig::weight).collect(), holds)
            }
            None => (DEFAULT_STEPS.to_vec(), Vec::new()),
        };
        let config = AnalysisSpecConfig {
            steps,
            holds,
            step_seconds: self.step_seconds.unwrap_or(DEFAULT_STEP_SECONDS),
            min_requests: self.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS),
            interval_seconds: options.interval_seconds.unwrap_or(1.0),
            failure_limit: options.failure_limit.unwrap_or(DEFAULT_FAILURE_LIMIT),
            gates: self.gate_configs(),
            blue_green,
            shadow_seconds: self.shadow_seconds,
        };
        AnalysisSpec::try_new(config).map(Mode::Automated).map_err(|e| RolloutError::Analysis(e.to_string()))
    }

    /// The gates as given (or the defaults); with `shadow` and no shadow gate among them, the shadow
    /// counterparts of the live ones are added, so a plain `shadow` is judged out of the box.
    fn gate_configs(&self) -> Vec<GateConfig> {
        let mut gates = self.gates.clone().unwrap_or_else(|| crate::analysis::default_gates().into_iter().map(GateConfig::from).collect());
        if self.shadow.is_some() && !gates.iter().any(|g| g.metric.is_shadow()) {
            let shadow: Vec<GateConfig> = gates
                .iter()
                .filter_map(|g| g.metric.shadow_counterpart().map(|metric| GateConfig { metric, ..g.clone() }))
                .collect();
            gates.extend(shadow);
        }
        gates
    }

    /// The blue-green settings, refusing fields that do not belong to the strategy.
    fn blue_green(&self) -> Result<Option<BlueGreen>, RolloutError> {
        match self.strategy.unwrap_or_default() {
            Strategy::BlueGreen => {
                let stepped = [("steps", self.steps.is_some()), ("step_seconds", self.step_seconds.is_some())];
                if let Some((field, _)) = stepped.iter().find(|(_, set)| *set) {
                    return Err(RolloutError::Strategy(format!(
                        "{field} does not apply to strategy \"blue_green\": it previews for preview_seconds, switches all traffic to the canary at once, then bakes for bake_seconds"
                    )));
                }
                Ok(Some(BlueGreen {
                    preview_seconds: self.preview_seconds.unwrap_or(DEFAULT_PREVIEW_SECONDS),
                    bake_seconds: self.bake_seconds.unwrap_or(DEFAULT_BAKE_SECONDS),
                }))
            }
            Strategy::Canary => {
                let blue_green_only = [("preview_seconds", self.preview_seconds.is_some()), ("bake_seconds", self.bake_seconds.is_some())];
                match blue_green_only.iter().find(|(_, set)| *set) {
                    Some((field, _)) => Err(RolloutError::Strategy(format!(
                        "{field} applies to strategy \"blue_green\" only; set \"strategy\": \"blue_green\" or remove it"
                    ))),
                    None => Ok(None),
                }
            }
        }
    }

    pub fn salt_for(&self, name: &str) -> u32 {
        self.salt.unwrap_or_else(|| default_salt(name))
    }
}

/// The salt a rollout gets when none is given: stable across restarts and controllers.
pub fn default_salt(name: &str) -> u32 {
    murmur3_x86_32(name.as_bytes(), 0x666c_6467) // "fldg"
}

pub fn validate_name(name: &str) -> Result<(), RolloutError> {
    // "." and ".." would be path segments that clients normalise away in /v1/rollouts/{name}.
    let ok = (1..=63).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RolloutError::Name(name.to_string()))
    }
}

pub fn validate_hosts(hosts: &[String]) -> Result<(), RolloutError> {
    if hosts.is_empty() {
        return Err(RolloutError::NoHosts);
    }
    let mut seen = std::collections::HashSet::new();
    for h in hosts {
        // Istio's wildcard forms: "*" (every host) or "*.example.com" (every name under it).
        let name = if h == "*" { "" } else { h.strip_prefix("*.").unwrap_or(h) };
        let ok = h == "*"
            || (!name.is_empty()
                && h.len() <= 253
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                && !name.starts_with('.')
                && !name.ends_with('.'));
        if !ok {
            return Err(RolloutError::Host(h.clone()));
        }
        if !seen.insert(normalize_host(h)) {
            return Err(RolloutError::DuplicateHost(h.clone()));
        }
    }
    Ok(())
}

pub fn validate_version(field: &'static str, v: &str) -> Result<(), RolloutError> {
    let ok = (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RolloutError::Version { field, value: v.to_string() })
    }
}

pub fn normalize_host(h: &str) -> String {
    h.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hosts: &[&str], stable: &str, canary: &str) -> RolloutSpec {
        RolloutSpec::manual(hosts, stable, canary, Weight::ZERO)
    }

    #[test]
    fn a_shadow_gets_the_shadow_counterparts_of_the_live_gates() {
        use crate::analysis::Metric;
        let mut s = RolloutSpec::manual(&["a"], "v1", "v2", Weight::ZERO);
        s.weight = None;
        s.shadow = Some(crate::shadow::ShadowSpec::new("c", 10.0));
        let Ok(Mode::Automated(a)) = s.mode() else { panic!("automated") };
        let metrics: Vec<Metric> = a.gates().iter().map(|g| g.metric()).collect();
        assert_eq!(
            metrics,
            [Metric::ErrorRate, Metric::LatencyP99Ms, Metric::TaskSuccessRate, Metric::PolicyViolationRate,
             Metric::ShadowErrorRate, Metric::ShadowLatencyP99Ms, Metric::ShadowTaskSuccessRate]
        );
        // Named shadow gates are taken as given.
        s.gates = Some(vec![serde_json::from_str(r#"{"metric":"shadow_mismatch_rate","max":0.5}"#).unwrap()]);
        let Ok(Mode::Automated(a)) = s.mode() else { panic!("automated") };
        assert_eq!(a.gates().len(), 1);
    }

    #[test]
    fn validation() {
        assert_eq!(spec(&["a"], "v1", "v2").validate(), Ok(()));
        assert_eq!(spec(&[], "v1", "v2").validate(), Err(RolloutError::NoHosts));
        assert_eq!(spec(&["a"], "v1", "v1").validate(), Err(RolloutError::SameVersion));
        assert!(matches!(spec(&["a:80"], "v1", "v2").validate(), Err(RolloutError::Host(_))));
        assert!(matches!(spec(&["a", "A"], "v1", "v2").validate(), Err(RolloutError::DuplicateHost(_))));
        assert_eq!(spec(&["*"], "v1", "v2").validate(), Ok(()));
        assert_eq!(spec(&["*.example.com", "example.com"], "v1", "v2").validate(), Ok(()));
        for bad in ["a*", "*a.com", "a.*.com", "**", "*.", "*.*.com", ".a", "a."] {
            assert!(matches!(spec(&[bad], "v1", "v2").validate(), Err(RolloutError::Host(_))), "{bad}");
        }
        assert!(matches!(spec(&["a"], "v 1", "v2").validate(), Err(RolloutError::Version { field: "stable", .. })));
        assert!(validate_name("support-agent").is_ok());
        assert!(validate_name("Bad Name").is_err());
        assert!(validate_name(".").is_err() && validate_name("..").is_err() && validate_name("v1.2").is_ok());
    }

    #[test]
    fn readiness_is_validated_naming_the_field() {
        let with = |r: &str| parse(&format!(r#"{{"hosts":["a"],"stable":"v1","canary":"v2","readiness":{r}}}"#)).validate();
        assert_eq!(with(r#"{"url":"http://v2:8080/healthz"}"#), Ok(()));
        let err = |r: &str| with(r).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(r#"{"url":"https://v2/healthz"}"#).contains("readiness.url"));
        assert!(err(r#"{"url":"http:///healthz"}"#).contains("readiness.url"));
        assert!(err(r#"{"url":"http://v2/","timeout_ms":0}"#).contains("readiness.timeout_ms"));
        assert!(err(r#"{"url":"http://v2/","success_threshold":0}"#).contains("readiness.success_threshold"));
        assert!(err(r#"{"url":"http://v2/","interval_seconds":0}"#).contains("readiness.interval_seconds"));
        let manual = parse(r#"{"hosts":["a"],"stable":"v1","canary":"v2","weight":5,"readiness":{"url":"http://v2/"}}"#);
        assert_eq!(manual.validate(), Err(RolloutError::ManualAndAutomated("readiness")));
    }

    #[test]
    fn notifications_are_validated_naming_the_field() {
        let with = |n: &str| -> Result<RolloutSpec, String> {
            let spec: RolloutSpec = serde_json::from_str(&format!(r#"{{"hosts":["a"],"stable":"v1","canary":"v2","notifications":{n}}}"#))
                .map_err(|e| e.to_string())?;
            spec.validate().map_err(|e| e.to_string())?;
            Ok(spec)
        };
        let ok = with(r#"[{"url":"https://hooks.example.com/T0/B0","events":["rolled_back","promoted"],"format":"slack"},
                         {"url":"http://127.0.0.1:9000/hook?x=1","events":["gate_failing"]},
                         {"url":"http://[::1]:8080/","events":["paused"]}]"#)
            .unwrap();
        let n = ok.notifications.unwrap();
        assert_eq!((n[0].format, n[1].format), (NotificationFormat::Slack, NotificationFormat::Json), "json by default");
        assert!(n[0].wants("promoted") && !n[0].wants("paused"));
        let err = |n: &str| with(n).err().unwrap_or_default();
        assert!(err(r#"[{"url":"ftp://x/","events":["paused"]}]"#).starts_with("notifications[0].url:"));
        assert!(err(r#"[{"url":"http:///hook","events":["paused"]}]"#).starts_with("notifications[0].url:"));
        assert!(err(r#"[{"url":"http://x:0/","events":["paused"]}]"#).contains("port"));
        assert!(err(r#"[{"url":"http://x/a b","events":["paused"]}]"#).contains("spaces"));
        let creds = err(r#"[{"url":"http://x/","events":["paused"]},{"url":"https://user:pw@hooks.example.com/","events":["paused"]}]"#);
        assert!(creds.starts_with("notifications[1].url:") && creds.contains("credentials"), "{creds}");
        assert!(!creds.contains("pw"), "the secret is not echoed: {creds}");
        assert!(err(r#"[{"url":"http://x/","events":[]}]"#).starts_with("notifications[0].events:"));
        assert!(err(r#"[{"url":"http://x/","events":["deleted"]}]"#).starts_with("notifications[0].events[0]: unknown event"));
        assert!(err(r#"[{"url":"http://x/","events":["paused","paused"]}]"#).contains("listed twice"));
        assert!(err(r#"[{"url":"http://x/","events":["paused"],"format":"xml"}]"#).starts_with("notifications[0]:"));
        assert!(err(r#"[{"url":"http://x/","events":["paused"],"secret":"s"}]"#).contains("unknown field `secret`"));
        let nine = [r#"{"url":"http://x/","events":["paused"]}"#; 9].join(",");
        assert!(err(&format!("[{nine}]")).contains("at most 8"));
        // Manual rollouts take notifications too: they are not an automated field.
        let manual = parse(r#"{"hosts":["a"],"stable":"v1","canary":"v2","weight":5,"notifications":[{"url":"http://x/","events":["promoted"]}]}"#);
        assert_eq!(manual.validate(), Ok(()));
    }

    #[test]
    fn on_controller_loss_is_validated() {
        let with = |loss: &str, manual: bool| {
            let weight = if manual { r#","weight":5"# } else { "" };
            serde_json::from_str::<RolloutSpec>(&format!(r#"{{"hosts":["a"],"stable":"v1","canary":"v2"{weight},"on_controller_loss":{loss}}}"#))
                .map_err(|e| e.to_string())
                .and_then(|s| s.validate().map_err(|e| e.to_string()))
        };
        assert_eq!(with(r#"{"mode":"stable","after_seconds":10}"#, false), Ok(()));
        assert_eq!(with(r#"{"mode":"hold"}"#, true), Ok(()), "hold is today's behaviour for any rollout");
        assert!(with(r#"{"mode":"stable"}"#, true).unwrap_err().contains("automated"));
        assert!(with(r#"{"mode":"stable","after_seconds":0}"#, false).unwrap_err().starts_with("on_controller_loss.after_seconds"));
        assert!(with(r#"{"mode":"stable","after":5}"#, false).unwrap_err().contains("unknown field"));
    }

    #[test]
    fn unknown_fields_rejected() {
        let e = serde_json::from_str::<RolloutSpec>(r#"{"hosts":["a"],"stable":"v1","canary":"v2","wieght":5}"#);
        assert!(e.err().map(|e| e.to_string()).unwrap_or_default().contains("wieght"));
    }

    fn parse(json: &str) -> RolloutSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn modes() {
        let bare = parse(r#"{"hosts":["a"],"stable":"v1","canary":"v2"}"#);
        let Ok(Mode::Automated(a)) = bare.mode() else { panic!("a bare spec is automated with defaults") };
        assert_eq!(a.steps(), &DEFAULT_STEPS[..]);
        assert_eq!(a.gates().len(), 4);
        assert!(matches!(parse(r#"{"hosts":["a"],"stable":"v1","canary":"v2","weight":5}"#).mode(), Ok(Mode::Manual(_))));
        let mixed = parse(r#"{"hosts":["a"],"stable":"v1","canary":"v2","weight":5,"steps":[1,100]}"#);
        assert_eq!(mixed.validate(), Err(RolloutError::ManualAndAutomated("steps")));
        let bad_steps = parse(r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[50,10]}"#);
        assert!(matches!(bad_steps.validate(), Err(RolloutError::Analysis(_))));
        let gate = parse(r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[10,100],
            "gates":[{"metric":"policy_violation_rate","max":0,"critical":true}],"analysis":{"interval_seconds":0.5}}"#);
        let Ok(Mode::Automated(a)) = gate.mode() else { panic!() };
        assert_eq!((a.gates().len(), a.interval_seconds()), (1, 0.5));
    }
}
