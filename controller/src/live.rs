//! What the controller learns from the proxies, kept in memory: per-rollout stats windows and
//! per-worker report bookkeeping (dedup, applied generation). Lost on restart by design — windows
//! restart, and proxies re-announce their generation with their next report within a second.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fledge_core::analysis::VersionStats;
use fledge_core::report::Report;
use serde::Serialize;

/// How far back a sequence number is remembered for dedup.
const SEQ_MEMORY: u64 = 1_024;
/// A worker not heard from for this long (or for three of its own report gaps, if longer: filters may
/// report as rarely as once a minute) no longer counts as a proxy that must confirm.
pub const ACTIVE_MS: u64 = 10_000;

#[derive(Debug, Default)]
pub struct Window {
    pub started_at_ms: u64,
    pub versions: HashMap<String, VersionStats>,
    pub last_evaluated_ms: u64,
    /// Data arrived since the last look; the driver checks critical gates at once.
    pub fresh: bool,
}

impl Window {
    pub fn stats(&self, version: &str) -> VersionStats {
        self.versions.get(version).cloned().unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct WorkerSeen {
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
}

#[derive(Debug, Default)]
pub struct Live {
    pub windows: HashMap<String, Window>,
    workers: HashMap<(String, String), WorkerSeen>,
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
    /// The lowest generation any of its workers has applied.
    pub applied_generation: Option<u64>,
    pub confirmed: bool,
    /// When the last of its workers first reported the generation (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_at_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Confirmation {
    pub generation: u64,
    pub confirmed: usize,
    pub proxies: usize,
    pub details: Vec<ProxyConfirmation>,
}

impl Live {
    /// Merges a report's deltas into the windows of rollouts it names whose version is current.
    /// `versions_of` maps a rollout name to its (stable, canary).
    pub fn ingest(&mut self, report: Report, now_ms: u64, versions_of: impl Fn(&str) -> Option<(String, String)>) -> Ingested {
        let worker = self.workers.entry((report.proxy.clone(), report.worker.clone())).or_default();
        if !worker.accept(report.seq) {
            return Ingested { duplicate: true, merged: 0, ignored: 0 };
        }
        if worker.last_seen_ms > 0 {
            worker.gap_ms = now_ms.saturating_sub(worker.last_seen_ms);
        }
        worker.last_seen_ms = now_ms;
        if let Some(g) = report.generation {
            worker.generation = Some(worker.generation.map_or(g, |old| old.max(g)));
            worker.first_seen.entry(g).or_insert(now_ms);
            while worker.first_seen.len() > 64 {
                worker.first_seen.pop_first();
            }
        }
        let (mut merged, mut ignored) = (0, 0);
        for v in report.versions {
            match versions_of(&v.rollout) {
                Some((stable, canary)) if v.version == stable || v.version == canary => {
                    let window = self.windows.entry(v.rollout).or_insert_with(|| Window { started_at_ms: now_ms, ..Window::default() });
                    window.versions.entry(v.version).or_default().merge(&v.stats);
                    window.fresh = true;
                    merged += 1;
                }
                _ => ignored += 1,
            }
        }
        Ingested { duplicate: false, merged, ignored }
    }

    pub fn window_mut(&mut self, rollout: &str, now_ms: u64) -> &mut Window {
        self.windows.entry(rollout.to_string()).or_insert_with(|| Window { started_at_ms: now_ms, ..Window::default() })
    }

    /// Starts a rollout's window afresh (both versions together, as the sequential tests require).
    pub fn reset_window(&mut self, rollout: &str, now_ms: u64) {
        self.windows.insert(rollout.to_string(), Window { started_at_ms: now_ms, ..Window::default() });
    }

    /// Which active proxies have applied `generation` (all their workers), and since when.
    pub fn confirmation(&self, generation: u64, now_ms: u64) -> Confirmation {
        let mut by_proxy: BTreeMap<&str, Vec<&WorkerSeen>> = BTreeMap::new();
        for ((proxy, _), w) in &self.workers {
            if now_ms.saturating_sub(w.last_seen_ms) <= ACTIVE_MS.max(w.gap_ms.saturating_mul(3)) {
                by_proxy.entry(proxy).or_default().push(w);
            }
        }
        let details: Vec<ProxyConfirmation> = by_proxy
            .into_iter()
            .map(|(proxy, workers)| {
                let applied = workers.iter().map(|w| w.generation).min().flatten();
                let confirmed = applied.is_some_and(|g| g >= generation);
                let confirmed_at_ms = confirmed
                    .then(|| workers.iter().filter_map(|w| w.first_seen.range(generation..).map(|(_, at)| *at).min()).max())
                    .flatten();
                ProxyConfirmation { proxy: proxy.to_string(), workers: workers.len(), applied_generation: applied, confirmed, confirmed_at_ms }
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
    use fledge_core::report::VersionReport;

    fn report(proxy: &str, worker: &str, seq: u64, generation: u64, requests: u64) -> Report {
        let stats = VersionStats { requests, ..VersionStats::default() };
        Report {
            proxy: proxy.into(),
            worker: worker.into(),
            seq,
            generation: Some(generation),
            versions: vec![
                VersionReport { rollout: "r".into(), version: "v2".into(), stats: stats.clone() },
                VersionReport { rollout: "gone".into(), version: "v2".into(), stats },
            ],
        }
    }

    fn versions(name: &str) -> Option<(String, String)> {
        (name == "r").then(|| ("v1".to_string(), "v2".to_string()))
    }

    #[test]
    fn duplicates_and_reordering_are_harmless() {
        let mut live = Live::default();
        assert_eq!(live.ingest(report("p", "w", 2, 1, 10), 0, versions).merged, 1);
        assert_eq!(live.ingest(report("p", "w", 1, 1, 5), 0, versions).merged, 1, "late but new");
        assert!(live.ingest(report("p", "w", 2, 1, 10), 0, versions).duplicate);
        assert!(live.ingest(report("p", "w", 1, 1, 5), 0, versions).duplicate);
        assert_eq!(live.ingest(report("p", "other", 1, 1, 1), 0, versions).ignored, 1, "unknown rollout ignored");
        assert_eq!(live.windows["r"].stats("v2").requests, 16);
    }

    #[test]
    fn confirmation_needs_every_worker() {
        let mut live = Live::default();
        live.ingest(report("p1", "a", 1, 5, 0), 100, versions);
        live.ingest(report("p1", "b", 1, 4, 0), 100, versions);
        live.ingest(report("p2", "a", 1, 5, 0), 150, versions);
        let c = live.confirmation(5, 200);
        assert_eq!((c.confirmed, c.proxies), (1, 2));
        assert_eq!((c.details[0].workers, c.details[1].workers), (2, 1));
        live.ingest(report("p1", "b", 2, 5, 0), 300, versions);
        let c = live.confirmation(5, 400);
        assert_eq!((c.confirmed, c.proxies), (2, 2));
        assert_eq!(c.details[0].confirmed_at_ms, Some(300));
        assert_eq!(live.confirmation(5, 100_000).proxies, 0, "silent proxies drop out");

        // A worker reporting every 30 s stays counted between its reports.
        let mut live = Live::default();
        live.ingest(report("slow", "a", 1, 5, 0), 1_000, versions);
        live.ingest(report("slow", "a", 2, 5, 0), 31_000, versions);
        assert_eq!(live.confirmation(5, 61_000).proxies, 1);
        assert_eq!(live.confirmation(5, 122_000).proxies, 0, "three gaps without a report");
    }
}
