//! What the controller learns from the proxies, kept in memory: per-rollout stats windows and
//! per-worker report bookkeeping (dedup, applied generation). Lost on restart by design — windows
//! restart, and proxies re-announce their generation with their next report within a second.
//!
//! Memory is bounded whatever the proxies do: windows exist only for rollouts that exist, and a
//! worker (worker ids are random per Envoy VM, so every restart brings new ones) is forgotten once it
//! has been silent for [`EVICT_MS`], or when the table is full, the longest-silent first.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fledge_core::analysis::VersionStats;
use fledge_core::report::IncomingReport;
use fledge_core::shadow::{ShadowSample, ShadowStats, WireShadowStats};
use serde::Serialize;

/// How far back a sequence number is remembered for dedup.
const SEQ_MEMORY: u64 = 1_024;
/// A worker not heard from for this long (or for three of its own report gaps, if longer: filters may
/// report as rarely as once a minute) no longer counts as a proxy that must confirm.
pub const ACTIVE_MS: u64 = 10_000;
/// A worker silent this long (and for ten of its report gaps) is forgotten. Its reports would be
/// resent within the outbox's minute anyway; a later report starts a fresh record.
pub const EVICT_MS: u64 = 10 * 60_000;
/// At most this many workers are remembered (some thousands of Envoys × their workers).
pub const MAX_WORKERS: usize = 16_384;

#[derive(Debug, Default)]
pub struct Window {
    /// The rollout's `status.window` this window belongs to.
    seq: u64,
    started_at_ms: u64,
    /// Everything since the window started (shown by the API).
    versions: HashMap<String, VersionStats>,
    /// Since the last scheduled look: the interval the judgement's evidence is made of.
    interval: HashMap<String, VersionStats>,
    /// Since the current step started (latency quantiles; the values the verdict shows).
    step: HashMap<String, VersionStats>,
    /// The step `step` belongs to.
    step_index: Option<usize>,
    last_evaluated_ms: u64,
    /// Data arrived since the last look; the driver checks critical gates at once.
    fresh: bool,
    /// Shadow pairs: since the window started, since the last scheduled look, since the step started.
    shadow: ShadowStats,
    shadow_interval: ShadowStats,
    shadow_step: ShadowStats,
}

impl Window {
    fn new(seq: u64, now_ms: u64) -> Self {
        Self { seq, started_at_ms: now_ms, ..Self::default() }
    }

    pub fn stats(&self, version: &str) -> VersionStats {
        self.versions.get(version).cloned().unwrap_or_default()
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The shadow counts since the window started.
    pub fn shadow(&self) -> &ShadowStats {
        &self.shadow
    }

    fn add_shadow(&mut self, wire: &WireShadowStats) {
        for s in [&mut self.shadow, &mut self.shadow_interval, &mut self.shadow_step] {
            wire.merge_into(s);
        }
        self.fresh = true;
    }

    pub fn started_at_ms(&self) -> u64 {
        self.started_at_ms
    }

    fn add(&mut self, version: &str, merge: impl Fn(&mut VersionStats)) {
        for map in [&mut self.versions, &mut self.interval, &mut self.step] {
            match map.get_mut(version) {
                Some(s) => merge(s),
                None => merge(map.entry(version.to_string()).or_default()),
            }
        }
        self.fresh = true;
    }
}

#[derive(Debug, Default)]
struct WorkerSeen {
    epoch: Option<String>,
    generation: Option<u64>,
    last_seen_ms: u64,
    /// The time between its last two reports.
    gap_ms: u64,
    /// First time each recent generation was reported.
    first_seen: BTreeMap<u64, u64>,
    max_seq: u64,
    recent: BTreeSet<u64>,
}

impl WorkerSeen {
    /// False for a sequence number already seen (or too old to tell).
    fn accept(&mut self, seq: u64) -> bool {
        if seq.saturating_add(SEQ_MEMORY) <= self.max_seq || !self.recent.insert(seq) {
            return false;
        }
        self.max_seq = self.max_seq.max(seq);
        let floor = self.max_seq.saturating_sub(SEQ_MEMORY);
        self.recent = self.recent.split_off(&floor);
        true
    }

