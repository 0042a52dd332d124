//! The filter's own configuration: Envoy's `configuration` (Istio's `pluginConfig`), parsed once in
//! `on_configure` and compiled into [`PluginConfig`]. Every field is optional; unknown fields are
//! rejected so a typo is a loud error, not a silently ignored setting.

use serde::Deserialize;

use crate::outcome::OutcomeHeaders;

/// Where a sticky key comes from, tried in order; the first present wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickySource {
    /// A request header (name lower-cased, as Envoy stores header names).
    Header(String),
    /// A cookie by name, read from the `cookie` header.
    Cookie(String),
}

impl StickySource {
    pub fn parse(spec: &str) -> Result<Self, PluginConfigError> {
        let bad = || PluginConfigError::Sticky(spec.to_string());
        let (kind, name) = spec.split_once(':').ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(bad());
        }
        match kind {
            "header" => Ok(Self::Header(name.to_ascii_lowercase())),
            "cookie" => Ok(Self::Cookie(name.to_string())),
            _ => Err(bad()),
        }
    }
}

use crate::cookie::is_token_byte;

#[derive(Debug, Clone, PartialEq)]
pub struct ControllerTarget {
    /// Envoy cluster that reaches the controller.
    pub cluster: String,
    /// `:authority` sent to the controller.
    pub authority: String,
    /// Bearer token sent on config polls and reports, if the controller requires one.
    pub token: Option<String>,
    /// How long one long-poll may take before Envoy gives up on it (ms).
    pub poll_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub controller: ControllerTarget,
    pub route_header: String,
    pub sticky: Vec<StickySource>,
    /// Period of the root context's timer: how often a worker looks for new config (ms).
    pub tick_ms: u64,
    /// How often telemetry is drained to the controller (ms).
    pub report_interval_ms: u64,
    pub outcome: OutcomeHeaders,
    /// Overrides the proxy id sent in reports (default: Envoy's node id).
    pub proxy_id: Option<String>,
    /// Every request this filter sees belongs to this rollout (a listener for one service, or the
    /// inbound side of an agent serving both versions of a prompt canary): `:authority` is not read.
    pub rollout: Option<String>,
    /// Stamp the chosen version on the response too (`route_header`); off saves a header write per
    /// request (Envoy's `response_headers_to_add` with `%REQ(x-fledge-version)%` does the same).
    pub response_header: bool,
    /// Measure only a sample of stable's requests ([`crate::sampling`]); None: every request.
    pub stable_sampling: Option<crate::sampling::StableSampling>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginConfigError {
    #[error("plugin configuration is not valid JSON for fledge: {0}")]
    Json(String),
    #[error("sticky source {0:?} is invalid: use \"header:NAME\" or \"cookie:NAME\"")]
    Sticky(String),
    #[error("field {field} is invalid: {reason}")]
    Field { field: &'static str, reason: String },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    controller: RawController,
    route_header: Option<String>,
    sticky: Option<Vec<String>>,
    tick_ms: Option<u64>,
    report_interval_ms: Option<u64>,
    #[serde(default)]
    outcome: RawOutcome,
    proxy_id: Option<String>,
    rollout: Option<String>,
    response_header: Option<bool>,
    stable_sampling: Option<RawStableSampling>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStableSampling {
    multiple: f64,
    floor: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawController {
    cluster: Option<String>,
    authority: Option<String>,
    token: Option<String>,
    poll_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutcome {
    result_header: Option<String>,
    cost_header: Option<String>,
    policy_violations_header: Option<String>,
}

pub const DEFAULT_CLUSTER: &str = "fledge_controller";
pub const DEFAULT_ROUTE_HEADER: &str = "x-fledge-version";
pub const DEFAULT_STICKY: [&str; 2] = ["header:x-user-id", "header:x-session-id"];

impl Default for PluginConfig {
    /// Every field at its documented default (what an empty configuration gives).
    fn default() -> Self {
        Self {
            controller: ControllerTarget {
                cluster: DEFAULT_CLUSTER.into(),
                authority: DEFAULT_CLUSTER.into(),
                token: None,
                poll_timeout_ms: 40_000,
            },
            route_header: DEFAULT_ROUTE_HEADER.into(),
            sticky: DEFAULT_STICKY
                .iter()
                .map(|s| {
                    let name = s.trim_start_matches("header:");
                    StickySource::Header(name.into())
                })
                .collect(),
            tick_ms: 50,
            report_interval_ms: 1_000,
            outcome: OutcomeHeaders::default(),
            proxy_id: None,
            rollout: None,
            response_header: true,
            stable_sampling: None,
        }
    }
}

impl PluginConfig {
    /// Parses the plugin configuration; empty input means all defaults.
    pub fn parse(bytes: &[u8]) -> Result<Self, PluginConfigError> {
        let raw: Raw = if bytes.iter().all(u8::is_ascii_whitespace) {
            Raw::default()
        } else {
            serde_json::from_slice(bytes).map_err(|e| PluginConfigError::Json(e.to_string()))?
        };
        Self::compile(raw)
    }

    fn compile(raw: Raw) -> Result<Self, PluginConfigError> {
        let cluster = header_value("controller.cluster", raw.controller.cluster)?
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
        let authority = header_value("controller.authority", raw.controller.authority)?
            .unwrap_or_else(|| cluster.clone());
        let route_header = header_name("route_header", raw.route_header)?
            .unwrap_or_else(|| DEFAULT_ROUTE_HEADER.to_string());
        let sticky = match raw.sticky {
            Some(list) => list.iter().map(|s| StickySource::parse(s)).collect::<Result<_, _>>()?,
            None => DEFAULT_STICKY.iter().map(|s| StickySource::parse(s)).collect::<Result<_, _>>()?,
        };
        let defaults = OutcomeHeaders::default();
        let outcome = OutcomeHeaders {
            result: header_name("outcome.result_header", raw.outcome.result_header)?
                .unwrap_or(defaults.result),
            cost: header_name("outcome.cost_header", raw.outcome.cost_header)?.unwrap_or(defaults.cost),
            policy_violations: header_name(
                "outcome.policy_violations_header",
                raw.outcome.policy_violations_header,
            )?
            .unwrap_or(defaults.policy_violations),
        };
        Ok(Self {
            controller: ControllerTarget {
                cluster,
                authority,
                token: header_value("controller.token", raw.controller.token)?,
                poll_timeout_ms: ranged("controller.poll_timeout_ms", raw.controller.poll_timeout_ms, 40_000, 1_000, 600_000)?,
            },
            route_header,
            sticky,
            tick_ms: ranged("tick_ms", raw.tick_ms, 50, 10, 10_000)?,
            report_interval_ms: ranged("report_interval_ms", raw.report_interval_ms, 1_000, 100, 60_000)?,
            outcome,
            proxy_id: identifier("proxy_id", raw.proxy_id)?,
            rollout: match raw.rollout {
                Some(name) => Some(crate::rollout::validate_name(&name).map(|()| name).map_err(|e| PluginConfigError::Field { field: "rollout", reason: e.to_string() })?),
                None => None,
            },
            response_header: raw.response_header.unwrap_or(true),
            stable_sampling: match raw.stable_sampling {
                Some(r) => Some(
                    crate::sampling::StableSampling::new(r.multiple, r.floor)
                        .map_err(|reason| PluginConfigError::Field { field: "stable_sampling", reason })?,
                ),
                None => None,
            },
        })
    }
}

/// An id every report carries: what the controller accepts (1-253 bytes, no control characters).
fn identifier(field: &'static str, v: Option<String>) -> Result<Option<String>, PluginConfigError> {
    match non_empty(field, v)? {
        Some(s) if !crate::report::valid_identifier(&s) => Err(PluginConfigError::Field {
            field,
            reason: format!("must be 1-{} bytes without control characters", crate::report::MAX_ID_LEN),
        }),
        other => Ok(other),
    }
}

/// A value sent in an HTTP header: no control characters (a CR or LF would split the header).
fn header_value(field: &'static str, v: Option<String>) -> Result<Option<String>, PluginConfigError> {
    match non_empty(field, v)? {
        Some(s) if s.chars().any(char::is_control) => {
            Err(PluginConfigError::Field { field, reason: "must not contain control characters".into() })
        }
        other => Ok(other),
    }
}

fn non_empty(field: &'static str, v: Option<String>) -> Result<Option<String>, PluginConfigError> {
    match v {
        Some(s) if s.trim().is_empty() => {
            Err(PluginConfigError::Field { field, reason: "must not be empty".into() })
        }
        other => Ok(other),
    }
}

fn header_name(field: &'static str, v: Option<String>) -> Result<Option<String>, PluginConfigError> {
    match v {
        Some(s) if s.is_empty() || !s.bytes().all(is_token_byte) => Err(PluginConfigError::Field {
            field,
            reason: format!("{s:?} is not a valid header name"),
        }),
        Some(s) => Ok(Some(s.to_ascii_lowercase())),
        None => Ok(None),
    }
}

fn ranged(field: &'static str, v: Option<u64>, default: u64, lo: u64, hi: u64) -> Result<u64, PluginConfigError> {
    let v = v.unwrap_or(default);
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(PluginConfigError::Field { field, reason: format!("{v} is outside {lo}..={hi}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_sampling_is_off_by_default_and_validated() {
        assert_eq!(PluginConfig::parse(b"").unwrap().stable_sampling, None);
        let c = PluginConfig::parse(br#"{"stable_sampling": {"multiple": 4, "floor": 50}}"#).unwrap();
        let rule = c.stable_sampling.unwrap();
        assert_eq!((rule.multiple(), rule.floor()), (4.0, 50));
        let bad = PluginConfig::parse(br#"{"stable_sampling": {"multiple": 0.5, "floor": 50}}"#).unwrap_err().to_string();
        assert!(bad.contains("stable_sampling") && bad.contains("from 1 to 1000"), "{bad}");
        assert!(PluginConfig::parse(br#"{"stable_sampling": {"multiple": 4}}"#).is_err(), "floor is required");
        assert!(PluginConfig::parse(br#"{"stable_sampling": {"multiple": 4, "floor": 50, "every": 2}}"#).is_err());
    }

    #[test]
    fn a_bound_rollout_and_no_response_header() {
        let c = PluginConfig::parse(br#"{"rollout": "support", "response_header": false}"#).unwrap();
        assert_eq!((c.rollout.as_deref(), c.response_header), (Some("support"), false));
        let d = PluginConfig::default();
        assert_eq!((d.rollout, d.response_header), (None, true));
        let e = PluginConfig::parse(br#"{"rollout": "no spaces"}"#).unwrap_err().to_string();
        assert!(e.contains("rollout"), "{e}");
    }

    #[test]
    fn defaults() {
        let c = PluginConfig::parse(b"").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.controller.cluster, "fledge_controller");
        assert_eq!(c.controller.authority, "fledge_controller");
        assert_eq!(c.route_header, "x-fledge-version");
        assert_eq!(
            c.sticky,
            vec![StickySource::Header("x-user-id".into()), StickySource::Header("x-session-id".into())]
        );
        assert_eq!(c, PluginConfig::parse(b"{}").unwrap_or_else(|e| unreachable!("{e}")));
        assert_eq!(c, PluginConfig::default(), "Default and an empty configuration agree");
    }

    #[test]
    fn explicit_fields() {
        let c = PluginConfig::parse(
            br#"{"controller":{"cluster":"ctl","authority":"fledge.svc"},"route_header":"X-Version",
                 "sticky":["cookie:sid","header:X-Tenant"]}"#,
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.controller.authority, "fledge.svc");
        assert_eq!(c.route_header, "x-version");
        assert_eq!(c.sticky, vec![StickySource::Cookie("sid".into()), StickySource::Header("x-tenant".into())]);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |json: &str| PluginConfig::parse(json.as_bytes()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(r#"{"route_heder":"x"}"#).contains("route_heder"));
        assert!(err(r#"{"controller":{"clustr":"x"}}"#).contains("clustr"));
        assert!(err(r#"{"sticky":["query:uid"]}"#).contains("query:uid"));
        assert!(err(r#"{"route_header":"bad header"}"#).contains("route_header"));
        assert!(err(r#"{"tick_ms":0}"#).contains("tick_ms"));
        assert!(err("not json").contains("not valid JSON"));
        assert!(err(r#"{"proxy_id":"gate\u007fay-1"}"#).contains("proxy_id"));
        assert!(err(&format!(r#"{{"proxy_id":"{}"}}"#, "p".repeat(254))).contains("proxy_id"));
        assert!(err(r#"{"controller":{"token":"a\r\nx-evil: 1"}}"#).contains("controller.token"));
        assert!(err(r#"{"controller":{"authority":"a\nb"}}"#).contains("controller.authority"));
    }
}
