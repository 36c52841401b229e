//! A rollout as a picture: records every node's state changes (from a watch
//! on the shadows) and the rollout's halts (from the UpdatePolicy), and draws
//! them as an SVG timeline, one row per node, coloured by state. The demo and
//! the scale benchmark both write it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use model::policy::Phase;
use model::{BottlerocketShadow, ShadowState, UpdatePolicy};
use tokio::task::JoinHandle;

/// What the picture distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    Idle,
    Waiting,
    Preparing,
    Staged,
    Rebooted,
    Monitoring,
    Failed,
    Updated,
}

impl Mark {
    fn colour(self) -> &'static str {
        match self {
            Mark::Idle => "#e8e8e8",
            Mark::Waiting => "#c9c9c9",
            Mark::Preparing => "#a0cbe8",
            Mark::Staged => "#4e79a7",
            Mark::Rebooted => "#b07aa1",
            Mark::Monitoring => "#76b7b2",
            Mark::Failed => "#e15759",
            Mark::Updated => "#59a14f",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mark::Idle => "idle",
            Mark::Waiting => "waiting for a slot",
            Mark::Preparing => "granted: staging the image",
            Mark::Staged => "staged, cordoned, draining, rebooting",
            Mark::Rebooted => "rebooted into the update",
            Mark::Monitoring => "monitoring",
            Mark::Failed => "failed (ErrorReset)",
            Mark::Updated => "updated",
        }
    }

    const ALL: [Mark; 8] = [
        Mark::Waiting,
        Mark::Preparing,
        Mark::Staged,
        Mark::Rebooted,
        Mark::Monitoring,
        Mark::Updated,
        Mark::Failed,
        Mark::Idle,
    ];
}

/// The mark of a shadow, given the release being rolled out.
pub fn mark(shadow: &BottlerocketShadow, release: &str) -> Mark {
    let Some(st) = shadow.status.as_ref() else { return Mark::Idle };
    match st.current_state {
        ShadowState::StagedAndPerformedUpdate => Mark::Staged,
        ShadowState::RebootedIntoUpdate => Mark::Rebooted,
        ShadowState::MonitoringUpdate => Mark::Monitoring,
        ShadowState::ErrorReset => Mark::Failed,
        ShadowState::Idle if st.current_version == release => Mark::Updated,
        ShadowState::Idle if shadow.spec.slot.is_some() => Mark::Preparing,
        ShadowState::Idle if st.slot_requested_at.is_some() => Mark::Waiting,
        ShadowState::Idle => Mark::Idle,
    }
}

#[derive(Debug, Default)]
struct Recorded {
    /// node → (seconds since start, mark), in order.
    nodes: BTreeMap<String, Vec<(f64, Mark)>>,
    /// (start, end) of halts, seconds since start.
    halts: Vec<(f64, Option<f64>)>,
}

/// Records a rollout from the moment it is started.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    release: String,
    rec: Arc<Mutex<Recorded>>,
    tasks: Vec<JoinHandle<()>>,
    /// How many of the two watches delivered their first list.
    listed: tokio::sync::watch::Receiver<usize>,
}

