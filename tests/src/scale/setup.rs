//! The benchmark's cluster: API simulator, nodes, pods, hosts, certificates,
//! tokens, and the component processes (leader, authproxy, agent fleet).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

use super::Args;
use super::fleetchild::{AgentSpec, FleetSpec, HostsSpec};
use crate::apisim::{ApiSim, SimOptions};
use crate::harness::bins::binaries;
use crate::harness::certs::TestPki;
use crate::harness::fleet::{AGENT_SA, AUDIENCE, token};
use crate::harness::kubelet;
use crate::harness::process::{Proc, Spec, free_port};
use crate::hostsim::Timings;

pub const RELEASE: &str = "1.21.0";
const RUNNING: &str = "1.20.0";
const CONCURRENCY: usize = 32;

/// The running benchmark cluster; dropping it stops everything.
pub struct Env {
    pub sim: ApiSim,
    pub client: kube::Client,
    pub ns: String,
    /// Written to publish a release to every host (the fleet processes watch it).
    release_file: PathBuf,
    leader: Proc,
    authproxy: Proc,
    authproxy_admin: u16,
    fleets: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("ns", &self.ns).finish_non_exhaustive()
    }
}

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v)?)
}

async fn each<F, Fut>(n: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    stream::iter(0..n).map(&f).buffer_unordered(CONCURRENCY).try_collect::<Vec<()>>().await?;
    Ok(())
}

fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

