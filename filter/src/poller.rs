//! The config long-poll as a state machine, free of hostcalls: when to poll, what a response means, and
//! which log line (if any) a change of state deserves. The root context feeds it time and responses and
//! carries out what it returns.

use fledge_core::backoff::Backoff;
use fledge_core::route::RouteTable;
use fledge_core::snapshot::ConfigSnapshot;

/// What one poll response amounts to.
#[derive(Debug)]
pub enum PollResult {
    /// A new, valid config: store `bytes` in shared data and install `table`.
    Apply { table: RouteTable, generation: u64 },
    /// Nothing new (304, or the epoch and generation we already have).
    Unchanged,
    /// Unreachable controller, error status or invalid body; the last good config stays.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    Starting,
    Healthy,
    Failing(String),
}

#[derive(Debug)]
pub struct Poller {
    backoff: Backoff,
    in_flight: bool,
    next_attempt_ms: u64,
    health: Health,
}

impl Default for Poller {
    fn default() -> Self {
        Self::new()
    }
}

impl Poller {
    pub fn new() -> Self {
        Self { backoff: Backoff::new(100, 2_000), in_flight: false, next_attempt_ms: 0, health: Health::Starting }
    }

    pub fn due(&self, now_ms: u64) -> bool {
        !self.in_flight && now_ms >= self.next_attempt_ms
    }

    pub fn dispatched(&mut self) {
        self.in_flight = true;
    }

    /// The poll path for the config this proxy has applied: its generation, and the epoch of the data
    /// it came from, so that a controller whose data was reset answers at once.
    pub fn path(applied: Option<(&str, u64)>) -> String {
        match applied {
            Some((epoch, generation)) if !epoch.is_empty() => format!("/v1/config?since={generation}&epoch={epoch}"),
            Some((_, generation)) => format!("/v1/config?since={generation}"),
            None => "/v1/config?since=0".to_string(),
        }
    }

    /// Classifies a response. `status` is None when Envoy could not reach the controller at all.
    /// `applied` is the (epoch, generation) installed now: only the same pair is "unchanged".
    pub fn classify(status: Option<u16>, body: Option<&[u8]>, applied: Option<(&str, u64)>) -> PollResult {
        match status {
            Some(200) => {
                let snap = match ConfigSnapshot::parse(body.unwrap_or_default()) {
                    Ok(s) => s,
                    Err(e) => return PollResult::Failed(format!("controller sent an invalid config: {e}")),
                };
                if applied == Some((snap.epoch.as_str(), snap.generation)) {
                    return PollResult::Unchanged;
                }
                match RouteTable::compile(&snap) {
                    Ok(table) => PollResult::Apply { generation: snap.generation, table },
                    Err(e) => PollResult::Failed(format!("controller sent an invalid config: {e}")),
                }
            }
            Some(304) => PollResult::Unchanged,
            Some(s @ (401 | 403)) => PollResult::Failed(format!("controller answered HTTP {s}; check controller.token")),
            Some(s) => PollResult::Failed(format!("controller answered HTTP {s}")),
            None => PollResult::Failed("controller unreachable".to_string()),
        }
    }

    /// Records how the poll ended and returns a log line when the state changed. A success polls again
    /// at once (the long poll is the push channel); a failure waits out the backoff.
    pub fn finished(&mut self, now_ms: u64, result: &PollResult, jitter: u32) -> Option<String> {
        self.in_flight = false;
        let next = match result {
            PollResult::Failed(reason) => {
                self.next_attempt_ms = now_ms.saturating_add(self.backoff.fail(jitter));
                Health::Failing(reason.clone())
            }
            _ => {
                self.backoff.succeed();
                self.next_attempt_ms = now_ms;
                Health::Healthy
            }
        };
        if next == self.health {
            return None;
        }
        let line = match (&self.health, &next) {
            (_, Health::Failing(reason)) => Some(format!("config poll failing ({reason}); keeping the last good config, retrying with backoff")),
            (Health::Failing(_), Health::Healthy) => Some("config poll recovered".to_string()),
            (Health::Starting, Health::Healthy) => Some("connected to the controller".to_string()),
            _ => None,
        };
        self.health = next;
        line
    }