    fn silent_for(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_seen_ms)
    }
}

#[derive(Debug, Default)]
pub struct Live {
    windows: HashMap<String, Window>,
    workers: HashMap<(String, String), WorkerSeen>,
    /// The last mismatching shadow pairs per rollout, newest last, at most its `capture.samples`.
    samples: HashMap<String, std::collections::VecDeque<ShadowSample>>,
}

/// The outcome of ingesting one report.
#[derive(Debug, Serialize, PartialEq)]
pub struct Ingested {
    pub duplicate: bool,
    pub merged: usize,
    pub ignored: usize,
}

#[derive(Debug, Serialize)]
pub struct ProxyConfirmation {
    pub proxy: String,
    /// Its workers (Envoy worker threads plus the main thread) heard from recently; each reports alone.
    pub workers: usize,
    /// The lowest generation any of its workers has applied (of this controller's epoch).
    pub applied_generation: Option<u64>,
    pub confirmed: bool,
    /// When the last of its workers first reported the generation (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_at_ms: Option<u64>,
    /// When any of its workers last reported (ms since the epoch).
    pub last_report_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct Confirmation {
    pub generation: u64,
    pub confirmed: usize,
    pub proxies: usize,
    pub details: Vec<ProxyConfirmation>,
}

/// One look's data, as [`fledge_core::analysis::Look`] takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Looked {
    pub stable: VersionStats,
    pub canary: VersionStats,
    pub stable_step: VersionStats,
    pub canary_step: VersionStats,
    pub shadow: ShadowStats,
    pub shadow_step: ShadowStats,
    pub scheduled: bool,
    /// When the interval of `stable`/`canary` began (the last scheduled look, or the window's start).
    pub interval_started_ms: u64,
}

impl Looked {
    pub fn look(&self) -> fledge_core::analysis::Look<'_> {
        fledge_core::analysis::Look {
            stable: &self.stable,
            canary: &self.canary,
            stable_step: &self.stable_step,
            canary_step: &self.canary_step,
            shadow: &self.shadow,
            shadow_step: &self.shadow_step,
            scheduled: self.scheduled,
        }
    }
}

/// The rollout's current versions and window, as the ingest needs them.
pub struct Current<'a> {
    pub stable: &'a str,
    pub canary: &'a str,
    pub window: u64,
    /// Shadow samples kept for the rollout (`capture.samples`; 0 without a shadow).
    pub samples: usize,
}

