//! An in-process Kubernetes API simulator: the project's fake *cluster*.
//!
//! [`ApiSim::start`] serves the Kubernetes REST API over HTTPS on a random
//! loopback port, inside the test process, so the real client code paths
//! (kube-rs over HTTP) and `kubectl` run against it, and `cargo test` needs
//! nothing installed. It is built to behave like kube-apiserver, and a real
//! one (`../shared/kube-testserver`) is the judge: the API behaviour suite in
//! `tests/tests/api_behaviour.rs` runs against both, and with a real server
//! it also replays the same requests on both side by side: ~850 fuzzed
//! bodies (same HTTP status required), a ~60-step session of what the
//! operator does (same objects required, after removing identities, times
//! and versions) and watches over it (same events required).
//!
//! # What it serves
//!
//! Discovery (`/version`, `/api`, `/apis`, group and resource lists);
//! core/v1 namespaces(+status), nodes(+status), pods(+status, +eviction),
//! serviceaccounts(+token), configmaps, secrets, services(+status), events; policy/v1
//! poddisruptionbudgets(+status); coordination.k8s.io/v1 leases;
//! events.k8s.io/v1 events (stored apart from core events, like
//! kube-testserver); authentication.k8s.io/v1 tokenreviews and
//! selfsubjectreviews; apiextensions.k8s.io/v1 customresourcedefinitions and
//! their custom resources (with `/status` when the CRD has it). Anything
//! else is a 404 like a server without that API: unlike kube-testserver,
//! the apps, batch, rbac, networking, scheduling, authorization and
//! admissionregistration groups are not served. `kubectl get` gets Tables
//! (nodes, pods, leases, PDBs, a CRD's printer columns), kube-rs
//! `*_metadata` calls get `PartialObjectMetadata`, and `/openapi/v3` has
//! just enough for `kubectl apply` to validate server-side.
//!
//! # Architecture
//!
//! - `server`: hyper 1 (HTTP/1.1 and HTTP/2) on tokio, TLS by rustls
//!   (`ring`), on a runtime of its own in a dedicated thread (so a test may
//!   block its own thread, e.g. running `kubectl`). Per request:
//!   authenticate (`auth`), apply faults (`faults`), read the body, dispatch
//!   (`route`, `handlers`), log (`faults::RequestLog`).
//! - `store`: all objects under one lock, one monotonic resourceVersion.
//!   Objects are compact JSON bytes plus indexed fields (namespace/name key,
//!   labels, pods by `spec.nodeName`), so large fleets are cheap and a list
//!   is a concatenation. Each type keeps a bounded change history for watches
//!   that resume from a resourceVersion; older ones get 410 Expired.
//! - `watch`: watchers are indexed by exact `metadata.name` / `spec.nodeName`
//!   field selector and by namespace; a write fans its change out (under the
//!   lock, no task per object or watcher) as one shared pre-serialized event
//!   line into bounded per-watcher queues; a full queue closes that watcher
//!   (its client re-watches and replays from history), so a slow client
//!   never blocks writers or other watchers. A watch body is a stream driven
//!   by its connection's task (bookmarks, `timeoutSeconds`).
//! - `decode`: bodies as the Go decoders see them: `apiVersion`/`kind`
//!   checks, built-in types through k8s-openapi's Go-shaped types with Go's
//!   `null` handling (`lenient`), unknown fields dropped, warned about or
//!   refused (`fieldValidation=Strict`), custom resources pruned and
//!   defaulted against their CRD schema (`schema`, `crd`).
//! - `write` / `delete` / `read` / `handlers`: the verbs and their
//!   bookkeeping (uid, timestamps, generation, status subresource rules,
//!   graceful deletion, finalizers, preconditions, dry run, no-op writes).
//!   `builtin`: pod defaults and the validation kube-testserver does.
//! - `patch`: JSON merge patch, JSON patch, strategic merge patch.
//!   `fields` + `managed`: managedFields on every write and server-side apply.
//! - `eviction`: the Eviction API against PodDisruptionBudgets.
//! - `auth`: admin token, TokenRequest/TokenReview, request identity.
//! - `discovery`, `table`, `openapi`, `proto`: what kubectl needs.
//!
//! Scale (`examples/apisim_scale.rs`): 5,000 nodes, 5,000 shadows, 50,000
//! pods and 15,000 watch streams (over HTTP/2) fit in ~370 MiB with a debug
//! build, creates run at ~2,000/s per client and each event reaches only
//! its watchers. kube-rs speaks HTTP/1.1, one connection per watch: that
//! many kube-rs watches need that many file descriptors twice (client and
//! server in one process), more than the default limit of 20,000 here.
//!
//! HTTPS is the default (realistic: kube-rs and kubectl both verify the
//! self-signed CA from the kubeconfig and send the bearer token); plain HTTP
//! (and HTTP/2 without TLS) is available with [`SimOptions::tls`] = false.
//!
//! # Fault injection and the request log
//!
//! ```ignore
//! let sim = ApiSim::start().await?;
//! sim.faults().fail_next(FaultMatch::new().verb("update").resource("leases")
//!     .user("system:serviceaccount:ns:agent"), 2, 503);   // next 2 matching → 503
//! sim.faults().delay(FaultMatch::new().resource("pods/eviction"), Duration::from_millis(200));
//! sim.faults().partition_user("system:serviceaccount:ns:agent"); // requests dropped, watches end
//! sim.faults().heal_user("system:serviceaccount:ns:agent");
//! sim.faults().close_all_watches();
//! let stats = sim.request_log();          // counts by (verb, resource, user)
//! assert_eq!(stats.count("create", "pods/eviction"), 1);
//! ```
//!
//! Verbs are `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
//! `deletecollection`; resources include the subresource (`pods/eviction`,
//! `bottlerocketshadows/status`); users are names as the server sees them
//! (`admin`, `system:serviceaccount:NS:NAME`, `system:anonymous`).
//! `RequestStats::since` gives the requests of one phase of a test.
//!
//! # Known differences from a real API server
//!
//! - No controllers, kubelet or scheduler (like kube-testserver): pods run
//!   only when a test patches their status; a pod with `spec.nodeName`
//!   deleted with a grace period stays terminating until deleted with grace
//!   0; no garbage collection of ownerReferences; PDB status is recomputed
//!   only when the PDB is written or on an eviction. Namespace deletion is
//!   synchronous (no Terminating phase); objects in a missing namespace can
//!   be created (no NamespaceLifecycle admission, like kube-testserver).
//! - No RBAC: every authenticated or anonymous request is allowed
//!   (AlwaysAllow); the identity is still known for faults and the log.
//! - Service-account tokens are opaque random strings, not JWTs (like
//!   kube-testserver); no OIDC discovery.
//! - `resourceVersion` semantics: lists are always served from the current
//!   state; `resourceVersionMatch=Exact` with an older version answers 410
//!   (there are no snapshots); a `continue` token lists what is *now* after
//!   the last key instead of a snapshot. A list or watch with a version newer
//!   than the store answers 504 at once (a real server waits ~3 s). The
//!   watch history is bounded per type ([`SimOptions::history_per_resource`]);
//!   a type's history starts when it is created (server start, or when a CRD
//!   is established), like the watch cache.
//! - Bookmarks come every [`SimOptions::bookmark_interval`] (a real server:
//!   about every minute and before the timeout).
//! - Server-side apply and managedFields are simpler than structured-merge-diff
//!   (see `fields`): lists are atomic unless known to be keyed or a set;
//!   Update entries record changed leaves plus created maps; the exact
//!   fieldsV1 (and the wording of multi-field apply errors) can differ.
//! - Strategic merge patch knows the list keys the project patches
//!   (conditions, containers, env, ports, volumes, ownerReferences,
//!   finalizers); other lists are replaced (see `patch`).
//! - Status writes change only `status` for custom resources (like the real
//!   server) and `status` plus labels/annotations for built-ins.
//! - Validation: built-in types get kube-testserver's subset (metadata
//!   names, labels and finalizers, pod spec immutability and required
//!   containers, lease durations, PDB fields, events.k8s.io required fields,
//!   CRD basics); CRD schemas: types, enums, required, date-time format,
//!   min/max, lengths, item counts, not `pattern`, CEL rules or
//!   `oneOf`/`anyOf`. Error texts match the real server where tests look at
//!   them; others may differ in wording but not in code or reason.
//! - CRDs are established synchronously and deleted at once with their
//!   objects (no `customresourcecleanup` finalizer); versions are served
//!   with `None` conversion; no conversion webhooks, no scale subresource,
//!   no `selectableFields`.
//! - JSON (and YAML) bodies; protobuf only for the kinds kubectl's typed
//!   commands send (`create namespace|serviceaccount|configmap|secret|token`,
//!   `drain`'s evictions, see `proto`); no CBOR; answers are always JSON.
//!   Legacy (unaggregated) discovery only. OpenAPI v3 documents carry no
//!   schemas (`kubectl explain` does not work; `/openapi/v2` is absent).
//! - Partitions drop the connection without an answer; `fail_next` answers a
//!   `Status` with the usual reason for the code and `injected fault` text.

