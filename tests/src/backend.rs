//! Where a test's Kubernetes API comes from: the in-process simulator
//! (always available, the default) or a real API server named by the
//! explicit opt-in variable `BRUPOP_TEST_KUBECONFIG` (a kubeconfig path;
//! plain `KUBECONFIG` is never used, so nobody's cluster is touched by a
//! test run).
//!
//! Each [`TestApi`] gets a fresh namespace named after the test; cluster-
//! scoped objects a test creates should be named with [`TestApi::name`] so
//! parallel tests never collide and cleanup finds them. The admin client
//! has kube's automatic retries **off** (`default_retry = false`): the
//! behaviour suite must see every 409/429/503 itself.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};

use crate::apisim::{ApiSim, SimOptions};

/// The opt-in variable naming a real API server's kubeconfig.
pub const KUBECONFIG_ENV: &str = "BRUPOP_TEST_KUBECONFIG";

/// The API server behind a [`TestApi`].
#[derive(Debug)]
pub enum Backend {
    Sim(ApiSim),
    Real { kubeconfig: PathBuf },
}

/// A test's view of a Kubernetes API: an admin client and its own namespace.
pub struct TestApi {
    /// Admin client (retries off).
    pub client: kube::Client,
    /// The test's namespace (created by `start`, deleted by cleanup/drop).
    pub namespace: String,
    pub backend: Backend,
    kubeconfig: PathBuf,
    _dir: Option<tempfile::TempDir>,
    cleaned: bool,
}

impl std::fmt::Debug for TestApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApi").field("namespace", &self.namespace).field("backend", &self.backend).finish()
    }
}

/// A DNS label from a test name plus a random suffix.
fn namespace_for(test_name: &str) -> String {
    let mut base: String =
        test_name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    while base.contains("--") {
        base = base.replace("--", "-");
    }
    let base: String = base.trim_matches('-').chars().take(40).collect();
    let base = base.trim_matches('-');
    let suffix = crate::apisim::util::name_suffix();
    if base.is_empty() { format!("t-{suffix}") } else { format!("{base}-{suffix}") }
}

static OVERRIDE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Makes every later [`TestApi::start`] in this process use the real server
/// of `kubeconfig` (a test binary that owns a dedicated server, such as the
/// RBAC one, without touching the process environment).
pub fn set_kubeconfig_override(kubeconfig: &std::path::Path) {
    *OVERRIDE.lock().unwrap_or_else(|e| e.into_inner()) = Some(kubeconfig.to_owned());
}