impl Timeline {
    /// Starts watching the shadows and the UpdatePolicy of `namespace`.
    pub fn start(client: &kube::Client, namespace: &str, release: &str) -> Timeline {
        let start = Instant::now();
        let rec = Arc::new(Mutex::new(Recorded::default()));
        let shadows: Api<BottlerocketShadow> = Api::namespaced(client.clone(), namespace);
        let (listed_tx, listed) = tokio::sync::watch::channel(0usize);
        let (r, rel, l) = (rec.clone(), release.to_owned(), listed_tx.clone());
        let t1 = tokio::spawn(async move {
            let mut s = watcher::watcher(shadows, watcher::Config::default()).default_backoff().boxed();
            while let Some(ev) = s.next().await {
                if matches!(ev, Ok(Event::InitDone)) {
                    l.send_modify(|n| *n += 1);
                }
                let (Ok(Event::Apply(sh)) | Ok(Event::InitApply(sh))) = ev else { continue };
                let Some(node) = sh.node_name().map(str::to_owned) else { continue };
                let m = mark(&sh, &rel);
                let t = start.elapsed().as_secs_f64();
                let mut g = r.lock().unwrap_or_else(|e| e.into_inner());
                let row = g.nodes.entry(node).or_default();
                if row.last().is_none_or(|(_, last)| *last != m) {
                    row.push((t, m));
                }
            }
        });
        let policies: Api<UpdatePolicy> = Api::namespaced(client.clone(), namespace);
        let r = rec.clone();
        let t2 = tokio::spawn(async move {
            let mut s = watcher::watcher(policies, watcher::Config::default()).default_backoff().boxed();
            while let Some(ev) = s.next().await {
                if matches!(ev, Ok(Event::InitDone)) {
                    listed_tx.send_modify(|n| *n += 1);
                }
                let (Ok(Event::Apply(p)) | Ok(Event::InitApply(p))) = ev else { continue };
                let halted = p.status.as_ref().is_some_and(|s| matches!(s.phase, Phase::Halted | Phase::Stopped));
                let t = start.elapsed().as_secs_f64();
                let mut g = r.lock().unwrap_or_else(|e| e.into_inner());
                match (halted, g.halts.last().is_some_and(|(_, end)| end.is_none())) {
                    (true, false) => g.halts.push((t, None)),
                    (false, true) => {
                        if let Some(last) = g.halts.last_mut() {
                            last.1 = Some(t);
                        }
                    }
                    _ => {}
                }
            }
        });
        Timeline { start, release: release.to_owned(), rec, tasks: vec![t1, t2], listed }
    }