pub mod auth;
pub mod builtin;
pub mod crd;
pub mod decode;
pub mod delete;
pub mod discovery;
pub mod errors;
pub mod eviction;
pub mod faults;
pub mod fields;
pub mod handlers;
pub mod lenient;
pub mod managed;
pub mod openapi;
pub mod patch;
pub mod proto;
pub mod read;
pub mod resources;
pub mod route;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod tls;
pub mod util;
pub mod watch;
pub mod write;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::json;

pub use faults::{FaultMatch, Faults, LoggedRequest, RequestStats};

/// Tunables; [`SimOptions::default`] behaves like kube-apiserver.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Serve HTTPS (default) or plain HTTP.
    pub tls: bool,
    /// Changes kept per resource type for watches that resume.
    pub history_per_resource: usize,
    /// Events queued per watcher before a slow watcher is closed.
    pub watch_queue: usize,
    pub bookmark_interval: Duration,
    /// Watch duration when the client sets no `timeoutSeconds`.
    pub watch_timeout: Duration,
    /// Smallest TokenRequest `expirationSeconds` (kube-apiserver: 10 minutes).
    pub token_min_expiration: Duration,
    /// Threads of the simulator's own tokio runtime.
    pub worker_threads: usize,
    /// Requests kept in [`ApiSim::recent_requests`].
    pub request_log_entries: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tls: true,
            history_per_resource: 10_000,
            watch_queue: 1_000,
            bookmark_interval: Duration::from_secs(60),
            watch_timeout: Duration::from_secs(1800),
            token_min_expiration: Duration::from_secs(600),
            worker_threads: 2,
            request_log_entries: 10_000,
        }
    }
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub(crate) store: Arc<store::Store>,
    pub(crate) tokens: auth::Tokens,
    pub(crate) faults: Faults,
    pub(crate) log: faults::RequestLog,
    pub(crate) opts: SimOptions,
    pub(crate) tls: Option<tls::TlsMaterial>,
    pub(crate) server_address: String,
}

