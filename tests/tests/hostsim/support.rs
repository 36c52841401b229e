//! Helpers of the host simulator's tests: one host in a temporary
//! directory, raw requests, and waiting for a condition with a deadline.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tests::hostsim::raw::{self, RawResponse};
use tests::hostsim::{CommandKind, HostConfig, HostFleet, HostSim, Timings};

/// Longest a test waits for something that should happen in milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Timings that keep every command a couple of milliseconds.
pub fn fast() -> Timings {
    Timings { reboot_downtime: Duration::from_millis(20), ..Timings::uniform(Duration::from_millis(2)) }
}

/// A host running 1.20.0 with releases 1.21.0, 1.20.1, 1.20.0 and 1.19.5.
pub fn config() -> HostConfig {
    HostConfig::new("1.20.0").available(&["1.19.5", "1.21.0", "1.20.0", "1.20.1"]).timings(fast())
}

/// One host in its own temporary directory (removed on drop).
pub struct One {
    fleet: HostFleet,
}

impl std::ops::Deref for One {
    type Target = HostSim;
    fn deref(&self) -> &HostSim {
        &self.fleet.hosts()[0]
    }
}

pub async fn start(config: HostConfig) -> One {
    One { fleet: HostFleet::start(["node"], config).await.unwrap() }
}

pub async fn get(host: &HostSim, path: &str) -> RawResponse {
    raw::request(host.socket_path(), "GET", path).await.unwrap()
}

pub async fn post(host: &HostSim, path: &str) -> RawResponse {
    raw::request(host.socket_path(), "POST", path).await.unwrap()
}

pub async fn action(host: &HostSim, cmd: CommandKind) -> RawResponse {
    post(host, cmd.path()).await
}

/// Polls `check` until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The status once no command holds the lock (polling through 423).
pub async fn settled_status(host: &HostSim) -> Value {
    eventually("the status to be readable", || async {
        let r = get(host, "/updates/status").await;
        match r.status {
            423 => None,
            200 => Some(r.json().unwrap()),
            other => panic!("unexpected status {other}: {}", r.text()),
        }
    })
    .await
}

/// Sends `cmd`, expects 204, and returns the status once it finished.
pub async fn run(host: &HostSim, cmd: CommandKind) -> Value {
    let r = action(host, cmd).await;
    assert_eq!(r.status, 204, "{cmd:?}: {}", r.text());
    settled_status(host).await
}

/// Walks a fresh host to `Staged` (refresh, prepare) or `Ready` (+ activate).
pub async fn walk(host: &HostSim, to_ready: bool) -> Value {
    run(host, CommandKind::Refresh).await;
    let mut s = run(host, CommandKind::Prepare).await;
    if to_ready {
        s = run(host, CommandKind::Activate).await;
    }
    s
}

/// The fields of the last command.
pub fn last_command(status: &Value) -> (&str, &str, i64, &str) {
    let c = &status["most_recent_command"];
    (
        c["cmd_type"].as_str().unwrap(),
        c["cmd_status"].as_str().unwrap(),
        c["exit_status"].as_i64().unwrap(),
        c["stderr"].as_str().unwrap(),
    )
}
