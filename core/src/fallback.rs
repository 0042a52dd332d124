//! The data plane's safety net when every controller is gone: a rollout's `on_controller_loss`.
//!
//! `hold` (the default) keeps routing on the last config, as a proxy always has. `stable` routes the
//! rollout's every request to stable once a worker has had no answer from the controller for
//! `after_seconds`: the setting travels in the config, so it acts with every controller down. The
//! worker keeps it until it installs a config of a higher generation (or of other data), which only a
//! controller can publish — and it reports the fallback with every report meanwhile, so the controller,
//! once back, pauses the rollout at 0 % and says why before anything moves again.
//!
//! [`LossWatch`] is one worker's bookkeeping: the time of its last answer from the controller, and
//! the rollouts it has sent to stable. It is pure: the filter tells it about answers, ticks and
//! installed tables.

use serde::{Deserialize, Serialize};

use crate::route::RouteTable;

/// `on_controller_loss` in a rollout spec (and, for `stable`, in the config the proxies get).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerLoss {
    pub mode: LossMode,
    #[serde(default = "ControllerLoss::default_after")]
    pub after_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossMode {
    /// Keep routing on the last config (today's behaviour, and the default).
    Hold,
    /// After `after_seconds` without an answer, every request of the rollout to stable.
    Stable,
}

/// The longest `after_seconds` accepted (a day).
pub const MAX_AFTER_SECONDS: u64 = 86_400;

impl ControllerLoss {
    fn default_after() -> u64 {
        30
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_AFTER_SECONDS).contains(&self.after_seconds) {
            return Err(format!("on_controller_loss.after_seconds: {} is not between 1 and {MAX_AFTER_SECONDS}", self.after_seconds));
        }
        Ok(())
    }
}

/// A rollout one worker sent to stable: reported with every report until a newer config lifts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FellBack {
    pub rollout: String,
    /// The config generation the worker had when it fell back.
    pub generation: u64,
    /// When (ms since the Unix epoch), and after how long without an answer.
    pub since_ms: u64,
    pub after_seconds: u64,
}

/// One worker's view of the controller's silence, and what it did about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossWatch {
    contact_ms: u64,
    fallen: Vec<FellBack>,
    /// The (epoch, generation) the fallbacks were taken on.
    on: Option<(String, u64)>,
}

impl LossWatch {
    /// A worker started at `now_ms`: its silence counts from its start.
    pub fn new(now_ms: u64) -> Self {
        Self { contact_ms: now_ms, ..Self::default() }
    }

    /// The controller answered (a report acknowledged, a poll answered).
    pub fn contact(&mut self, now_ms: u64) {
        self.contact_ms = self.contact_ms.max(now_ms);
    }

    pub fn fallen(&self) -> &[FellBack] {
        &self.fallen
    }

    /// A table from the controller's config is about to be installed: one of a higher generation, or
    /// of other data, lifts every fallback (returned); the same config keeps them.
    pub fn lift_for(&mut self, table: &RouteTable) -> Vec<FellBack> {
        match &self.on {
            Some((epoch, generation)) if *epoch == table.epoch && table.generation <= *generation => Vec::new(),
            Some(_) => {
                self.on = None;
                std::mem::take(&mut self.fallen)
            }
            None => Vec::new(),
        }
    }

    /// The rollouts of `table` whose `after_seconds` of silence have passed and that are not sent to
    /// stable yet: they are now (and returned).
    pub fn check(&mut self, table: &RouteTable, now_ms: u64) -> Vec<FellBack> {
        let silent_ms = now_ms.saturating_sub(self.contact_ms);
        let mut newly = Vec::new();
        for r in table.rollouts() {
            let Some(after_seconds) = r.on_loss_after_seconds else { continue };
            if silent_ms < after_seconds.saturating_mul(1_000) || self.fallen.iter().any(|f| f.rollout == r.name) {
                continue;
            }
            newly.push(FellBack { rollout: r.name.clone(), generation: table.generation, since_ms: now_ms, after_seconds });
        }
        if !newly.is_empty() {
            self.on = Some((table.epoch.clone(), table.generation));
            self.fallen.extend(newly.iter().cloned());
        }
        newly
    }

    /// `table` with every fallen rollout sent to stable.
    pub fn apply(&self, table: RouteTable) -> RouteTable {
        if self.fallen.is_empty() {
            return table;
        }
        table.to_stable(|name| self.fallen.iter().any(|f| f.rollout == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{ConfigSnapshot, RouteSpec};
    use crate::Weight;

    fn table(generation: u64, loss: Option<u64>) -> RouteTable {
        let mut a = RouteSpec::new("a", &["a"], "v1", "v2", Weight::try_from_percent(50.0).unwrap(), 1);
        a.on_controller_loss = loss.map(|after_seconds| ControllerLoss { mode: LossMode::Stable, after_seconds });
        let b = RouteSpec::new("b", &["b"], "v1", "v2", Weight::try_from_percent(50.0).unwrap(), 2);
        RouteTable::compile(&ConfigSnapshot { epoch: "e".into(), generation, rollouts: vec![a, b] }).unwrap()
    }

    #[test]
    fn silence_sends_stable_rollouts_to_stable_until_a_newer_config() {
        let mut w = LossWatch::new(0);
        let t = table(4, Some(30));
        assert!(w.check(&t, 29_999).is_empty(), "not before after_seconds");
        w.contact(20_000);
        assert!(w.check(&t, 49_999).is_empty(), "an answer restarts the count");
        let fell = w.check(&t, 50_000);
        assert_eq!(fell, [FellBack { rollout: "a".into(), generation: 4, since_ms: 50_000, after_seconds: 30 }]);
        assert!(w.check(&t, 60_000).is_empty(), "once");
        let routed = w.apply(t.clone());
        assert_eq!(routed.rollouts()[0].weight, Weight::ZERO);
        assert_eq!(routed.rollouts()[1].weight, t.rollouts()[1].weight, "a hold rollout keeps its weight");
        // The controller answers again: still on stable, until a higher generation.
        w.contact(70_000);
        assert!(w.lift_for(&table(4, Some(30))).is_empty());
        assert_eq!(w.fallen().len(), 1);
        assert_eq!(w.lift_for(&table(5, Some(30))).len(), 1);
        assert!(w.fallen().is_empty());
        assert_eq!(w.apply(table(5, Some(30))).rollouts()[0].weight.percent(), 50.0);
    }

    #[test]
    fn hold_is_the_default_and_never_falls_back() {
        let mut w = LossWatch::new(0);
        assert!(w.check(&table(1, None), u64::MAX).is_empty());
        let spec: ControllerLoss = serde_json::from_str(r#"{"mode": "stable"}"#).unwrap();
        assert_eq!(spec.after_seconds, 30);
        assert!(ControllerLoss { mode: LossMode::Stable, after_seconds: 0 }.validate().is_err());
        assert!(serde_json::from_str::<ControllerLoss>(r#"{"mode": "later"}"#).is_err());
    }
}
