//! Child processes of a test: each component runs as a real process with its
//! output in a log file of the test's directory; every child is killed when
//! its handle is dropped, also when the test panics.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How to start a process (kept for restarts).
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    /// `--flag value` pairs (and lone `--flag`s).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The `--flags` a program's `--help` lists (cached by path).
fn known_flags(program: &Path) -> std::collections::BTreeSet<String> {
    static CACHE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::BTreeMap<PathBuf, std::collections::BTreeSet<String>>>,
    > = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(program.to_owned())
        .or_insert_with(|| {
            let help = Command::new(program).arg("--help").output().map(|o| o.stdout).unwrap_or_default();
            String::from_utf8_lossy(&help)
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(str::to_owned)
                .collect()
        })
        .clone()
}

/// `args` without the flags `program` does not know (with their values): an
/// older build of a component is started with today's flags minus the ones
/// it predates.
pub fn only_known_flags(program: &Path, args: &[String]) -> Vec<String> {
    let known = known_flags(program);
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let takes_value = args.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        let width = if takes_value { 2 } else { 1 };
        if !args[i].starts_with("--") || known.contains(&args[i]) {
            out.extend_from_slice(&args[i..(i + width).min(args.len())]);
        }
        i += width;
    }
    out
}

/// A running (or stopped) component process.
#[derive(Debug)]
pub struct Proc {
    spec: Spec,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    /// Starts `spec`, appending its stdout and stderr to `<log_dir>/<name>.log`.
    pub fn spawn(spec: Spec, log_dir: &Path) -> std::io::Result<Proc> {
        let log = log_dir.join(format!("{}.log", spec.name));
        let mut p = Proc { spec, log, child: None, starts: 0 };
        p.start()?;
        Ok(p)
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn start(&mut self) -> std::io::Result<()> {
        let file = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.spec.program);
        cmd.args(&self.spec.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", std::env::var("BRUPOP_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file));
        self.child = Some(cmd.spawn()?);
        self.starts += 1;
        Ok(())
    }

    /// Starts it again after a kill or exit (same arguments).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.start()
    }

    /// Starts another build of it (an upgrade), with `args`.
    pub fn replace(&mut self, program: PathBuf, args: Vec<String>) -> std::io::Result<()> {
        self.kill();
        self.spec.program = program;
        self.spec.args = args;
        self.start()
    }

    /// How it was started.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a node losing power does.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` (SIGKILL after it). The exit status, if it exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// The last `lines` lines of its log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where [`free_port`] hands out ports: below the kernel's ephemeral range
/// (32768 and up, where `bind(0)` and every outgoing connection take their
/// local port) and below the test API server's (20000 and up).
const PORTS: std::ops::Range<u16> = 10_000..20_000;

/// A loopback port for a child process to listen on, for the child to bind
/// later (the harness must know it: it scrapes and restarts). Never the same
/// port twice in one test process, and never one the kernel hands to
/// `bind(0)` or to an outgoing connection meanwhile: a port taken from
/// `bind(0)` and released could be given to another test's socket before
/// the child binds it (seen in CI as `Address already in use`).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        // A random start keeps two test processes apart.
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        let _ = NEXT.compare_exchange(u32::MAX, u32::from_le_bytes(b) % span, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let i = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = PORTS.start + i as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PORTS:?}")
}

/// Resident memory of a process in KiB (`VmRSS` from `/proc`), if it runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) of a process in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
