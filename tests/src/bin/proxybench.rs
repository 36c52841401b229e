//! Authproxy throughput and latency, as a fleet of agents meets it.
//!
//! The real authproxy process runs against the in-process Kubernetes API
//! simulator. Each simulated agent has its own node, its own pod-bound token
//! of the authproxy's audience, its own HTTPS connection with the agents'
//! client certificate, and one request in flight at a time (as a real agent).
//! After a warm-up (one TokenReview per agent fills the token cache), each
//! endpoint is driven for `--duration` twice: at a fixed offered load
//! (`--rate` requests/s in all, spread evenly over the agents, latency
//! counted from when each request was due so a slow answer cannot hide the
//! ones queued behind it), then as fast as the agents can go (the most the
//! machine serves; latency there is mostly queueing). The endpoints: slot
//! renewals (each a checked Lease update) and status reports (each a read of
//! the shadow, and a status write when it changed). Printed and written as
//! JSON: requests/s, latency p50/p99/max, errors, TokenReviews, and the CPU
//! time of the authproxy per request, next to that of this process (the API
//! simulator and the clients), so their shares are visible.
//!
//!     cargo run --release -p tests --bin proxybench -- --agents 200 --duration 10s
//!
//! With `--idle`, it measures instead what an idle agent connection costs
//! the authproxy: every agent sends one status report and keeps its
//! connection open; the authproxy's RSS before and after, divided by the
//! agents, is the cost per idle agent (its connection, TLS state, buffers
//! and cached token check). It then waits for `--idle-timeout` to close them.
//!
//!     cargo run --release -p tests --bin proxybench -- --agents 2000 --idle

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use model::names;
use serde::Serialize;
use serde_json::json;
use tests::harness::fleet::{AGENT_SA, AUDIENCE, agent_tls, token};
use tests::harness::netproxy::node_address;
use tests::harness::process::{cpu_seconds, rss_kib};
use tests::harness::tlsclient::client_from;
use tests::harness::{Fleet, FleetOptions, scrape};
use tests::scale::measure::Percentiles;

fn duration(s: &str) -> Result<Duration, String> {
    model::parse::duration(s).map_err(|e| e.to_string())
}

#[derive(Parser, Debug)]
#[command(name = "proxybench", about = "Drives the authproxy with many concurrent agents over mTLS")]
struct Args {
    /// Concurrent agents (one node, token and connection each).
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// How long each endpoint is driven, per load.
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// The fixed offered load, requests/s over all agents.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Directory for the JSON results.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Measure the memory per idle agent connection instead of throughput.
    #[arg(long)]
    idle: bool,
}

/// What idle agents cost the authproxy.
#[derive(Debug, Clone, Serialize)]
struct IdleFigures {
    agents: usize,
    connections_open: f64,
    rss_before_kib: u64,
    rss_with_idle_kib: u64,
    kib_per_idle_agent: f64,
    /// After the idle timeout: connections still open, and RSS.
    connections_after_idle_timeout: f64,
    rss_after_idle_timeout_kib: u64,
}