fn kubeconfig_override() -> Option<PathBuf> {
    OVERRIDE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A kube config from a kubeconfig file, optionally with another bearer token.
pub async fn config_from_kubeconfig(path: &std::path::Path, token: Option<&str>) -> anyhow::Result<kube::Config> {
    let kc = Kubeconfig::read_from(path)?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    if let Some(t) = token {
        config.auth_info = serde_json::from_value(serde_json::json!({"token": t}))?;
    }
    config.default_retry = false;
    Ok(config)
}

impl TestApi {
    /// The simulator, or the real server when `BRUPOP_TEST_KUBECONFIG` is set.
    pub async fn start(test_name: &str) -> anyhow::Result<TestApi> {
        TestApi::start_with(test_name, SimOptions::default()).await
    }

    /// [`TestApi::start`] with simulator options (ignored on a real server).
    pub async fn start_with(test_name: &str, opts: SimOptions) -> anyhow::Result<TestApi> {
        let real = kubeconfig_override()
            .or_else(|| std::env::var(KUBECONFIG_ENV).ok().filter(|p| !p.is_empty()).map(PathBuf::from));
        let (backend, kubeconfig, dir, config) = match real {
            Some(path) => {
                let config = config_from_kubeconfig(&path, None).await?;
                (Backend::Real { kubeconfig: path.clone() }, path, None, config)
            }
            None => {
                let sim = ApiSim::start_with(opts).await?;
                let dir = tempfile::Builder::new().prefix("apisim-").tempdir()?;
                let path = dir.path().join("kubeconfig");
                sim.write_kubeconfig(&path, &sim.admin_token())?;
                let mut config = sim.client_config(&sim.admin_token());
                config.default_retry = false;
                (Backend::Sim(sim), path, Some(dir), config)
            }
        };
        let client = kube::Client::try_from(config)?;
        let namespace = namespace_for(test_name);
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))?;
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
        Ok(TestApi { client, namespace, backend, kubeconfig, _dir: dir, cleaned: false })
    }

    pub fn is_real(&self) -> bool {
        matches!(self.backend, Backend::Real { .. })
    }

    /// The simulator (None on a real server).
    pub fn sim(&self) -> Option<&ApiSim> {
        match &self.backend {
            Backend::Sim(s) => Some(s),
            Backend::Real { .. } => None,
        }
    }

    /// A kubeconfig for `kubectl` (admin).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// A name for a cluster-scoped object of this test (`<namespace>-<base>`).
    pub fn name(&self, base: &str) -> String {
        format!("{}-{base}", self.namespace)
    }

    /// A client authenticating with `token` (retries off).
    pub async fn client_with_token(&self, token: &str) -> anyhow::Result<kube::Client> {
        let config = match &self.backend {
            Backend::Sim(sim) => {
                let mut c = sim.client_config(token);
                c.default_retry = false;
                c
            }
            Backend::Real { kubeconfig } => config_from_kubeconfig(kubeconfig, Some(token)).await?,
        };
        Ok(kube::Client::try_from(config)?)
    }

    /// Applies the project's CRDs (server-side apply, idempotent) and waits
    /// until they are Established.
    pub async fn install_crds(&self) -> anyhow::Result<()> {
        self.apply_crds(model::crds()).await
    }

    /// Installs the CRDs of a multi-document YAML text (another build's
    /// `deploy/base/crds.yaml`).
    pub async fn install_crds_yaml(&self, yaml: &str) -> anyhow::Result<()> {
        let crds = crate::deploy::documents(yaml)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .map(serde_json::from_value::<CustomResourceDefinition>)
            .collect::<Result<Vec<_>, _>>()?;
        self.apply_crds(crds).await
    }

    async fn apply_crds(&self, crds: Vec<CustomResourceDefinition>) -> anyhow::Result<()> {
        let api = Api::<CustomResourceDefinition>::all(self.client.clone());
        let pp = PatchParams::apply(model::names::managers::HARNESS).force();
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(&name, &pp, &Patch::Apply(&crd)).await?;
            tokio::time::timeout(
                Duration::from_secs(30),
                await_condition(api.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .map_err(|_| anyhow::anyhow!("CRD {name} not Established within 30 s"))??;
        }
        Ok(())
    }

    /// Deletes the namespace, the test's Nodes and Namespaces
    /// (`name()`-prefixed) and CRDs whose group contains the namespace.
    pub async fn cleanup(mut self) -> anyhow::Result<()> {
        self.cleaned = true;
        cleanup(self.client.clone(), &self.namespace).await
    }
}

async fn cleanup(client: kube::Client, namespace: &str) -> anyhow::Result<()> {
    let prefix = format!("{namespace}-");
    let nodes = Api::<Node>::all(client.clone());
    for n in nodes.list(&ListParams::default()).await?.items {
        let name = n.metadata.name.unwrap_or_default();
        if name.starts_with(&prefix) {
            let _ = nodes.delete(&name, &DeleteParams::default()).await;
        }
    }
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for c in crds.list(&ListParams::default()).await?.items {
        if c.spec.group.contains(namespace) {
            let _ = crds.delete(&c.metadata.name.unwrap_or_default(), &DeleteParams::default()).await;
        }
    }
    let nss = Api::<Namespace>::all(client);
    for n in nss.list(&ListParams::default()).await?.items {
        let name = n.metadata.name.unwrap_or_default();
        if name.starts_with(&prefix) {
            let _ = nss.delete(&name, &DeleteParams::default()).await;
        }
    }
    let _ = nss.delete(namespace, &DeleteParams::default()).await;
    Ok(())
}

impl Drop for TestApi {
    fn drop(&mut self) {
        // The simulator goes away with its objects; a real server needs its
        // namespace deleted. Drop cannot await: do it on a thread of its own.
        if self.cleaned || !self.is_real() {
            return;
        }
        let (path, ns) = (self.kubeconfig.clone(), self.namespace.clone());
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(config) = config_from_kubeconfig(&path, None).await
                    && let Ok(client) = kube::Client::try_from(config)
                {
                    let _ = tokio::time::timeout(Duration::from_secs(20), cleanup(client, &ns)).await;
                }
            });
        });
        let _ = handle.join();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn namespaces_are_dns_labels() {
        let ns = super::namespace_for("API behaviour::Lease_update  409!");
        assert!(ns.starts_with("api-behaviour-lease-update-409-"), "{ns}");
        assert!(crate::apisim::util::is_dns_label(&ns));
        assert!(super::namespace_for("").starts_with("t-"));
    }
}
