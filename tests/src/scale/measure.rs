//! What the scale benchmark measures besides the timeline: resource use of
//! the leader and authproxy processes, and slot re-grant latency (a slot's
//! release seen → the next grant of that slot written), both from outside
//! the components.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::harness::process::{cpu_seconds, rss_kib};

/// Peak RSS and CPU time of some processes, sampled every 200 ms.
#[derive(Debug)]
pub struct ProcSampler {
    peaks: Arc<Mutex<BTreeMap<String, (u64, f64)>>>,
    task: JoinHandle<()>,
}

impl ProcSampler {
    pub fn start(pids: Vec<(String, u32)>) -> ProcSampler {
        let peaks = Arc::new(Mutex::new(BTreeMap::new()));
        let p = peaks.clone();
        let task = tokio::spawn(async move {
            loop {
                for (name, pid) in &pids {
                    let (Some(rss), Some(cpu)) = (rss_kib(*pid), cpu_seconds(*pid)) else { continue };
                    let mut g = p.lock().unwrap_or_else(|e| e.into_inner());
                    let e = g.entry(name.clone()).or_insert((0, 0.0));
                    e.0 = e.0.max(rss);
                    e.1 = cpu;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        ProcSampler { peaks, task }
    }

    /// name → (peak RSS KiB, CPU seconds so far).
    pub fn read(&self) -> BTreeMap<String, (u64, f64)> {
        self.peaks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for ProcSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Each slot's holders over time: slot → (seen at, holder).
type Holders = Arc<Mutex<BTreeMap<String, Vec<(Instant, Option<String>)>>>>;

/// Records each slot's holder changes with the time they were seen.
#[derive(Debug)]
pub struct RegrantRecorder {
    changes: Holders,
    task: JoinHandle<()>,
    /// Set once the slot watch delivered its first list.
    listed: tokio::sync::watch::Receiver<bool>,
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(mut ms: Vec<f64>) -> Percentiles {
        if ms.is_empty() {
            return Percentiles::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
        Percentiles { count: ms.len(), p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

impl RegrantRecorder {
    pub fn start(client: &kube::Client, namespace: &str) -> RegrantRecorder {
        let changes: Holders = Arc::default();
        let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let c = changes.clone();
        let (listed_tx, listed) = tokio::sync::watch::channel(false);
        let cfg = watcher::Config::default().labels(&format!("{}=true", model::names::SLOT_LABEL));
        let task = tokio::spawn(async move {
            let mut s = watcher::watcher(leases, cfg).default_backoff().boxed();
            while let Some(ev) = s.next().await {
                if matches!(ev, Ok(Event::InitDone)) {
                    listed_tx.send_replace(true);
                }
                let (Ok(Event::Apply(l)) | Ok(Event::InitApply(l))) = ev else { continue };
                let name = l.metadata.name.clone().unwrap_or_default();
                let holder = l.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty());
                let mut g = c.lock().unwrap_or_else(|e| e.into_inner());
                let row = g.entry(name).or_default();
                if row.last().is_none_or(|(_, h)| *h != holder) {
                    row.push((Instant::now(), holder));
                }
            }
        });
        RegrantRecorder { changes, task, listed }
    }

    /// Waits until the slot watch delivered its first list.
    pub async fn listed(&self, within: Duration) -> anyhow::Result<()> {
        let mut rx = self.listed.clone();
        tokio::time::timeout(within, rx.wait_for(|l| *l))
            .await
            .map_err(|_| anyhow::anyhow!("the slot watch did not list within {within:?}"))?
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("the slot watch stopped"))
    }

    /// Releases that were followed by a grant, only from `after` on.
    pub fn latencies_after(&self, after: Instant) -> Percentiles {
        let g = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let mut ms = Vec::new();
        for row in g.values() {
            for pair in row.windows(2) {
                if let ((released, None), (granted, Some(_))) = (&pair[0], &pair[1])
                    && *released >= after
                    && pair_is_a_release(row, released)
                {
                    ms.push(granted.duration_since(*released).as_secs_f64() * 1000.0);
                }
            }
        }
        Percentiles::of(ms)
    }
}

/// Whether the `None` at `at` follows a held state (a release, not a new slot).
fn pair_is_a_release(row: &[(Instant, Option<String>)], at: &Instant) -> bool {
    row.windows(2).any(|w| w[1].0 == *at && w[0].1.is_some())
}

impl Drop for RegrantRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