impl Live {
    /// Merges a report's deltas into the windows of rollouts it names whose version is current.
    /// `current` looks a rollout up; entries for anything else are dropped without allocating.
    pub fn ingest<'a>(&mut self, report: IncomingReport, now_ms: u64, current: impl Fn(&str) -> Option<Current<'a>>) -> Ingested {
        let key = (report.proxy, report.worker);
        if !self.workers.contains_key(&key) && self.workers.len() >= MAX_WORKERS {
            self.evict_oldest();
        }
        let worker = self.workers.entry(key).or_default();
        if !worker.accept(report.seq) {
            return Ingested { duplicate: true, merged: 0, ignored: 0 };
        }
        if worker.last_seen_ms > 0 {
            worker.gap_ms = now_ms.saturating_sub(worker.last_seen_ms);
        }
        worker.last_seen_ms = now_ms;
        if worker.epoch != report.epoch {
            // The proxy's config came from other data: what it applied before says nothing now.
            worker.epoch = report.epoch;
            worker.generation = None;
            worker.first_seen.clear();
        }
        if let Some(g) = report.generation {
            worker.generation = Some(worker.generation.map_or(g, |old| old.max(g)));
            worker.first_seen.entry(g).or_insert(now_ms);
            while worker.first_seen.len() > 64 {
                worker.first_seen.pop_first();
            }
        }
        let (mut merged, mut ignored) = (0, 0);
        for v in report.versions {
            match current(&v.rollout) {
                Some(c) if v.version == c.stable || v.version == c.canary => {
                    let window = self.window_for(&v.rollout, c.window, now_ms);
                    window.add(&v.version, |s| v.stats.merge_into(s));
                    merged += 1;
                }
                _ => ignored += 1,
            }
        }
        for s in report.shadow {
            match current(&s.rollout) {
                Some(c) => {
                    self.window_for(&s.rollout, c.window, now_ms).add_shadow(&s.stats);
                    if c.samples > 0 && !s.samples.is_empty() {
                        let kept = self.samples.entry(s.rollout).or_default();
                        kept.extend(s.samples);
                        while kept.len() > c.samples {
                            kept.pop_front();
                        }
                    }
                    merged += 1;
                }
                None => ignored += 1,
            }
        }
        Ingested { duplicate: false, merged, ignored }
    }

    /// Outcomes reported later (not by a proxy) for a rollout's current window.
    pub fn add_outcomes(&mut self, rollout: &str, window: u64, now_ms: u64, items: Vec<(String, VersionStats)>) {
        let w = self.window_for(rollout, window, now_ms);
        for (version, stats) in items {
            w.add(&version, |s| s.merge(&stats));
        }
    }

    /// The rollout's window numbered `seq`; a window of another number (from before a restart of the
    /// analysis) is replaced by an empty one.
    pub fn window_for(&mut self, rollout: &str, seq: u64, now_ms: u64) -> &mut Window {
        let w = self.windows.entry(rollout.to_string()).or_insert_with(|| Window::new(seq, now_ms));
        if w.seq != seq {
            *w = Window::new(seq, now_ms);
        }
        w
    }

    pub fn window(&self, rollout: &str) -> Option<&Window> {
        self.windows.get(rollout)
    }

    /// For the analysis: the two versions' counts of the interval since the last scheduled look and
    /// of the current step (`step`: the rollout's step index; a new one restarts the step counts),
    /// and whether this look is a scheduled one; `None` when there is nothing to look at (not due,
    /// and no new data). A scheduled look closes the interval: the next one starts empty.
    pub fn take_look(&mut self, rollout: &str, seq: u64, step: usize, versions: (&str, &str), interval_ms: u64, now_ms: u64) -> Option<Looked> {
        let w = self.window_for(rollout, seq, now_ms);
        if w.step_index != Some(step) {
            w.step_index = Some(step);
            w.step.clear();
            w.shadow_step = ShadowStats::default();
        }
        // The first scheduled look comes one interval after the window started: a window just
        // (re)started — at a step's start, or empty after a controller restart — has nothing to judge
        // yet, and the verdict restored from disk stays until there is.
        let interval_started_ms = w.last_evaluated_ms.max(w.started_at_ms);
        let scheduled = now_ms >= interval_started_ms.saturating_add(interval_ms);
        if !scheduled && !w.fresh {
            return None;
        }
        w.fresh = false;
        let (stable, canary) = versions;
        let of = |m: &HashMap<String, VersionStats>, v: &str| m.get(v).cloned().unwrap_or_default();
        let looked = Looked {
            stable: of(&w.interval, stable),
            canary: of(&w.interval, canary),
            stable_step: of(&w.step, stable),
            canary_step: of(&w.step, canary),
            shadow: w.shadow_interval.clone(),
            shadow_step: w.shadow_step.clone(),
            scheduled,
            interval_started_ms,
        };
        if scheduled {
            w.last_evaluated_ms = now_ms;
            w.interval.clear();
            w.shadow_interval = ShadowStats::default();
        }
        Some(looked)
    }

    pub fn remove_window(&mut self, rollout: &str) {
        self.windows.remove(rollout);
        self.samples.remove(rollout);
    }

    /// The last mismatching shadow pairs of a rollout, oldest first.
    pub fn shadow_samples(&self, rollout: &str) -> Vec<ShadowSample> {
        self.samples.get(rollout).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Forgets workers silent for long. Called periodically by the driver.
    pub fn evict(&mut self, now_ms: u64) -> usize {
        let before = self.workers.len();
        self.workers.retain(|_, w| w.silent_for(now_ms) <= EVICT_MS.max(w.gap_ms.saturating_mul(10)));
        before - self.workers.len()
    }

    fn evict_oldest(&mut self) {
        let oldest = self.workers.iter().min_by_key(|(_, w)| w.last_seen_ms).map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.workers.remove(&k);
        }
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Which active proxies have applied `generation` of `epoch` (all their workers), and since when.
    pub fn confirmation(&self, epoch: &str, generation: u64, now_ms: u64) -> Confirmation {
        let mut by_proxy: BTreeMap<&str, Vec<&WorkerSeen>> = BTreeMap::new();
        for ((proxy, _), w) in &self.workers {
            if w.silent_for(now_ms) <= ACTIVE_MS.max(w.gap_ms.saturating_mul(3)) {
                by_proxy.entry(proxy).or_default().push(w);
            }
        }
        let details: Vec<ProxyConfirmation> = by_proxy
            .into_iter()
            .map(|(proxy, workers)| {
                // A worker without an epoch is a filter older than epochs: take its word for the generation.
                let of_this_epoch = |w: &&WorkerSeen| w.epoch.as_deref().is_none_or(|e| e == epoch);
                let applied = workers.iter().map(|w| if of_this_epoch(w) { w.generation } else { None }).min().flatten();
                let confirmed = applied.is_some_and(|g| g >= generation);
                let confirmed_at_ms = confirmed
                    .then(|| workers.iter().filter_map(|w| w.first_seen.range(generation..).map(|(_, at)| *at).min()).max())
                    .flatten();
                let last_report_ms = workers.iter().map(|w| w.last_seen_ms).max().unwrap_or(0);
                ProxyConfirmation { proxy: proxy.to_string(), workers: workers.len(), applied_generation: applied, confirmed, confirmed_at_ms, last_report_ms }
            })
            .collect();
        Confirmation {
            generation,
            confirmed: details.iter().filter(|d| d.confirmed).count(),
            proxies: details.len(),
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_core::report::{IncomingVersion, WireStats};

    fn report(proxy: &str, worker: &str, seq: u64, generation: u64, requests: u64) -> IncomingReport {
        let stats = WireStats { requests, ..WireStats::default() };
        IncomingReport {
            proxy: proxy.into(),
            worker: worker.into(),
            seq,
            generation: Some(generation),
            epoch: Some("e".into()),
            versions: vec![
                IncomingVersion { rollout: "r".into(), version: "v2".into(), stats: stats.clone(), segments: vec![] },
                IncomingVersion { rollout: "gone".into(), version: "v2".into(), stats, segments: vec![] },
            ],
            shadow: vec![],
            fallbacks: vec![],
        }
    }

    fn current(name: &str) -> Option<Current<'static>> {
        (name == "r").then_some(Current { stable: "v1", canary: "v2", window: 1, samples: 2 })
    }

    #[test]
    fn shadow_counts_and_samples_reach_the_window() {
        use fledge_core::report::IncomingShadow;
        use fledge_core::shadow::{ShadowSample, WireShadowStats};
        let mut live = Live::default();
        // The step's counts start with the step (its first look).
        let _ = live.take_look("r", 1, 0, ("v1", "v2"), 0, 0);
        let entry = |seq: u64, path: &str| {
            let mut r = report("p", "w", seq, 1, 1);
            r.shadow = vec![
                IncomingShadow { rollout: "r".into(), stats: WireShadowStats { sent: 3, pairs: 2, ..WireShadowStats::default() }, samples: vec![ShadowSample { path: path.into(), ..ShadowSample::default() }] },
                IncomingShadow { rollout: "gone".into(), stats: WireShadowStats::default(), samples: vec![] },
            ];
            r
        };
        for (seq, path) in [(1, "/a"), (2, "/b"), (3, "/c")] {
            live.ingest(entry(seq, path), 0, current);
        }
        assert!(live.ingest(entry(3, "/d"), 0, current).duplicate, "a duplicate adds nothing");
        assert_eq!(live.window("r").unwrap().shadow().sent, 9);
        let kept: Vec<String> = live.shadow_samples("r").into_iter().map(|s| s.path).collect();
        assert_eq!(kept, ["/b", "/c"], "the newest capture.samples");
        let look = live.take_look("r", 1, 0, ("v1", "v2"), 0, 10).unwrap();
        assert_eq!((look.shadow.sent, look.shadow_step.sent), (9, 9));
        let look = live.take_look("r", 1, 0, ("v1", "v2"), 0, 20);
        assert!(look.is_none_or(|l| l.shadow.sent == 0), "the interval restarts after a scheduled look");
    }

    #[test]
    fn duplicates_and_reordering_are_harmless() {
        let mut live = Live::default();
        assert_eq!(live.ingest(report("p", "w", 2, 1, 10), 0, current).merged, 1);
        assert_eq!(live.ingest(report("p", "w", 1, 1, 5), 0, current).merged, 1, "late but new");
        assert!(live.ingest(report("p", "w", 2, 1, 10), 0, current).duplicate);
        assert!(live.ingest(report("p", "w", 1, 1, 5), 0, current).duplicate);
        assert_eq!(live.ingest(report("p", "other", 1, 1, 1), 0, current).ignored, 1, "unknown rollout ignored");
        assert_eq!(live.window("r").unwrap().stats("v2").requests, 16);
        assert!(live.window("gone").is_none(), "no window for a rollout that does not exist");
        // The analysis restarted (window 2): the old counts are not judged.
        assert_eq!(live.window_for("r", 2, 5).stats("v2").requests, 0);
    }

    #[test]
    fn confirmation_needs_every_worker_of_this_epoch() {
        let mut live = Live::default();
        live.ingest(report("p1", "a", 1, 5, 0), 100, current);
        live.ingest(report("p1", "b", 1, 4, 0), 100, current);
        live.ingest(report("p2", "a", 1, 5, 0), 150, current);
        let c = live.confirmation("e", 5, 200);
        assert_eq!((c.confirmed, c.proxies), (1, 2));
        assert_eq!((c.details[0].workers, c.details[1].workers), (2, 1));
        live.ingest(report("p1", "b", 2, 5, 0), 300, current);
        let c = live.confirmation("e", 5, 400);
        assert_eq!((c.confirmed, c.proxies), (2, 2));
        assert_eq!(c.details[0].confirmed_at_ms, Some(300));
        assert_eq!(live.confirmation("other", 5, 400).confirmed, 0, "generation 5 of another epoch is not ours");
        assert_eq!(live.confirmation("e", 5, 100_000).proxies, 0, "silent proxies drop out");

        // A worker reporting every 30 s stays counted between its reports.
        let mut live = Live::default();
        live.ingest(report("slow", "a", 1, 5, 0), 1_000, current);
        live.ingest(report("slow", "a", 2, 5, 0), 31_000, current);
        assert_eq!(live.confirmation("e", 5, 61_000).proxies, 1);
        assert_eq!(live.confirmation("e", 5, 122_000).proxies, 0, "three gaps without a report");
    }

    #[test]
    fn thousands_of_envoy_restarts_keep_the_worker_table_bounded() {
        let mut live = Live::default();
        // 10,000 restarts, one a second, each a new worker id that reports a few times and is gone.
        let mut now = 0;
        let mut peak = 0;
        for restart in 0..10_000u64 {
            for seq in 1..=3 {
                now += 333;
                live.ingest(report("envoy", &format!("w{restart}"), seq, 1, 1), now, current);
            }
            if restart % 10 == 0 {
                live.evict(now);
            }
            peak = peak.max(live.worker_count());
        }
        assert!(peak <= 650, "silent workers are evicted after {EVICT_MS} ms: peak {peak}");
        live.evict(now + EVICT_MS + 1);
        assert_eq!(live.worker_count(), 0);
        // A flood of ids faster than eviction: the hard cap holds.
        for i in 0..(MAX_WORKERS + 1_000) {
            live.ingest(report("flood", &format!("{i}"), 1, 1, 0), now, current);
        }
        assert_eq!(live.worker_count(), MAX_WORKERS);
    }
}