    /// The dispatch itself failed (e.g. unknown cluster): treat like an unreachable controller.
    pub fn dispatch_failed(&mut self, now_ms: u64, reason: String, jitter: u32) -> Option<String> {
        self.in_flight = true;
        self.finished(now_ms, &PollResult::Failed(reason), jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"epoch":"e1","generation":4,"rollouts":[{"name":"r","hosts":["a"],"stable":"v1","canary":"v2","weight":10,"salt":1}]}"#;

    #[test]
    fn classifies_responses() {
        assert!(matches!(Poller::classify(Some(200), Some(BODY), None), PollResult::Apply { generation: 4, .. }));
        assert!(matches!(Poller::classify(Some(200), Some(BODY), Some(("e1", 4))), PollResult::Unchanged));
        assert!(
            matches!(Poller::classify(Some(200), Some(BODY), Some(("e0", 4))), PollResult::Apply { generation: 4, .. }),
            "generation 4 of other data is new"
        );
        assert!(matches!(Poller::classify(Some(304), None, Some(("e1", 4))), PollResult::Unchanged));
        assert!(matches!(Poller::classify(Some(200), Some(b"{"), None), PollResult::Failed(_)));
        assert!(matches!(Poller::classify(Some(200), None, None), PollResult::Failed(_)));
        assert!(matches!(Poller::classify(Some(503), None, None), PollResult::Failed(_)));
        assert!(matches!(Poller::classify(None, None, None), PollResult::Failed(_)));
        let PollResult::Failed(why) = Poller::classify(Some(401), None, None) else { panic!("401 is a failure") };
        assert!(why.contains("check controller.token"), "{why}");
        let weight_out_of_range = br#"{"generation":1,"rollouts":[{"name":"r","hosts":["a"],"stable":"v1","canary":"v2","weight":101,"salt":1}]}"#;
        assert!(matches!(Poller::classify(Some(200), Some(weight_out_of_range), None), PollResult::Failed(_)));
    }

    #[test]
    fn a_config_with_a_bad_segment_rule_is_refused_naming_it() {
        let with = |segments: &str| {
            format!(
                r#"{{"epoch":"e1","generation":5,"rollouts":[{{"name":"r","hosts":["a"],"stable":"v1","canary":"v2","weight":10,"salt":1,
                    "segments":{segments},"session":{{"cookie":"sid"}}}}]}}"#
            )
        };
        let good = with(r#"[{"name":"beta","match":{"source_cidr":"10.0.0.0/8"},"weight":50}]"#);
        let PollResult::Apply { table, .. } = Poller::classify(Some(200), Some(good.as_bytes()), None) else { panic!("valid") };
        assert_eq!(table.rollouts()[0].segments.len(), 1);
        assert_eq!(table.rollouts()[0].session.as_ref().map(|s| s.cookie.as_str()), Some("sid"));
        let bad = with(r#"[{"name":"beta","match":{"source_cidr":"10.0.0.0/33"},"weight":50}]"#);
        let PollResult::Failed(why) = Poller::classify(Some(200), Some(bad.as_bytes()), Some(("e1", 4))) else { panic!("refused") };
        assert!(why.contains(r#"rollout "r": segments[0] "beta": match.source_cidr"#), "{why}");
        let unknown = with(r#"[{"name":"beta","match":{"regex":"x"},"weight":50}]"#);
        assert!(matches!(Poller::classify(Some(200), Some(unknown.as_bytes()), None), PollResult::Failed(_)));
        // A controller older than segments: no field, no segments.
        let PollResult::Apply { table, .. } = Poller::classify(Some(200), Some(BODY), None) else { panic!() };
        assert!(table.rollouts()[0].segments.is_empty() && table.rollouts()[0].session.is_none());
    }

    #[test]
    fn the_path_names_epoch_and_generation() {
        assert_eq!(Poller::path(None), "/v1/config?since=0");
        assert_eq!(Poller::path(Some(("ab12", 7))), "/v1/config?since=7&epoch=ab12");
        assert_eq!(Poller::path(Some(("", 7))), "/v1/config?since=7", "a controller older than epochs");
    }

    #[test]
    fn logs_once_per_change_of_state_and_backs_off() {
        let mut p = Poller::new();
        assert!(p.due(0));
        p.dispatched();
        assert!(!p.due(0));
        let fail = PollResult::Failed("controller unreachable".into());
        assert!(p.finished(0, &fail, 0).is_some());
        assert!(!p.due(50) && p.due(100));
        p.dispatched();
        assert_eq!(p.finished(100, &fail, 0), None, "same failure again: no new log line");
        assert!(!p.due(299) && p.due(300), "backoff doubled");
        p.dispatched();
        assert_eq!(p.finished(300, &PollResult::Unchanged, 0).as_deref(), Some("config poll recovered"));
        assert!(p.due(300), "after a success the next poll goes out at once");
        p.dispatched();
        assert_eq!(p.finished(300, &PollResult::Unchanged, 0), None);
    }
}
