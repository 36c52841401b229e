//! A real Prometheus for tests (the Debian package `prometheus`, which also
//! ships `promtool`): a child process on a loopback port, its storage in a
//! temporary directory, killed on drop; and [`Alarm`], a metrics endpoint
//! whose one value a test switches between 0 and 1.
//!
//! A missing binary skips the test loudly outside CI and fails it in CI
//! (`CI=true`): `.ci/run` installs the package.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::process::{Proc, Spec, free_port};
use super::wait::try_wait_for;

/// The path of `name` (`prometheus`, `promtool`) on `PATH`. Absent: `None`
/// after a loud message naming `test`, unless in CI, where it panics.
pub fn tool(name: &str, test: &str) -> Option<PathBuf> {
    let found =
        std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|dir| dir.join(name)).find(|p| p.is_file());
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "{test}: `{name}` is not installed, and CI needs it (apt-get install -y prometheus)");
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {test}: `{name}` is not on PATH (apt-get install -y prometheus). ***\n*** CI (CI=true) fails instead of skipping. ***\n"
        );
    }
    found
}

/// The alarm's metric, as Prometheus scrapes it.
pub const ALARM_METRIC: &str = "brupop_test_alarm";

/// A `/metrics` endpoint serving `brupop_test_alarm 0` or `1`.
#[derive(Debug)]
pub struct Alarm {
    addr: SocketAddr,
    on: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Alarm {
    pub async fn start() -> std::io::Result<Alarm> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let on = Arc::new(AtomicBool::new(false));
        let value = on.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let v = u8::from(value.load(Ordering::SeqCst));
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = conn.read(&mut buf).await;
                    let body = format!("# TYPE {ALARM_METRIC} gauge\n{ALARM_METRIC} {v}\n");
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(format!("{head}{body}").as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(Alarm { addr, on, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Prometheus process scraping one target and evaluating one rule file,
/// both every `interval`.
#[derive(Debug)]
pub struct Prometheus {
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `binary` scraping `target` with the rule groups `rules`
    /// (YAML), and waits until it is ready.
    pub async fn start(
        binary: &Path,
        target: SocketAddr,
        rules: &str,
        interval: Duration,
    ) -> anyhow::Result<Prometheus> {
        let dir = tempfile::Builder::new().prefix("brupop-prometheus-").tempdir()?;
        let every = format!("{}ms", interval.as_millis().max(1));
        std::fs::write(dir.path().join("rules.yml"), rules)?;
        let config = format!(
            "global:\n  scrape_interval: {every}\n  scrape_timeout: {every}\n  evaluation_interval: {every}\n\
             rule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config)?;
        let port = free_port();
        let args = vec![
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_owned(),
        ];
        let spec = Spec { name: "prometheus".into(), program: binary.to_owned(), args, env: vec![] };
        let mut proc = Proc::spawn(spec, dir.path())?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        let waited = try_wait_for(Duration::from_secs(60), &mut || {
            let (client, ready) = (client.clone(), ready.clone());
            let running = proc.is_running();
            async move {
                if !running {
                    return Err("exited".to_owned());
                }
                match client.get(&ready).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("{}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        if let Err(last) = waited {
            anyhow::bail!("prometheus did not become ready ({last}):\n{}", proc.log_tail(20));
        }
        Ok(Prometheus { proc, port, _dir: dir })
    }

    /// The base URL of its HTTP API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The names of the alerts firing now (`/api/v1/alerts`).
    pub async fn firing(&self) -> Result<Vec<String>, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().map_err(|e| e.to_string())?;
        let answer: serde_json::Value = client
            .get(format!("{}/api/v1/alerts", self.url()))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let alerts = answer["data"]["alerts"].as_array().cloned().unwrap_or_default();
        Ok(alerts
            .iter()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
            .collect())
    }

    /// Its log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}
