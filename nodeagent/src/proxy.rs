//! The agent's client of the authproxy: every cluster write the agent makes.
//!
//! HTTPS with a client certificate (mTLS) and the projected ServiceAccount
//! token of the authproxy's audience in the `Authorization` header. The
//! certificate files and the token are re-read when they change (cert-manager
//! and the kubelet rotate them), without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::wire::{
    ApiError, CordonReply, CordonRequest, DrainReport, DrainRequest, Endpoint, ReleaseSlot, Released, RenewSlot,
    ShadowReply, SlotReply, StatusReport, UncordonRequest,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How the agent reaches the authproxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// e.g. `https://brupop-authproxy:8443`
    pub url: String,
    pub node: String,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// CA bundle the authproxy's server certificate must chain to.
    pub ca: PathBuf,
    /// More CAs to trust (the optional `brupop-ca-bundle` ConfigMap, for a
    /// CA key rotation); an absent or empty file adds none.
    pub extra_ca: Option<PathBuf>,
    /// Projected ServiceAccount token with the authproxy's audience.
    pub token: PathBuf,
    pub timeout: Duration,
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The authproxy answered with an error.
    #[error("authproxy answered {code} {reason}: {message}")]
    Refused { code: u16, reason: String, message: String },
    /// The request did not get an answer (network, TLS, timeout).
    #[error("authproxy unreachable: {0}")]
    Unreachable(String),
    /// Local files (certificates, token) could not be used.
    #[error("{0}")]
    Local(String),
}

impl ProxyError {
    /// The slot is not (or no longer) the caller's.
    pub fn is_not_holder(&self) -> bool {
        matches!(self, ProxyError::Refused { code: 409, reason, .. } if reason == "NotHolder")
    }

    /// The slot is the caller's but too short for the step: renew first.
    pub fn is_too_short(&self) -> bool {
        matches!(self, ProxyError::Refused { code: 409, reason, .. } if reason == "LeaseTooShort")
    }

    /// A short label for metrics.
    pub fn label(&self) -> String {
        match self {
            ProxyError::Refused { code, .. } => code.to_string(),
            ProxyError::Unreachable(_) => "unreachable".into(),
            ProxyError::Local(_) => "local".into(),
        }
    }
}

struct Built {
    client: reqwest::Client,
    fingerprint: Vec<u8>,
    checked: Instant,
}

/// See the module documentation.
pub struct Proxy {
    cfg: ProxyConfig,
    built: Mutex<Option<Built>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("url", &self.cfg.url).field("node", &self.cfg.node).finish_non_exhaustive()
    }
}

const RECHECK_FILES: Duration = Duration::from_secs(10);

fn read(path: &PathBuf) -> Result<Vec<u8>, ProxyError> {
    std::fs::read(path).map_err(|e| ProxyError::Local(format!("reading {}: {e}", path.display())))
}

/// An optional bundle: absent means empty (the ConfigMap exists only during a rotation).
fn read_optional(path: Option<&PathBuf>) -> Result<Vec<u8>, ProxyError> {
    match path {
        None => Ok(Vec::new()),
        Some(p) => match std::fs::read(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            _ => read(p),
        },
    }
}

impl Proxy {
    pub fn new(cfg: ProxyConfig) -> Self {
        Proxy { cfg, built: Mutex::new(None) }
    }

    fn fingerprint(&self) -> Result<Vec<u8>, ProxyError> {
        let mut all = Vec::new();
        for p in [&self.cfg.client_cert, &self.cfg.client_key, &self.cfg.ca] {
            all.extend(ring::digest::digest(&ring::digest::SHA256, &read(p)?).as_ref());
        }
        let extra = read_optional(self.cfg.extra_ca.as_ref())?;
        all.extend(ring::digest::digest(&ring::digest::SHA256, &extra).as_ref());
        Ok(all)
    }

