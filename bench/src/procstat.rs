//! CPU time of a process from `/proc/<pid>/stat` (user + system, all threads), and finding a child
//! process by a unique argument (the harness's controller does not expose its pid).

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

/// Clock ticks per second of `/proc` times. Linux reports in USER_HZ, 100 on every mainstream
/// build; `getconf` confirms it where available.
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
    })
}

/// CPU seconds (user + system) used so far by `pid`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    // The command name (field 2) may contain spaces; fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / ticks_per_second())
}

/// CPU use of one process over an interval.
pub struct CpuMeter {
    pid: u32,
    cpu0: f64,
    t0: Instant,
}

pub struct CpuUse {
    /// CPU seconds spent.
    pub seconds: f64,
    /// Share of one core over the interval (1.0 = one core busy).
    pub cores: f64,
}

impl CpuMeter {
    pub fn start(pid: u32) -> anyhow::Result<Self> {
        Ok(Self { pid, cpu0: cpu_seconds(pid)?, t0: Instant::now() })
    }

    pub fn stop(&self) -> anyhow::Result<CpuUse> {
        let seconds = cpu_seconds(self.pid)? - self.cpu0;
        let wall = self.t0.elapsed().as_secs_f64();
        Ok(CpuUse { seconds, cores: seconds / wall.max(1e-9) })
    }
}

/// The pid of the process whose command line contains `arg` (e.g. a controller's unique data dir).
pub fn pid_with_arg(arg: &Path) -> anyhow::Result<u32> {
    let needle = arg.to_string_lossy();
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).any(|a| String::from_utf8_lossy(a) == needle) {
            return Ok(pid);
        }
    }
    anyhow::bail!("no process with argument {needle}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_cpu_time_is_readable() {
        let t = super::cpu_seconds(std::process::id()).unwrap_or(-1.0);
        assert!(t >= 0.0);
    }
}