/// A running simulator; dropping it shuts the server down.
#[derive(Debug)]
pub struct ApiSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl ApiSim {
    /// Starts a simulator with default options on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<ApiSim> {
        ApiSim::start_with(SimOptions::default()).await
    }

    /// Starts a simulator with `opts`.
    pub async fn start_with(opts: SimOptions) -> anyhow::Result<ApiSim> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let store = Arc::new(store::Store::new(resources::builtins(), opts.history_per_resource));
        bootstrap(&store);
        let shared = Arc::new(Shared {
            faults: Faults::new(&store),
            store,
            tokens: auth::Tokens::new(opts.token_min_expiration),
            log: faults::RequestLog::new(opts.request_log_entries),
            tls: if opts.tls { Some(tls::generate()?) } else { None },
            server_address: addr.to_string(),
            opts: opts.clone(),
        });
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.worker_threads.max(1))
            .thread_name("apisim")
            .enable_all()
            .build()?;
        let server_shared = shared.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name("apisim-main".into()).spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        server::serve(l, server_shared, rx).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
            runtime.shutdown_background();
        })?;
        ready_rx.await??;
        Ok(ApiSim { shared, addr, shutdown })
    }

    /// `https://127.0.0.1:PORT` (or `http://` without TLS).
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The admin bearer token (user `admin`, group `system:masters`).
    pub fn admin_token(&self) -> String {
        self.shared.tokens.admin.clone()
    }

    /// PEM of the CA that signed the server certificate (None without TLS).
    pub fn ca_pem(&self) -> Option<String> {
        self.shared.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// A kubeconfig for `kubectl` and kube-rs, authenticating with `token`.
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        let ca = match &self.shared.tls {
            Some(t) => format!(
                "\n    certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(t.ca_pem.as_bytes())
            ),
            None => String::new(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: apisim\n  cluster:\n    server: {}{ca}\nusers:\n- name: apisim-user\n  user:\n    token: {}\ncontexts:\n- name: apisim\n  context:\n    cluster: apisim\n    user: apisim-user\n    namespace: default\ncurrent-context: apisim\n",
            self.url(),
            json!(token)
        )
    }

    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(token))
    }

    /// A kube-rs configuration for `token` (kube's defaults otherwise,
    /// including its retries of 429/503/504).
    pub fn client_config(&self, token: &str) -> kube::Config {
        let mut c = kube::Config::new(self.url().parse().unwrap_or_default());
        c.root_cert = self.shared.tls.as_ref().map(|t| vec![t.ca_der.clone()]);
        c.auth_info = serde_json::from_value(json!({"token": token})).unwrap_or_default();
        c
    }

    /// An admin client (must be called inside a tokio runtime).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.client_config(&self.admin_token()))
            .unwrap_or_else(|e| panic!("building a kube client for the simulator: {e}"))
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Counts of requests so far by (verb, resource, user).
    pub fn request_log(&self) -> RequestStats {
        self.shared.log.stats()
    }

    /// The most recent requests (up to [`SimOptions::request_log_entries`]).
    pub fn recent_requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.recent()
    }

    /// Open watch streams right now.
    pub fn watch_count(&self) -> usize {
        self.shared.store.lock().types().map(|t| t.watchers.len()).sum()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().current_rv()
    }
}

impl Drop for ApiSim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// What a fresh kube-apiserver has: the default namespaces and their
/// `default` ServiceAccounts.
fn bootstrap(store: &store::Store) {
    let mut inner = store.lock();
    let Some(rt) = inner.rt(&resources::Gr::new("", "namespaces")) else {
        return;
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let v = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let _ = write::create(&mut inner, &rt, "", v, &write::WriteOpts::default(), false);
    }
}