impl Env {
    pub async fn start(args: &Args) -> anyhow::Result<Env> {
        let bins = binaries().clone();
        let dir = tempfile::Builder::new().prefix("brupop-scale-").tempdir()?;
        let path = dir.path().to_owned();
        let sim = ApiSim::start_with(SimOptions { worker_threads: 1, ..SimOptions::default() }).await?;
        let mut cfg = sim.client_config(&sim.admin_token());
        cfg.default_retry = false;
        let client = kube::Client::try_from(cfg)?;
        let ns = model::names::DEFAULT_NAMESPACE.to_owned();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &obj(json!({"metadata": {"name": ns}}))?)
            .await?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in model::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(&name, &PatchParams::apply("scale").force(), &Patch::Apply(&crd)).await?;
            await_condition(crds.clone(), &name, conditions::is_crd_established()).await?;
        }
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        for sa in [AGENT_SA, "brupop-leader", "brupop-authproxy"] {
            sas.create(&PostParams::default(), &obj(json!({"metadata": {"name": sa}}))?).await?;
        }
        eprintln!("scale: creating {} nodes, their pods and hosts", args.nodes);
        let nodes: Api<Node> = Api::all(client.clone());
        let label = json!({ model::names::NODE_OPT_IN_LABEL: model::names::NODE_OPT_IN_VALUE });
        each(args.nodes, |i| {
            let (nodes, client, label) = (nodes.clone(), client.clone(), label.clone());
            async move {
                nodes
                    .create(&PostParams::default(), &obj(json!({"metadata": {"name": node_name(i), "labels": label}}))?)
                    .await?;
                kubelet::set_node_ready(&client, &node_name(i), true).await?;
                Ok(())
            }
        })
        .await?;
        let t = args.node_time;
        let timings = Timings {
            refresh: Duration::from_millis(1),
            prepare: t.mul_f64(0.4),
            activate: Duration::from_millis(1),
            deactivate: Duration::from_millis(1),
            reboot_downtime: t.mul_f64(0.4),
            status_read_hold: Duration::ZERO,
        };
        let names: Vec<String> = (0..args.nodes).map(node_name).collect();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let owner = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "brupop-agent", "uid": "00000000-0000-0000-0000-00000000da00", "controller": true}]);
        let uids = std::sync::Mutex::new(vec![String::new(); args.nodes]);
        each(args.nodes, |i| {
            let (pods, client, ns, owner, uids) = (pods.clone(), client.clone(), ns.clone(), owner.clone(), &uids);
            let per_node = args.pods_per_node;
            async move {
                let n = node_name(i);
                let agent: Pod = obj(json!({
                    "metadata": {"name": format!("brupop-agent-{n}"), "labels": {"app": "brupop-agent"}, "ownerReferences": owner},
                    "spec": {"nodeName": n, "serviceAccountName": AGENT_SA, "containers": [{"name": "agent", "image": "agent"}]},
                }))?;
                let created = pods.create(&PostParams::default(), &agent).await?;
                uids.lock().unwrap_or_else(|e| e.into_inner())[i] = created.metadata.uid.unwrap_or_default();
                kubelet::set_pod_ready(&client, &ns, &format!("brupop-agent-{n}"), true).await?;
                for j in 0..per_node {
                    let name = format!("web-{n}-{j}");
                    let pod: Pod = obj(json!({
                        "metadata": {"name": name, "labels": {"app": "web"}},
                        "spec": {"nodeName": n, "terminationGracePeriodSeconds": 0, "containers": [{"name": "web", "image": "web"}]},
                    }))?;
                    pods.create(&PostParams::default(), &pod).await?;
                    kubelet::set_pod_ready(&client, &ns, &name, true).await?;
                }
                Ok(())
            }
        })
        .await?;
        let uids = uids.into_inner().unwrap_or_else(|e| e.into_inner());
        // The kubelet's part: evicted pods go (after a short grace), reboots restart nothing
        // here (the fleet-mode agents survive a host's reboot; they only lose their host socket).
        let _kubelet = kubelet::finish_terminating_pods(client.clone(), ns.clone(), Duration::from_millis(20));
        eprintln!("scale: issuing certificates and tokens");
        let pki = TestPki::new(&path.join("pki"))?;
        let server = pki.server("authproxy")?;
        let mut agents = Vec::with_capacity(args.nodes);
        for (i, n) in names.iter().enumerate() {
            let tls = pki.client(&format!("agent-{n}"))?;
            agents.push((n.clone(), tls.dir.clone(), uids[i].clone()));
        }
        let specs = std::sync::Mutex::new(Vec::with_capacity(args.nodes));
        each(args.nodes, |i| {
            let (client, ns, specs, path) = (client.clone(), ns.clone(), &specs, path.clone());
            let (n, tls_dir, uid) = agents[i].clone();
            async move {
                let pod = format!("brupop-agent-{n}");
                let api_token = token(&client, &ns, AGENT_SA, None, Some((&pod, &uid))).await?;
                let proxy_token = token(&client, &ns, AGENT_SA, Some(AUDIENCE), Some((&pod, &uid))).await?;
                let token_file = path.join(format!("token-{n}"));
                std::fs::write(&token_file, proxy_token)?;
                specs.lock().unwrap_or_else(|e| e.into_inner()).push(AgentSpec {
                    node: n,
                    api_token,
                    tls_dir,
                    token_file,
                });
                Ok(())
            }
        })
        .await?;
        let mut agent_specs = specs.into_inner().unwrap_or_else(|e| e.into_inner());
        agent_specs.sort_by(|a, b| a.node.cmp(&b.node));
        // The components.
        let kc = |who: &str, tok: &str| -> anyhow::Result<PathBuf> {
            let p = path.join(format!("kubeconfig-{who}"));
            sim.write_kubeconfig(&p, tok)?;
            Ok(p)
        };
        let ap_port = free_port();
        let ap_admin = free_port();
        let ap_token = token(&client, &ns, "brupop-authproxy", None, None).await?;
        let authproxy = Proc::spawn(
            Spec {
                name: "authproxy".into(),
                program: bins.authproxy.clone(),
                args: vec![
                    format!("--listen=127.0.0.1:{ap_port}"),
                    format!("--admin-listen=127.0.0.1:{ap_admin}"),
                    format!("--tls-cert={}", server.cert().display()),
                    format!("--tls-key={}", server.key().display()),
                    format!("--client-ca={}", server.ca().display()),
                    format!("--namespace={ns}"),
                    format!("--token-audience={AUDIENCE}"),
                    "--token-cache-ttl=10m".into(),
                    "--rate-limit=1000".into(),
                    // The agents of a fleet process share one loopback
                    // source address (real agent pods each have their own):
                    // the per-peer limits would see one peer of thousands.
                    "--max-connections=100000".into(),
                    "--max-connections-per-peer=100000".into(),
                    "--peer-rate-limit=1000000".into(),
                ],
                env: vec![("KUBECONFIG".into(), kc("authproxy", &ap_token)?.display().to_string())],
            },
            &path,
        )?;
        let leader_token = token(&client, &ns, "brupop-leader", None, None).await?;
        let leader = Proc::spawn(
            Spec {
                name: "leader".into(),
                program: bins.leader.clone(),
                args: vec![
                    format!("--namespace={ns}"),
                    format!("--max-concurrent-updates={}", args.slots),
                    format!("--admin-listen=127.0.0.1:{}", free_port()),
                ],
                env: vec![("KUBECONFIG".into(), kc("leader", &leader_token)?.display().to_string())],
            },
            &path,
        )?;
        // The agents, with their hosts, in as many processes as the
        // descriptor limit needs (about 2,000 agents each).
        let release_file = path.join("release");
        let processes = args.nodes.div_ceil(2000).max(1);
        let per_process = args.nodes.div_ceil(processes);
        let mut fleets = Vec::new();
        for (k, chunk) in agent_specs.chunks(per_process).enumerate() {
            let fleet_spec = FleetSpec {
                kubeconfig: kc("fleet", "unused")?,
                namespace: ns.clone(),
                authproxy_url: format!("https://127.0.0.1:{ap_port}"),
                args: vec![
                    ("update-check-interval".into(), format!("{}ms", args.update_check.as_millis())),
                    ("health-minimum".into(), format!("{}ms", t.mul_f64(0.2).as_millis().max(1))),
                    ("drain-interval".into(), "200ms".into()),
                    // A node's host work here is T; a real node's is about
                    // 5 minutes: look at host commands as a real agent
                    // would at that scale (1s and 5s shipped), so the host
                    // requests per update are a real node's.
                    ("host-poll-min".into(), format!("{}us", (t / 300).as_micros().max(1))),
                    ("host-poll-max".into(), format!("{}us", (t / 60).as_micros().max(1))),
                    ("admin-listen".into(), "127.0.0.1:0".into()),
                    ("log-format".into(), "text".into()),
                ],
                hosts: HostsSpec {
                    running: RUNNING.into(),
                    timings,
                    release_file: release_file.clone(),
                    requests_file: path.join(format!("fleet-{k}-host-requests.json")),
                },
                agents: chunk.to_vec(),
            };
            let spec_file = path.join(format!("fleet-{k}.json"));
            std::fs::write(&spec_file, serde_json::to_vec(&fleet_spec)?)?;
            fleets.push(Proc::spawn(
                Spec {
                    name: format!("fleet-{k}"),
                    program: std::env::current_exe()?,
                    args: vec!["--fleet-child".into(), spec_file.display().to_string()],
                    env: vec![("RUST_LOG".into(), args.agent_log.clone())],
                },
                &path,
            )?);
        }
        let env =
            Env { sim, client, ns, release_file, leader, authproxy, authproxy_admin: ap_admin, fleets, _dir: dir };
        env.wait_reported(args.nodes).await?;
        Ok(env)
    }

    /// Waits until every agent reported its status once.
    async fn wait_reported(&self, n: usize) -> anyhow::Result<()> {
        let shadows: Api<model::BottlerocketShadow> = Api::namespaced(self.client.clone(), &self.ns);
        let deadline = std::time::Instant::now() + Duration::from_secs(120) + Duration::from_millis(60 * n as u64);
        loop {
            let reported = shadows.list(&Default::default()).await?.items.iter().filter(|s| s.status.is_some()).count();
            if reported >= n {
                return Ok(());
            }
            let logs: Vec<String> = self.fleets.iter().map(|f| f.log_path().display().to_string()).collect();
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "only {reported}/{n} agents reported; see {}",
                logs.join(", ")
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Copies the logs of the leader, the authproxy and the agent fleets to
    /// `out/<stem>-<name>.log` (best effort: the results matter more).
    pub fn copy_logs(&self, out: &std::path::Path, stem: &str) {
        let procs = [("leader".to_owned(), &self.leader), ("authproxy".to_owned(), &self.authproxy)];
        let fleets = self.fleets.iter().enumerate().map(|(k, f)| (format!("fleet-{k}"), f));
        for (name, p) in procs.into_iter().chain(fleets) {
            if let Err(e) = std::fs::copy(p.log_path(), out.join(format!("{stem}-{name}.log"))) {
                eprintln!("scale: could not keep the {name} log: {e}");
            }
        }
    }

    /// API requests the hosts answered so far (their processes write the
    /// counts every 100 ms).
    pub fn host_requests(&self) -> crate::hostsim::RequestCount {
        let dir = self.release_file.parent().map(std::path::Path::to_owned).unwrap_or_default();
        (0..self.fleets.len())
            .filter_map(|k| std::fs::read(dir.join(format!("fleet-{k}-host-requests.json"))).ok())
            .filter_map(|b| serde_json::from_slice::<crate::hostsim::RequestCount>(&b).ok())
            .fold(crate::hostsim::RequestCount::default(), |a, b| a + b)
    }

    /// The leader's and authproxy's pids, for the resource sampler.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, Option<u32>)> = vec![
            ("leader".into(), self.leader.pid()),
            ("authproxy".into(), self.authproxy.pid()),
            ("API simulator (this process)".into(), Some(std::process::id())),
        ];
        for (k, f) in self.fleets.iter().enumerate() {
            pids.push((format!("agents and hosts (fleet process {k})"), f.pid()));
        }
        pids.into_iter().filter_map(|(n, p)| p.map(|p| (n, p))).collect()
    }

    /// Publishes `version` to every host.
    pub fn publish(&self, version: &str) -> std::io::Result<()> {
        let tmp = self.release_file.with_extension("tmp");
        std::fs::write(&tmp, version)?;
        std::fs::rename(tmp, &self.release_file)
    }

    /// What the authproxy has served so far.
    pub async fn authproxy_counts(&self) -> ProxyCounts {
        let text = crate::harness::scrape(self.authproxy_admin).await.unwrap_or_default();
        let samples = |family: &str| {
            text.lines()
                .filter(move |l| l.starts_with(family) && !l.starts_with('#'))
                .filter_map(|l| {
                    let (name, v) = l.rsplit_once(' ')?;
                    Some((name.to_owned(), v.parse::<f64>().ok()?))
                })
                .collect::<Vec<_>>()
        };
        let sum = |family: &str| samples(family).iter().map(|(_, v)| v).sum();
        let endpoint =
            |name: &str| name.split("endpoint=\"").nth(1).and_then(|r| r.split('"').next()).map(str::to_owned);
        let mut latency: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for (name, v) in samples("brupop_authproxy_request_duration_seconds_sum{") {
            latency.entry(endpoint(&name).unwrap_or_default()).or_default().0 += v;
        }
        for (name, v) in samples("brupop_authproxy_request_duration_seconds_count{") {
            latency.entry(endpoint(&name).unwrap_or_default()).or_default().1 += v;
        }
        ProxyCounts {
            requests: sum("brupop_authproxy_requests_total{"),
            token_reviews: sum("brupop_authproxy_tokenreviews_total{"),
            latency,
        }
    }
}

/// Counters scraped from the authproxy.
#[derive(Debug, Clone, Default)]
pub struct ProxyCounts {
    pub requests: f64,
    pub token_reviews: f64,
    /// Endpoint → (seconds spent, requests).
    pub latency: BTreeMap<String, (f64, f64)>,
}

impl ProxyCounts {
    /// Mean latency in milliseconds by endpoint, of the requests since `before`.
    pub fn mean_ms_since(&self, before: &ProxyCounts) -> BTreeMap<String, f64> {
        self.latency
            .iter()
            .filter_map(|(e, (s, n))| {
                let (s0, n0) = before.latency.get(e).copied().unwrap_or_default();
                (n - n0 > 0.0).then(|| (e.clone(), (s - s0) / (n - n0) * 1000.0))
            })
            .collect()
    }
}
