//! A throwaway PostgreSQL cluster on loopback for the tests of the PostgreSQL store: one per test
//! binary, started on first use, each test in a database of its own (`CREATE DATABASE t_<random>`),
//! so tests run in parallel against it.
//!
//! The server binaries come from Debian's `postgresql` package (`make test` installs it), the newest
//! `/usr/lib/postgresql/*/bin`, or `FLEDGE_PG_BIN`. `initdb` refuses to run as root, so as root the
//! cluster is made and run as the `postgres` user (`runuser`), in a temp dir owned by it. It listens
//! on 127.0.0.1 on a free port (and a Unix socket in its own dir), trusts every local connection, and
//! runs without fsync (these tests check transactions, not power loss). A watchdog stops it
//! (`pg_ctl stop -m immediate`) and removes its dir when the test binary exits, however it exits: the
//! watchdog waits for the end of a pipe only the test process holds.
//!
//! When no server can be started, the test fails with the reason and the server's log: never skipped.
//!
//! Shared by the store's unit tests (`#[path]`-included in `src/store/mod.rs`) and the API tests.
#![allow(dead_code, clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

pub struct Cluster {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    /// Holds the watchdog's stdin open for as long as this process lives.
    _watchdog: Mutex<Child>,
}

/// The PostgreSQL server binaries: `FLEDGE_PG_BIN`, else the newest `/usr/lib/postgresql/N/bin`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("FLEDGE_PG_BIN").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => Err("the PostgreSQL tests need the server binaries: there is no /usr/lib/postgresql/*/bin/initdb \
                     (install Debian's `postgresql` package, as `make test` does, or set FLEDGE_PG_BIN)"
            .into()),
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

impl Cluster {
    /// `bin/name args…`, as the `postgres` user when this process is root.
    fn command(&self, name: &str) -> Command {
        command(&self.bin, self.as_postgres, name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_else(|e| format!("(no server log: {e})"))
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("t_{}_{:016x}", NEXT.fetch_add(1, Ordering::Relaxed), getrandom::u64().unwrap_or(0));
        let out = self
            .command("createdb")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", &name])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run createdb");
        assert!(out.status.success(), "createdb {name} failed: {}\n{}", String::from_utf8_lossy(&out.stderr), self.log());
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

fn command(bin: &Path, as_postgres: bool, name: &str) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(name));
        c
    } else {
        Command::new(bin.join(name))
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c.stdin(Stdio::null()).output().map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({}): {}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port on 127.0.0.1")
}

fn start() -> Result<Cluster, String> {
    let bin = bin_dir()?;
    let as_postgres = is_root();
    let dir = tempfile::Builder::new().prefix("fledge-pg-").tempdir().map_err(|e| format!("temp dir: {e}"))?.keep();
    if as_postgres {
        run(
            {
                let mut c = Command::new("chown");
                c.arg("postgres:").arg(&dir);
                c
            },
            "chown of the cluster dir to postgres",
        )?;
    }
    // The watchdog, first, so that the dir goes whatever fails next: when this process ends, its stdin
    // closes, and it stops the server and removes the dir (ignoring the ctrl-c that may have ended the
    // tests, so that it still cleans up).
    let pg_ctl = if as_postgres { format!("runuser -u postgres -- {}", bin.join("pg_ctl").display()) } else { bin.join("pg_ctl").display().to_string() };
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' INT TERM HUP; cat >/dev/null; {pg_ctl} stop -D {} -m immediate >/dev/null 2>&1; rm -rf {}", dir.join("data").display(), dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the watchdog: {e}"))?;
    let data = dir.join("data");
    let mut initdb = command(&bin, as_postgres, "initdb");
    initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
    run(initdb, "initdb")?;
    let mut last = String::new();
    // A port found free may be taken before the server binds it: a few tries.
    for _ in 0..5 {
        let port = free_port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.display()
        );
        let mut c = command(&bin, as_postgres, "pg_ctl");
        c.arg("start").arg("-D").arg(&data).arg("-l").arg(dir.join("log")).args(["-w", "-t", "60", "-o", &options]);
        match run(c, "pg_ctl start") {
            Ok(()) => return Ok(Cluster { port, bin, dir, as_postgres, _watchdog: Mutex::new(watchdog) }),
            Err(e) => last = format!("{e}\nserver log:\n{}", std::fs::read_to_string(dir.join("log")).unwrap_or_default()),
        }
    }
    Err(last)
}

/// The cluster of this test binary, started on first use; a test fails here when it cannot be.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("cannot start a PostgreSQL server for the tests: {e}"),
    }
}

/// The URL of a new, empty database on this binary's cluster.
pub fn database() -> String {
    cluster().database()
}
