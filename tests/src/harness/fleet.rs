//! A test cluster with the real components running: one call
//! ([`Fleet::start`]) creates the namespace, CRDs, ServiceAccounts, Nodes
//! (with their agent Pod, a DaemonSet pod and workload pods), simulated
//! hosts, certificates and tokens, then launches the authproxy, the
//! leader(s) and one agent process per node, each agent reaching the
//! authproxy through its own cuttable network link. The harness plays
//! kubelet (see [`super::kubelet`]) and the invariant monitor watches.
//!
//! Tests run in parallel on one API server: each fleet has its own
//! namespace, and its nodes carry a label unique to the fleet that the
//! leader's `--node-selector` includes, so fleets never see each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use model::BottlerocketShadow;
use model::names;
use serde_json::json;
use tokio::task::JoinHandle;

use super::bins::binaries;
use super::certs::{TestPki, TlsDir};
use super::kubelet::{self, Agents};
use super::monitor::Monitor;
use super::netproxy::NetProxy;
use super::process::{Proc, Spec, free_port};
use crate::backend::TestApi;
use crate::hostsim::{HostConfig, HostFleet};

/// The authproxy's token audience in tests.
pub const AUDIENCE: &str = "brupop-authproxy";
pub const AGENT_SA: &str = "brupop-agent";

pub use super::options::{FleetOptions, TEST_LEASE};

/// A running test fleet. Dropping it stops every process.
pub struct Fleet {
    pub api: TestApi,
    pub ns: String,
    /// Unique to this fleet: node names and the node label.
    pub run: String,
    pub selector: String,
    pub nodes: Vec<String>,
    pub hosts: HostFleet,
    pub pki: TestPki,
    pub agents: Agents,
    pub links: BTreeMap<String, NetProxy>,
    pub authproxy: Mutex<Proc>,
    pub authproxy_admin: u16,
    pub leaders: Vec<Mutex<Proc>>,
    pub leader_admin: Vec<u16>,
    pub agent_admin: BTreeMap<String, u16>,
    /// Agent Pod uid by node (their tokens are bound to them).
    pub agent_pods: BTreeMap<String, String>,
    /// The authproxy's address (not through any agent's link).
    pub authproxy_addr: std::net::SocketAddr,
    pub monitor: Monitor,
    /// Peak resident memory (KiB) by process name, sampled every 100 ms.
    pub peak_rss: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Pods (`namespace/name`) the harness's kubelet keeps NotReady after a
    /// boot, as for a crash-looping container.
    pub failing_pods: Arc<Mutex<std::collections::BTreeSet<String>>>,
    pub opts: FleetOptions,
    /// Every process's flags, as the current build takes them.
    pub(super) full_args: BTreeMap<String, Vec<String>>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("ns", &self.ns).field("nodes", &self.nodes.len()).finish_non_exhaustive()
    }
}

impl Fleet {
    /// The flags process `name` takes in the current build.
    pub(super) fn full_args(&self, name: &str) -> Vec<String> {
        self.full_args.get(name).cloned().unwrap_or_default()
    }
}

fn flags(pairs: &[(String, String)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, v)| [format!("--{k}"), v.clone()]).collect()
}

fn pp() -> PostParams {
    runtime::client::post_params(names::managers::HARNESS)
}

/// A kubeconfig like the test's, but authenticating with `token`.
fn kubeconfig_with_token(base: &Path, token: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(base)?;
    let mut v: serde_json::Value = serde_saphyr::from_str(&text)?;
    if let Some(users) = v.get_mut("users").and_then(|u| u.as_array_mut()) {
        for u in users {
            u["user"] = json!({ "token": token });
        }
    }
    Ok(serde_json::to_string_pretty(&v)?)
}