    fn build(&self, fingerprint: Vec<u8>) -> Result<Built, ProxyError> {
        let local = |what: &str, e: &dyn std::fmt::Display| ProxyError::Local(format!("{what}: {e}"));
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(&self.cfg.client_cert)?)
            .collect::<Result<_, _>>()
            .map_err(|e| local("client certificate", &e))?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.cfg.client_key)?).map_err(|e| local("client key", &e))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read(&self.cfg.ca)?) {
            roots.add(ca.map_err(|e| local("CA bundle", &e))?).map_err(|e| local("CA bundle", &e))?;
        }
        for ca in CertificateDer::pem_slice_iter(&read_optional(self.cfg.extra_ca.as_ref())?) {
            roots.add(ca.map_err(|e| local("extra CA bundle", &e))?).map_err(|e| local("extra CA bundle", &e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| local("TLS", &e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| local("client certificate and key", &e))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .http1_only()
            .no_proxy()
            .timeout(self.cfg.timeout)
            .connect_timeout(Duration::from_secs(5))
            // Agents call between long quiet spells: an idle connection kept
            // for each of thousands of agents would only cost the proxy memory.
            .pool_idle_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| local("HTTP client", &e))?;
        Ok(Built { client, fingerprint, checked: Instant::now() })
    }

    /// The HTTP client, rebuilt when the certificate files changed.
    fn client(&self) -> Result<reqwest::Client, ProxyError> {
        let mut guard = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = guard.as_mut()
            && b.checked.elapsed() < RECHECK_FILES
        {
            return Ok(b.client.clone());
        }
        let fp = self.fingerprint()?;
        if let Some(b) = guard.as_mut()
            && b.fingerprint == fp
        {
            b.checked = Instant::now();
            return Ok(b.client.clone());
        }
        if guard.is_some() {
            tracing::info!("client certificate files changed; new connections use them");
        }
        let built = self.build(fp)?;
        let client = built.client.clone();
        *guard = Some(built);
        Ok(client)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        body: Option<&B>,
    ) -> Result<T, ProxyError> {
        let client = self.client()?;
        let token =
            String::from_utf8(read(&self.cfg.token)?).map_err(|_| ProxyError::Local("token is not UTF-8".into()))?;
        let url = format!("{}{}", self.cfg.url.trim_end_matches('/'), endpoint.path(&self.cfg.node));
        let mut req = client.post(&url).bearer_auth(token.trim());
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b).map_err(|e| ProxyError::Local(format!("encoding the request: {e}")))?;
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes);
        }
        let resp = req.send().await.map_err(|e| ProxyError::Unreachable(error_chain(&e)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ProxyError::Unreachable(error_chain(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ProxyError::Unreachable(format!("unreadable answer from {}: {e}", endpoint.label())));
        }
        let err: ApiError = serde_json::from_slice(&bytes).unwrap_or_else(|_| ApiError {
            code: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
        });
        Err(ProxyError::Refused { code: status.as_u16(), reason: err.reason, message: err.message })
    }

    pub async fn report(&self, report: &StatusReport) -> Result<ShadowReply, ProxyError> {
        self.call(Endpoint::ReportStatus, Some(report)).await
    }

    pub async fn request_slot(&self, report: &StatusReport) -> Result<ShadowReply, ProxyError> {
        self.call(Endpoint::RequestSlot, Some(report)).await
    }

    pub async fn renew(&self, slot: &str, duration: Duration) -> Result<SlotReply, ProxyError> {
        let secs = i64::try_from(duration.as_secs().max(1)).unwrap_or(86_400).min(86_400);
        self.call(Endpoint::RenewSlot, Some(&RenewSlot { slot: slot.to_owned(), duration_seconds: secs })).await
    }

    pub async fn release(&self, slot: &str) -> Result<Released, ProxyError> {
        self.call(Endpoint::ReleaseSlot, Some(&ReleaseSlot { slot: slot.to_owned() })).await
    }

    pub async fn cordon(&self, req: &CordonRequest) -> Result<CordonReply, ProxyError> {
        self.call(Endpoint::Cordon, Some(req)).await
    }

    pub async fn uncordon(&self) -> Result<CordonReply, ProxyError> {
        self.call(Endpoint::Uncordon, Some(&UncordonRequest { include_in_load_balancers: true })).await
    }

    pub async fn drain(&self, req: &DrainRequest) -> Result<DrainReport, ProxyError> {
        self.call(Endpoint::Drain, Some(req)).await
    }

    pub async fn hook(&self, req: &model::wire::HookRequest) -> Result<model::wire::HookReply, ProxyError> {
        self.call(Endpoint::Hook, Some(req)).await
    }

    pub async fn clear_hooks(&self) -> Result<model::wire::HookReply, ProxyError> {
        self.call(Endpoint::ClearHooks, None::<&()>).await
    }
}

/// The error and its causes on one line (reqwest hides the useful part in `source`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