async fn gauge(admin: u16, name: &str) -> f64 {
    let text = scrape(admin).await.unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// RSS of `pid` once it stops growing (sampled every 200 ms, at most 5 s).
async fn settled_rss(pid: u32) -> u64 {
    let mut last = rss_kib(pid).unwrap_or(0);
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = rss_kib(pid).unwrap_or(0);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

async fn idle(fleet: &Fleet, agents: &[Arc<Agent>]) -> anyhow::Result<IdleFigures> {
    let base = format!("https://{}", fleet.authproxy_addr);
    let pid = fleet.authproxy.lock().unwrap_or_else(|e| e.into_inner()).pid().expect("the authproxy runs");
    // The authproxy has started when the first agent is answered.
    let until = Instant::now() + Duration::from_secs(60);
    while !matches!(agents[0].request(&base, "report_status").send().await, Ok(r) if r.status().is_success()) {
        if Instant::now() > until {
            let log = fleet.authproxy.lock().unwrap_or_else(|e| e.into_inner()).log_tail(20);
            anyhow::bail!("the authproxy did not answer within 60s; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = settled_rss(pid).await;
    let sent = futures::future::join_all(agents.iter().map(|a| {
        let base = base.clone();
        async move {
            match a.request(&base, "report_status").send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                Ok(r) => {
                    eprintln!("proxybench: {} answered {}", a.node, r.status());
                    false
                }
                Err(e) => {
                    eprintln!("proxybench: {}: {e:?}", a.node);
                    false
                }
            }
        }
    }))
    .await;
    let ok = sent.iter().filter(|s| **s).count();
    anyhow::ensure!(ok == agents.len(), "only {ok} of {} agents were answered", agents.len());
    let with_idle = settled_rss(pid).await;
    let open = gauge(fleet.authproxy_admin, "brupop_authproxy_connections").await;
    eprintln!("proxybench: {open} connections open; waiting for the idle timeout (30s) to close them");
    let until = Instant::now() + Duration::from_secs(60);
    while gauge(fleet.authproxy_admin, "brupop_authproxy_connections").await > 0.0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(IdleFigures {
        agents: agents.len(),
        connections_open: open,
        rss_before_kib: before,
        rss_with_idle_kib: with_idle,
        kib_per_idle_agent: with_idle.saturating_sub(before) as f64 / agents.len() as f64,
        connections_after_idle_timeout: gauge(fleet.authproxy_admin, "brupop_authproxy_connections").await,
        rss_after_idle_timeout_kib: settled_rss(pid).await,
    })
}

/// One endpoint's figures.
#[derive(Debug, Clone, Serialize)]
struct Figures {
    endpoint: String,
    /// Offered requests/s (`None`: as fast as the agents can go).
    offered_per_s: Option<f64>,
    requests: usize,
    errors: usize,
    requests_per_s: f64,
    latency: Percentiles,
    token_reviews: f64,
    authproxy_cpu_ms_per_request: f64,
    /// Cores the authproxy kept busy (CPU seconds / wall seconds).
    authproxy_cores: f64,
    /// This process: the API simulator and the clients.
    simulator_and_clients_cores: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Results {
    agents: usize,
    duration_s: f64,
    endpoints: Vec<Figures>,
}

/// One agent: its node, token and connection.
struct Agent {
    node: String,
    slot: String,
    token: String,
    http: reqwest::Client,
}

impl Agent {
    fn request(&self, base: &str, endpoint: &str) -> reqwest::RequestBuilder {
        let (path, body) = match endpoint {
            "renew_slot" => ("slot/renew", json!({"slot": self.slot, "durationSeconds": 300})),
            _ => ("status", json!({"state": "Idle", "currentVersion": "1.20.0", "targetVersion": "1.21.0"})),
        };
        self.http
            .post(format!("{base}/v1/nodes/{}/{path}", self.node))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
    }
}

fn own_cpu() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

async fn token_reviews(admin: u16) -> f64 {
    let text = scrape(admin).await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("brupop_authproxy_tokenreviews_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Drives `endpoint` from every agent for `d`, at `rate` requests/s in all
/// or as fast as they go; returns its figures.
async fn drive(fleet: &Fleet, agents: &[Arc<Agent>], endpoint: &str, d: Duration, rate: Option<f64>) -> Figures {
    let base = format!("https://{}", fleet.authproxy_addr);
    let pid = fleet.authproxy.lock().unwrap_or_else(|e| e.into_inner()).pid().expect("the authproxy runs");
    let reviews_before = token_reviews(fleet.authproxy_admin).await;
    let (proxy_before, own_before) = (cpu_seconds(pid).unwrap_or(0.0), own_cpu());
    let started = Instant::now();
    let until = started + d;
    // Each agent's period at the offered load; agents start evenly staggered.
    let period = rate.map(|r| Duration::from_secs_f64(agents.len() as f64 / r.max(0.001)));
    let n = agents.len() as u32;
    let tasks: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (a, base, endpoint) = (a.clone(), base.clone(), endpoint.to_owned());
            let mut due = period.map(|p| started + p * u32::try_from(i).unwrap_or(0) / n);
            tokio::spawn(async move {
                let (mut ms, mut errors) = (Vec::new(), 0usize);
                while Instant::now() < until {
                    let t = match (due.as_mut(), period) {
                        (Some(due), Some(p)) => {
                            let t = *due;
                            tokio::time::sleep_until(t.into()).await;
                            *due += p;
                            if t >= until {
                                break;
                            }
                            t
                        }
                        _ => Instant::now(),
                    };
                    match a.request(&base, &endpoint).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ms.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                        Ok(r) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!(
                                    "proxybench: {endpoint} answered {}: {}",
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                );
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("proxybench: {endpoint} failed: {e}");
                            }
                        }
                    }
                }
                (ms, errors)
            })
        })
        .collect();
    let (mut ms, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (m, e) = t.await.expect("agent task");
        ms.extend(m);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    let proxy_cpu = cpu_seconds(pid).unwrap_or(0.0) - proxy_before;
    let own = own_cpu() - own_before;
    let requests = ms.len();
    Figures {
        endpoint: endpoint.to_owned(),
        offered_per_s: rate,
        requests,
        errors,
        requests_per_s: requests as f64 / wall,
        latency: Percentiles::of(ms),
        token_reviews: token_reviews(fleet.authproxy_admin).await - reviews_before,
        authproxy_cpu_ms_per_request: proxy_cpu * 1000.0 / requests.max(1) as f64,
        authproxy_cores: proxy_cpu / wall,
        simulator_and_clients_cores: own / wall,
    }
}

async fn run(args: Args) -> anyhow::Result<Results> {
    anyhow::ensure!(args.agents > 0, "--agents must be at least 1");
    eprintln!("proxybench: starting the authproxy and {} nodes", args.agents);
    let opts = FleetOptions {
        nodes: args.agents,
        agents: false,
        leaders: 0,
        pods_per_node: 0,
        // Every agent sends as fast as it can: the per-node limit would
        // measure itself, not the proxy.
        authproxy_args: vec![("rate-limit".into(), "1000000".into())],
        ..Default::default()
    };
    let fleet = Fleet::start("proxybench", opts).await?;
    let tls = agent_tls(&fleet);
    let leases: Api<Lease> = Api::namespaced(fleet.client().clone(), &fleet.ns);
    let mut agents = Vec::with_capacity(args.agents);
    for (i, node) in fleet.nodes.iter().enumerate() {
        // The slot this node holds, as the leader would have granted it.
        let slot = names::slot_name(i as u32);
        let now = jiff::Timestamp::now().to_string();
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": slot, "namespace": fleet.ns, "labels": {names::SLOT_LABEL: "true"}},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 300, "acquireTime": now, "renewTime": now},
        }))?;
        leases.create(&PostParams::default(), &lease).await?;
        let pod = format!("brupop-agent-{node}");
        let token = token(fleet.client(), &fleet.ns, AGENT_SA, Some(AUDIENCE), Some((&pod, &fleet.agent_pods[node])))
            .await
            .map_err(|e| anyhow::anyhow!("token for {node}: {e}"))?;
        agents.push(Arc::new(Agent {
            node: node.clone(),
            slot,
            token,
            http: client_from(&tls.ca(), Some(&tls), Some(node_address(i))),
        }));
    }
    if args.idle {
        let figures = idle(&fleet, &agents).await?;
        fleet.stop().await;
        println!(
            "\n== authproxy idle connections: {} agents ==\n{}",
            figures.agents,
            serde_json::to_string_pretty(&figures)?
        );
        std::fs::create_dir_all(&args.out)?;
        let path = args.out.join(format!("proxybench-idle-{}agents.json", figures.agents));
        std::fs::write(&path, serde_json::to_string_pretty(&figures)?)?;
        println!("results: {}", path.display());
        std::process::exit(0);
    }
    eprintln!("proxybench: warming up (TLS handshakes, one TokenReview per agent, shadows created)");
    let warm = drive(&fleet, &agents, "report_status", Duration::from_secs(2), None).await;
    anyhow::ensure!(warm.requests > 0, "no request succeeded during the warm-up");
    let mut endpoints = Vec::new();
    for endpoint in ["renew_slot", "report_status"] {
        for rate in [Some(args.rate), None] {
            let load = rate.map_or_else(|| "as fast as they go".to_owned(), |r| format!("{r:.0} req/s"));
            eprintln!("proxybench: driving {endpoint} at {load} for {:?}", args.duration);
            endpoints.push(drive(&fleet, &agents, endpoint, args.duration, rate).await);
        }
    }
    fleet.stop().await;
    Ok(Results { agents: args.agents, duration_s: args.duration.as_secs_f64(), endpoints })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let out = args.out.clone();
    let r = rt.block_on(run(args))?;
    println!("\n== authproxy benchmark: {} agents over mTLS, {:.0}s per endpoint ==", r.agents, r.duration_s);
    println!(
        "{:14} {:>8} {:>9} {:>7} {:>9} {:>9} {:>9} {:>7} {:>14} {:>10} {:>12}",
        "endpoint",
        "offered",
        "req/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "max ms",
        "TRs",
        "proxy CPU/req",
        "proxy CPU",
        "sim+clients"
    );
    for f in &r.endpoints {
        println!(
            "{:14} {:>8} {:>9.0} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>7.0} {:>11.3} ms {:>6.2} cores {:>6.2} cores",
            f.endpoint,
            f.offered_per_s.map_or_else(|| "max".to_owned(), |r| format!("{r:.0}")),
            f.requests_per_s,
            f.errors,
            f.latency.p50_ms,
            f.latency.p99_ms,
            f.latency.max_ms,
            f.token_reviews,
            f.authproxy_cpu_ms_per_request,
            f.authproxy_cores,
            f.simulator_and_clients_cores
        );
    }
    std::fs::create_dir_all(&out)?;
    let path = out.join(format!("proxybench-{}agents.json", r.agents));
    std::fs::write(&path, serde_json::to_string_pretty(&r)?)?;
    println!("results: {}", path.display());
    Ok(())
}