pub async fn token(
    client: &kube::Client,
    ns: &str,
    sa: &str,
    audience: Option<&str>,
    pod: Option<(&str, &str)>,
) -> anyhow::Result<String> {
    let mut spec = json!({"expirationSeconds": 3600});
    if let Some(a) = audience {
        spec["audiences"] = json!([a]);
    }
    if let Some((name, uid)) = pod {
        spec["boundObjectRef"] = json!({"kind": "Pod", "apiVersion": "v1", "name": name, "uid": uid});
    }
    let req: TokenRequest = serde_json::from_value(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
    )?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let answer = sas.create_token_request(sa, &pp(), &req).await?;
    answer
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow::anyhow!("TokenRequest for {sa} returned no token"))
}

impl Fleet {
    /// Brings up a fleet for `test` (see the module documentation).
    pub async fn start(test: &str, opts: FleetOptions) -> anyhow::Result<Fleet> {
        let bins = match &opts.binaries {
            Some(b) => b.clone(),
            None => binaries().clone(),
        };
        let filter = |program: &Path, args: Vec<String>| {
            if opts.binaries.is_some() { super::process::only_known_flags(program, &args) } else { args }
        };
        let api = TestApi::start(test).await?;
        match &opts.crds_yaml {
            Some(yaml) => api.install_crds_yaml(yaml).await?,
            None => api.install_crds().await?,
        }
        let client = api.client.clone();
        // With the shipped RBAC, everything runs in the namespace it names.
        let ns = match (&opts.shipped_rbac, &opts.install_namespace) {
            (true, Some(ns)) => ns.clone(),
            (true, None) => names::DEFAULT_NAMESPACE.to_owned(),
            (false, _) => api.namespace.clone(),
        };
        // Unique per fleet even when the shipped RBAC fixes the namespace:
        // node names and the node selector come from it, so fleets run one
        // after another on one server never share nodes.
        let run = api.namespace.rsplit('-').next().unwrap_or("run").to_owned();
        let tmp = tempfile::Builder::new().prefix("brupop-fleet-").tempdir()?;
        let dir = tmp.path().to_owned();
        let selector = format!("{}={},brupop-test={run}", names::NODE_OPT_IN_LABEL, names::NODE_OPT_IN_VALUE);
        if opts.shipped_rbac {
            apply_shipped_rbac(&api.kubeconfig_path(), &ns)?;
        }
        for sa in [AGENT_SA, "brupop-authproxy", "brupop-leader"] {
            let obj: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": sa, "namespace": ns}}))?;
            match Api::<ServiceAccount>::namespaced(client.clone(), &ns).create(&pp(), &obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_already_exists() => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Nodes, hosts and pods.
        let prefix = opts.node_prefix.clone().unwrap_or_else(|| format!("{run}-node-"));
        let nodes: Vec<String> = (0..opts.nodes).map(|i| format!("{prefix}{i}")).collect();
        let node_api: Api<Node> = Api::all(client.clone());
        for (i, n) in nodes.iter().enumerate() {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": n, "labels": {
                    names::NODE_OPT_IN_LABEL: names::NODE_OPT_IN_VALUE,
                    "brupop-test": run,
                    "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                }},
            }))?;
            node_api.create(&pp(), &node).await?;
            kubelet::new_boot(&client, n).await?;
            kubelet::set_node_ready(&client, n, true).await?;
        }
        let template = HostConfig::new(&opts.running)
            .available(&[&opts.running])
            .timings(opts.host_timings)
            .reboot_mode(opts.reboot_mode);
        let hosts = HostFleet::start(nodes.iter(), template).await?;
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let mut agent_pods = BTreeMap::new();
        for n in &nodes {
            let owner = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "brupop-agent", "uid": "00000000-0000-0000-0000-00000000da00", "controller": true}]);
            let agent: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("brupop-agent-{n}"), "namespace": ns, "labels": {"app": "brupop-agent"}, "ownerReferences": owner},
                "spec": {"nodeName": n, "serviceAccountName": AGENT_SA, "containers": [{"name": "agent", "image": "brupop/agent:test"}]},
            }))?;
            let created = pod_api.create(&pp(), &agent).await?;
            kubelet::set_pod_ready(&client, &ns, &format!("brupop-agent-{n}"), true).await?;
            agent_pods.insert(n.clone(), created.metadata.uid.unwrap_or_default());
            let logs_owner = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "logs", "uid": "00000000-0000-0000-0000-00000000da01", "controller": true}]);
            let ds: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("logs-{n}"), "namespace": ns, "labels": {"app": "logs"}, "ownerReferences": logs_owner},
                "spec": {"nodeName": n, "containers": [{"name": "logs", "image": "busybox"}]},
            }))?;
            pod_api.create(&pp(), &ds).await?;
            kubelet::set_pod_ready(&client, &ns, &format!("logs-{n}"), true).await?;
            for j in 0..opts.pods_per_node {
                let name = format!("web-{n}-{j}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": ns, "labels": {"app": "web", "node": n}},
                    "spec": {"nodeName": n, "terminationGracePeriodSeconds": 1, "containers": [{"name": "web", "image": "nginx"}]},
                }))?;
                pod_api.create(&pp(), &pod).await?;
                kubelet::set_pod_ready(&client, &ns, &name, true).await?;
            }
        }
        // Certificates.
        let pki = TestPki::new(&dir.join("pki"))?;
        let server = pki.server("authproxy")?;
        let client_tls = pki.client("agent")?;
        // The authproxy.
        let base_kubeconfig = api.kubeconfig_path();
        let write_kc = |who: &str, tok: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(format!("kubeconfig-{who}"));
            std::fs::write(&p, kubeconfig_with_token(&base_kubeconfig, tok)?)?;
            Ok(p)
        };
        let ap_token = token(&client, &ns, "brupop-authproxy", None, None).await?;
        let ap_port = free_port();
        let ap_admin = free_port();
        let mut ap_args = vec![
            "--listen".into(),
            format!("127.0.0.1:{ap_port}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{ap_admin}"),
            "--tls-cert".into(),
            server.cert().display().to_string(),
            "--tls-key".into(),
            server.key().display().to_string(),
            "--client-ca".into(),
            server.ca().display().to_string(),
            "--extra-ca".into(),
            pki.ca_bundle().display().to_string(),
            "--namespace".into(),
            ns.clone(),
            "--agent-service-account".into(),
            AGENT_SA.into(),
            "--token-audience".into(),
            AUDIENCE.into(),
            "--node-selector".into(),
            selector.clone(),
        ];
        ap_args.extend(flags(&opts.authproxy_args));
        let mut full_args: BTreeMap<String, Vec<String>> = BTreeMap::new();
        full_args.insert("authproxy".into(), ap_args.clone());
        let ap_env = vec![("KUBECONFIG".to_owned(), write_kc("authproxy", &ap_token)?.display().to_string())];
        let authproxy = Proc::spawn(
            Spec {
                name: "authproxy".into(),
                program: bins.authproxy.clone(),
                args: filter(&bins.authproxy, ap_args.clone()),
                env: ap_env,
            },
            &dir,
        )?;
        // Leaders.
        let leader_token = token(&client, &ns, "brupop-leader", None, None).await?;
        let leader_kc = write_kc("leader", &leader_token)?;
        let mut leaders = Vec::new();
        let mut leader_admin = Vec::new();
        for i in 0..opts.leaders {
            let port = free_port();
            let mut a = vec![
                "--namespace".into(),
                ns.clone(),
                "--node-selector".into(),
                selector.clone(),
                "--max-concurrent-updates".into(),
                opts.slots.to_string(),
                "--identity".into(),
                format!("leader-{i}"),
                "--admin-listen".into(),
                format!("127.0.0.1:{port}"),
            ];
            a.extend(flags(&opts.leader_args));
            full_args.insert(format!("leader-{i}"), a.clone());
            let env = vec![("KUBECONFIG".to_owned(), leader_kc.display().to_string())];
            leaders.push(Mutex::new(Proc::spawn(
                Spec {
                    name: format!("leader-{i}"),
                    program: bins.leader.clone(),
                    args: filter(&bins.leader, a.clone()),
                    env,
                },
                &dir,
            )?));
            leader_admin.push(port);
        }
        // Agents, each through its own link to the authproxy.
        let agents: Agents = Arc::new(Mutex::new(BTreeMap::new()));
        let mut links = BTreeMap::new();
        let mut agent_admin = BTreeMap::new();
        let ap_addr: std::net::SocketAddr = format!("127.0.0.1:{ap_port}").parse()?;
        for (i, n) in nodes.iter().enumerate() {
            let pod = format!("brupop-agent-{n}");
            let uid = agent_pods.get(n).cloned().unwrap_or_default();
            let api_token = token(&client, &ns, AGENT_SA, None, Some((&pod, &uid))).await?;
            let proxy_token = token(&client, &ns, AGENT_SA, Some(AUDIENCE), Some((&pod, &uid))).await?;
            let token_file = dir.join(format!("token-{n}"));
            std::fs::write(&token_file, &proxy_token)?;
            // Each node's agent reaches the authproxy from its own address,
            // as agent pods do: the authproxy's per-peer limits see one
            // peer per node, at their shipped values.
            let link = NetProxy::start_from(ap_addr, Some(super::netproxy::node_address(i))).await?;
            let port = free_port();
            let host = hosts.host(n).ok_or_else(|| anyhow::anyhow!("no host for {n}"))?;
            let mut a = vec![
                "--node-name".into(),
                n.clone(),
                "--namespace".into(),
                ns.clone(),
                // By a name, as agents do in a cluster (the Service's short
                // name there): the authproxy's certificate must hold it.
                "--authproxy-url".into(),
                format!("https://localhost:{}", link.addr().port()),
                "--client-cert".into(),
                client_tls.cert().display().to_string(),
                "--client-key".into(),
                client_tls.key().display().to_string(),
                "--authproxy-ca".into(),
                client_tls.ca().display().to_string(),
                "--extra-ca".into(),
                pki.ca_bundle().display().to_string(),
                "--token-file".into(),
                token_file.display().to_string(),
                "--host-socket".into(),
                host.socket_path().display().to_string(),
                "--admin-listen".into(),
                format!("127.0.0.1:{port}"),
            ];
            a.extend(flags(&opts.agent_args));
            let env = vec![
                ("KUBECONFIG".to_owned(), write_kc(&format!("agent-{n}"), &api_token)?.display().to_string()),
                // As the DaemonSet sets it.
                ("MALLOC_ARENA_MAX".to_owned(), "1".to_owned()),
            ];
            if opts.agents {
                full_args.insert(format!("agent-{n}"), a.clone());
                let args = filter(&bins.nodeagent, a);
                let spec = Spec { name: format!("agent-{n}"), program: bins.nodeagent.clone(), args, env };
                let proc = Proc::spawn(spec, &dir)?;
                agents.lock().unwrap_or_else(|e| e.into_inner()).insert(n.clone(), proc);
            }
            links.insert(n.clone(), link);
            agent_admin.insert(n.clone(), port);
        }
        // Kubelet and the monitor.
        let pod_starts = kubelet::PodStarts { after_boot: opts.pod_start_after_boot, failing: Arc::default() };
        let mut tasks = vec![kubelet::finish_terminating_pods(client.clone(), ns.clone(), opts.pod_termination)];
        for n in &nodes {
            if let Some(h) = hosts.host(n) {
                tasks.push(kubelet::follow_reboots(client.clone(), h, n.clone(), agents.clone(), pod_starts.clone()));
            }
        }
        let monitor = Monitor::start(&client, &ns, &selector, opts.slots as usize);
        let peak_rss = Arc::new(Mutex::new(BTreeMap::new()));
        tasks.push(sample_rss(
            peak_rss.clone(),
            agents.clone(),
            authproxy.pid(),
            leaders.iter().map(|l| l.lock().ok().and_then(|p| p.pid())).collect(),
        ));
        Ok(Fleet {
            api,
            ns,
            run,
            selector,
            nodes,
            hosts,
            pki,
            agents,
            links,
            authproxy: Mutex::new(authproxy),
            authproxy_admin: ap_admin,
            leaders,
            leader_admin,
            agent_admin,
            agent_pods,
            authproxy_addr: ap_addr,
            monitor,
            peak_rss,
            failing_pods: pod_starts.failing,
            opts,
            full_args,
            dir,
            _tmp: tmp,
            tasks,
        })
    }

    pub fn client(&self) -> &kube::Client {
        &self.api.client
    }

    pub fn shadows_api(&self) -> Api<BottlerocketShadow> {
        Api::namespaced(self.api.client.clone(), &self.ns)
    }

    /// Runs `f` on one agent's process handle.
    pub fn agent<R>(&self, node: &str, f: impl FnOnce(&mut Proc) -> R) -> Option<R> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner()).get_mut(node).map(f)
    }

    /// Log tails of every component (for failure messages).
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut add = |p: &Proc| {
            out.push_str(&format!("---- {} ({})\n{}\n", p.name(), p.log_path().display(), p.log_tail(lines)))
        };
        if let Ok(p) = self.authproxy.lock() {
            add(&p);
        }
        for l in &self.leaders {
            if let Ok(p) = l.lock() {
                add(&p);
            }
        }
        for p in self.agents.lock().unwrap_or_else(|e| e.into_inner()).values() {
            add(p);
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if std::thread::panicking() {
            eprintln!(
                "fleet {} failed; component logs in {} (kept: BRUPOP_KEEP_LOGS=1)\n{}",
                self.ns,
                self.dir.display(),
                self.logs(40)
            );
            if std::env::var_os("BRUPOP_KEEP_LOGS").is_some() {
                let kept = std::env::temp_dir().join(format!("brupop-logs-{}", self.ns));
                let _ = std::fs::rename(&self.dir, &kept);
                eprintln!("logs kept in {}", kept.display());
            }
        }
    }
}

