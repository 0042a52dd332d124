//! A worker's reports from the moment they are drained until the controller acknowledges them.
//!
//! A delivery that fails in an unknown way (timeout, reset, 5xx) may have been counted all the same, so
//! the report is resent unchanged, under its own sequence number, which the controller's dedup makes
//! harmless. Only a report that never left (the dispatch itself failed) goes back into the live stats.
//! Memory is bounded: beyond `capacity` the oldest waiting report is dropped, and the caller logs it.

use std::collections::VecDeque;

use crate::report::Report;

#[derive(Debug)]
struct Entry {
    report: Report,
    /// Deliveries tried so far; after the first, the controller may have counted it.
    attempts: u32,
    /// The dispatch on the wire, if any.
    token: Option<u32>,
}

#[derive(Debug)]
pub struct Outbox {
    entries: VecDeque<Entry>,
    capacity: usize,
}

/// How a delivery ended, from the controller's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx: counted.
    Acknowledged,
    /// 4xx: understood and refused (e.g. a malformed report); resending would not help.
    Refused,
    /// No answer, or 5xx: it may or may not have been counted.
    Unknown,
}

impl Delivery {
    pub fn from_status(status: Option<u16>) -> Self {
        match status {
            Some(200..=299) => Self::Acknowledged,
            Some(400..=499) => Self::Refused,
            _ => Self::Unknown,
        }
    }
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self { entries: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Queues a freshly drained report. Returns the report dropped to make room, if any.
    pub fn push(&mut self, report: Report) -> Option<Report> {
        let dropped = if self.entries.len() >= self.capacity { self.drop_oldest_waiting() } else { None };
        self.entries.push_back(Entry { report, attempts: 0, token: None });
        dropped
    }

    fn drop_oldest_waiting(&mut self) -> Option<Report> {
        let i = self.entries.iter().position(|e| e.token.is_none())?;
        self.entries.remove(i).map(|e| e.report)
    }

    /// Sequence numbers of up to `max` reports to send now, oldest first (none already on the wire).
    pub fn waiting(&self, max: usize) -> Vec<u64> {
        self.entries.iter().filter(|e| e.token.is_none()).take(max).map(|e| e.report.seq).collect()
    }

    pub fn get(&self, seq: u64) -> Option<&Report> {
        self.entries.iter().find(|e| e.report.seq == seq).map(|e| &e.report)
    }

    pub fn sent(&mut self, seq: u64, token: u32) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.report.seq == seq) {
            e.attempts = e.attempts.saturating_add(1);
            e.token = Some(token);
        }
    }

    /// The dispatch of `seq` failed locally. A report never sent before is handed back to be merged
    /// into the live stats; one sent before stays, to be resent as is.
    pub fn not_sent(&mut self, seq: u64) -> Option<Report> {
        let i = self.entries.iter().position(|e| e.report.seq == seq && e.attempts == 0)?;
        self.entries.remove(i).map(|e| e.report)
    }

    /// Settles the delivery on the wire under `token`. False if the token is not ours.
    pub fn answered(&mut self, token: u32, delivery: Delivery) -> bool {
        let Some(i) = self.entries.iter().position(|e| e.token == Some(token)) else { return false };
        let keep = delivery == Delivery::Unknown && self.entries.get(i).is_some_and(|e| !e.report.versions.is_empty());
        if keep {
            if let Some(e) = self.entries.get_mut(i) {
                e.token = None;
            }
        } else {
            // Acknowledged, refused, or an empty heartbeat whose news the next report carries anyway.
            self.entries.remove(i);
        }
        true
    }

    /// Reports not yet acknowledged (waiting or on the wire).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reports that were sent at least once and not acknowledged: each may already have been counted.
    pub fn unconfirmed(&self) -> usize {
        self.entries.iter().filter(|e| e.attempts > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::VersionStats;
    use crate::report::VersionReport;

    fn report(seq: u64, requests: u64) -> Report {
        let versions = (requests > 0)
            .then(|| VersionReport { rollout: "r".into(), version: "v2".into(), stats: VersionStats { requests, ..VersionStats::default() }, segments: Default::default() })
            .into_iter()
            .collect();
        Report { proxy: "p".into(), worker: "w".into(), seq, generation: Some(1), epoch: None, versions, shadow: Vec::new(), fallbacks: Vec::new() }
    }

    #[test]
    fn an_unknown_fate_is_resent_under_the_same_sequence_number() {
        let mut o = Outbox::new(8);
        assert!(o.push(report(1, 5)).is_none());
        assert_eq!(o.waiting(4), [1]);
        o.sent(1, 70);
        assert!(o.waiting(4).is_empty(), "not resent while on the wire");
        assert!(o.answered(70, Delivery::from_status(None)));
        assert_eq!(o.waiting(4), [1]);
        assert_eq!(o.get(1), Some(&report(1, 5)), "unchanged, same seq");
        o.sent(1, 71);
        assert!(o.answered(71, Delivery::from_status(Some(503))));
        o.sent(1, 72);
        assert!(!o.answered(99, Delivery::Acknowledged), "not our token");
        assert!(o.answered(72, Delivery::from_status(Some(202))));
        assert!(o.is_empty());
    }

    #[test]
    fn refused_and_empty_reports_are_not_resent() {
        let mut o = Outbox::new(8);
        o.push(report(1, 5));
        o.push(report(2, 0));
        o.sent(1, 1);
        o.sent(2, 2);
        assert!(o.answered(1, Delivery::from_status(Some(400))));
        assert!(o.answered(2, Delivery::Unknown));
        assert!(o.is_empty(), "a refused report and a lost heartbeat are gone");
    }

    #[test]
    fn only_a_never_sent_report_goes_back_to_the_stats() {
        let mut o = Outbox::new(8);
        o.push(report(1, 5));
        assert_eq!(o.not_sent(1), Some(report(1, 5)));
        o.push(report(2, 3));
        o.sent(2, 9);
        o.answered(9, Delivery::Unknown);
        assert_eq!(o.not_sent(2), None, "it may have been counted: it stays to be resent as is");
        assert_eq!((o.len(), o.unconfirmed()), (1, 1));
    }

    #[test]
    fn bounded_dropping_the_oldest_waiting_report() {
        let mut o = Outbox::new(2);
        o.push(report(1, 1));
        o.push(report(2, 2));
        o.sent(1, 10);
        assert_eq!(o.push(report(3, 3)).map(|r| r.seq), Some(2), "the one on the wire is kept");
        assert_eq!(o.waiting(8), [3]);
        assert_eq!(o.len(), 2);
    }
}