    /// Waits until both watches delivered their first list: from then on no
    /// change is missed.
    pub async fn listed(&self, within: std::time::Duration) -> anyhow::Result<()> {
        let mut rx = self.listed.clone();
        tokio::time::timeout(within, rx.wait_for(|n| *n >= 2))
            .await
            .map_err(|_| anyhow::anyhow!("the timeline's watches did not list within {within:?}"))?
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("the timeline's watches stopped"))
    }

    /// Seconds since the recording started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// When each node reached `Updated` and how long its update took (first
    /// mark after waiting → updated), seconds since start.
    pub fn per_node(&self) -> BTreeMap<String, (Option<f64>, Option<f64>)> {
        let g = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        g.nodes
            .iter()
            .map(|(n, row)| {
                let began = row.iter().find(|(_, m)| matches!(m, Mark::Preparing | Mark::Staged)).map(|(t, _)| *t);
                let done = row.iter().find(|(_, m)| *m == Mark::Updated).map(|(t, _)| *t);
                (n.clone(), (done, began.zip(done).map(|(b, d)| d - b)))
            })
            .collect()
    }

    /// The picture. Rows are sorted by when each node started updating.
    pub fn svg(&self, title: &str) -> String {
        let g = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        let end = self.elapsed().max(0.001);
        let mut rows: Vec<(&String, &Vec<(f64, Mark)>)> = g.nodes.iter().collect();
        let first_work = |row: &Vec<(f64, Mark)>| {
            row.iter()
                .find(|(_, m)| matches!(m, Mark::Preparing | Mark::Staged | Mark::Updated | Mark::Failed))
                .map_or(f64::MAX, |(t, _)| *t)
        };
        rows.sort_by(|a, b| first_work(a.1).total_cmp(&first_work(b.1)).then(a.0.cmp(b.0)));
        let row_h = if rows.len() > 400 {
            1.0
        } else if rows.len() > 100 {
            3.0
        } else {
            12.0
        };
        let (left, top, width) = (if row_h >= 12.0 { 110.0 } else { 20.0 }, 50.0, 1000.0);
        let height = top + rows.len() as f64 * row_h + 60.0;
        let x = |t: f64| left + t / end * width;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height:.0}" font-family="sans-serif" font-size="11">"#,
            left + width + 20.0
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(s, r#"<text x="{left}" y="20" font-size="14">{}</text>"#, escape(title));
        for (a, b) in &g.halts {
            let b = b.unwrap_or(end);
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="#e15759" fill-opacity="0.15"><title>halted {a:.1}s-{b:.1}s</title></rect>"##,
                x(*a),
                (x(b) - x(*a)).max(1.0),
                rows.len() as f64 * row_h
            );
        }
        for (i, (node, row)) in rows.iter().enumerate() {
            let y = top + i as f64 * row_h;
            if row_h >= 12.0 {
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                    left - 4.0,
                    y + row_h - 3.0,
                    escape(node)
                );
            }
            for (j, (t, m)) in row.iter().enumerate() {
                let t_end = row.get(j + 1).map_or(end, |(n, _)| *n);
                if *m == Mark::Idle {
                    continue;
                }
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.2}" y="{y:.1}" width="{:.2}" height="{:.1}" fill="{}"><title>{} {}: {t:.2}s-{t_end:.2}s</title></rect>"#,
                    x(*t),
                    (x(t_end) - x(*t)).max(0.5),
                    (row_h - if row_h >= 3.0 { 1.0 } else { 0.0 }).max(1.0),
                    m.colour(),
                    escape(node),
                    m.label()
                );
            }
        }
        let axis_y = top + rows.len() as f64 * row_h + 14.0;
        for k in 0..=10 {
            let t = end * f64::from(k) / 10.0;
            let _ = writeln!(s, r#"<text x="{:.1}" y="{axis_y:.1}" text-anchor="middle">{t:.1}s</text>"#, x(t));
        }
        let mut lx = left;
        for m in Mark::ALL.iter().filter(|m| **m != Mark::Idle) {
            let _ = writeln!(
                s,
                r#"<rect x="{lx:.0}" y="{:.0}" width="10" height="10" fill="{}"/>"#,
                axis_y + 12.0,
                m.colour()
            );
            let _ = writeln!(s, r#"<text x="{:.0}" y="{:.0}">{}</text>"#, lx + 14.0, axis_y + 21.0, m.label());
            lx += 14.0 + 6.5 * m.label().len() as f64 + 16.0;
        }
        let _ = writeln!(
            s,
            r##"<rect x="{lx:.0}" y="{:.0}" width="10" height="10" fill="#e15759" fill-opacity="0.3"/><text x="{:.0}" y="{:.0}">halted</text>"##,
            axis_y + 12.0,
            lx + 14.0,
            axis_y + 21.0
        );
        s.push_str("</svg>\n");
        s
    }

    /// Mean seconds a node spent in each mark, over the nodes that reached it.
    pub fn mean_seconds(&self) -> BTreeMap<String, f64> {
        let g = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        let end = self.elapsed();
        let mut sums: BTreeMap<Mark, (f64, u32)> = BTreeMap::new();
        for row in g.nodes.values() {
            for (j, (t, m)) in row.iter().enumerate() {
                let next = row.get(j + 1).map_or(end, |(n, _)| *n);
                if matches!(m, Mark::Idle | Mark::Updated) {
                    continue;
                }
                let e = sums.entry(*m).or_insert((0.0, 0));
                e.0 += next - t;
                e.1 += 1;
            }
        }
        sums.into_iter().map(|(m, (total, n))| (m.label().to_owned(), total / f64::from(n.max(1)))).collect()
    }

    /// When the last node reached `Updated`, seconds since start.
    pub fn last_update(&self) -> Option<f64> {
        self.per_node().values().filter_map(|(done, _)| *done).fold(None, |a, b| Some(a.map_or(b, |a: f64| a.max(b))))
    }

    /// The release this timeline marks as `Updated`.
    pub fn release(&self) -> &str {
        &self.release
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