/// Applies the Namespace, ServiceAccounts and RBAC objects of the install
/// manifest with kubectl (server-side apply): the one-file manifest in the
/// default namespace, or what an overlay installing into `ns` makes.
fn apply_shipped_rbac(kubeconfig: &Path, ns: &str) -> anyhow::Result<()> {
    const KINDS: [&str; 6] =
        ["Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"];
    let manifest = if ns == names::DEFAULT_NAMESPACE {
        std::fs::read_to_string(crate::deploy::deploy_dir().join("bottlerocket-update-operator.yaml"))?
    } else {
        crate::deploy::overlay(Some(ns), &[]).map_err(anyhow::Error::msg)?
    };
    let docs = crate::deploy::documents(&manifest).map_err(anyhow::Error::msg)?;
    let picked: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"].as_str().is_some_and(|k| KINDS.contains(&k)))
        .map(|d| serde_json::to_string(d).unwrap_or_default())
        .collect();
    let list = format!("{{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{}]}}", picked.join(","));
    let mut child = std::process::Command::new("kubectl")
        .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child.stdin.take().ok_or_else(|| anyhow::anyhow!("kubectl stdin"))?.write_all(list.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl apply of the shipped RBAC failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Samples the components' resident memory every 100 ms, keeping the peak per
/// process name (agents restarted by a reboot keep their name).
fn sample_rss(
    peaks: Arc<Mutex<BTreeMap<String, u64>>>,
    agents: Agents,
    authproxy: Option<u32>,
    leaders: Vec<Option<u32>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut pids: Vec<(String, u32)> = Vec::new();
            pids.extend(authproxy.map(|p| ("authproxy".to_owned(), p)));
            pids.extend(leaders.iter().enumerate().filter_map(|(i, p)| p.map(|p| (format!("leader-{i}"), p))));
            for (name, p) in agents.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                if let Some(pid) = p.pid() {
                    pids.push((format!("agent-{name}"), pid));
                }
            }
            for (name, pid) in pids {
                if let Some(kib) = super::process::rss_kib(pid) {
                    let mut g = peaks.lock().unwrap_or_else(|e| e.into_inner());
                    let e = g.entry(name).or_insert(0);
                    *e = (*e).max(kib);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The agents' client certificate directory, for tests that rotate it.
pub fn agent_tls(fleet: &Fleet) -> TlsDir {
    TlsDir { dir: fleet.dir.join("pki").join("agent") }
}
