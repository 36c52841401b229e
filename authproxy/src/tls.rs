//! The authproxy's TLS: server certificate and client-CA bundle from files
//! (cert-manager's Secret, mounted), requiring a client certificate that
//! chains to the CA, and reloading them when they change.
//!
//! Trusted are the CAs of the leaf Secret's `ca.crt` and, if given and
//! present, of an extra bundle (the optional `brupop-ca-bundle` ConfigMap):
//! during a CA key rotation it holds the old and the new CA, so agents with
//! a certificate from either are accepted while the leaves renew one by one
//! (SECURITY.md, "Rotating the CA key").
//!
//! A reload builds a new `ServerConfig` that new connections use; open
//! connections keep the one they were accepted with, so nothing is dropped.
//! A half-written or invalid set of files is refused and the previous
//! configuration stays in force (and a warning says why).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key found")]
    NoKey { path: PathBuf },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("client CA bundle {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("server certificate and key do not form a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The three files, as mounted.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// More CAs to trust; an absent or empty file adds none.
    pub extra_ca: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// An optional bundle's content: an absent file is an empty bundle (the
/// ConfigMap is optional and exists only during a rotation).
fn read_optional(path: Option<&Path>) -> Result<Vec<u8>, TlsError> {
    match path.map(std::fs::read) {
        None => Ok(Vec::new()),
        Some(Ok(bytes)) => Ok(bytes),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Some(Err(source)) => Err(TlsError::Read { path: path.unwrap_or(Path::new("")).to_owned(), source }),
    }
}

/// The files' content, to notice a change.
fn fingerprint(files: &TlsFiles) -> Result<Vec<u8>, TlsError> {
    let mut all = Vec::new();
    for p in [&files.cert, &files.key, &files.client_ca] {
        all.extend(ring::digest::digest(&ring::digest::SHA256, &read(p)?).as_ref());
    }
    let extra = read_optional(files.extra_ca.as_deref())?;
    all.extend(ring::digest::digest(&ring::digest::SHA256, &extra).as_ref());
    Ok(all)
}

/// Builds the server configuration from the files.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&files.cert, &read(&files.cert)?)?;
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: files.key.clone() },
        other => TlsError::Pem { path: files.key.clone(), message: other.to_string() },
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&files.client_ca, &read(&files.client_ca)?)? {
        roots.add(ca).map_err(|e| TlsError::Ca { path: files.client_ca.clone(), message: e.to_string() })?;
    }
    if let Some(path) = &files.extra_ca {
        let pem = read_optional(Some(path))?;
        let extra: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem { path: path.clone(), message: e.to_string() })?;
        for ca in extra {
            roots.add(ca).map_err(|e| TlsError::Ca { path: path.clone(), message: e.to_string() })?;
        }
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Ca { path: files.client_ca.clone(), message: e.to_string() })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Loads the files now, and then keeps `tx` current: every `interval` the
/// files are read and, if they changed and form a valid configuration, a new
/// configuration is published.
pub fn watch_files(
    files: TlsFiles,
    interval: Duration,
    shutdown: CancellationToken,
) -> Result<(watch::Receiver<Arc<ServerConfig>>, tokio::task::JoinHandle<()>), TlsError> {
    let first = load(&files)?;
    let mut last = fingerprint(&files)?;
    let (tx, rx) = watch::channel(first);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = match fingerprint(&files) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "certificate files unreadable; keeping the current ones");
                    continue;
                }
            };
            if now == last {
                continue;
            }
            match load(&files) {
                Ok(config) => {
                    last = now;
                    tx.send_replace(config);
                    tracing::info!(cert = %files.cert.display(), "certificates changed on disk: new connections use them");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificate files changed but are not usable (yet); keeping the current ones")
                }
            }
        }
    });
    Ok((rx, task))
}
