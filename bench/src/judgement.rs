//! Decision quality of the judgement: the core's seeded rollout simulations
//! (`fledge_core::analysis::simulation`) at full size, 20,000 rollouts per row, in the issue's
//! setting (200 requests/s, one look per second, steps 1 → 5 → 25 → 50 → 100 % at 60 s each, default
//! gates). Rows run on all cores; each is deterministic (its own seed).

use fledge_core::analysis::simulation::{scenarios, Simulator, Tally};

pub struct Settings {
    pub runs: usize,
}

pub struct Row {
    pub tally: Tally,
    pub check: &'static str,
}

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let runs = settings.runs;
    let rows = tokio::task::spawn_blocking(move || table(runs)).await?;
    Ok(rows)
}

fn table(runs: usize) -> Vec<Row> {
    let rows = scenarios();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let sim = Simulator::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((sc, check)) = rows.get(i) else { break };
                    let tally = sim.run_many(sc, runs, 20_000 + i as u64);
                    eprintln!("{}", tally.line());
                    if let Ok(mut r) = results.lock() {
                        r.push((i, Row { tally, check }));
                    }
                }
            });
        }
    });
    let mut out = results.into_inner().unwrap_or_default();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}
