//! HTTPS clients for tests that speak to the authproxy directly: trusting a
//! given CA, with or without a client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::certs::TlsDir;

/// A client trusting `ca` (PEM file), presenting `identity` if given.
pub fn client(ca: &Path, identity: Option<&TlsDir>) -> reqwest::Client {
    client_from(ca, identity, None)
}

/// Like [`client`], connecting from `source` (a 127.0.0.0/8 address stands
/// for a distinct peer: the authproxy limits each peer address on its own).
pub fn client_from(ca: &Path, identity: Option<&TlsDir>, source: Option<std::net::IpAddr>) -> reqwest::Client {
    assert!(ca.exists(), "CA file {} exists", ca.display());
    client_trusting(&[ca], identity, source)
}

/// Like [`client_from`], trusting every certificate in `cas`, as an agent
/// trusts its `ca.crt` and the optional extra bundle: a file that does not
/// exist adds nothing. Responses carry the server's certificate
/// (`reqwest::tls::TlsInfo`).
pub fn client_trusting(cas: &[&Path], identity: Option<&TlsDir>, source: Option<std::net::IpAddr>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas.iter().filter(|p| p.exists()) {
        for c in CertificateDer::pem_file_iter(ca).expect("CA file") {
            roots.add(c.expect("CA certificate")).expect("CA accepted");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(id.cert()).expect("cert file").map(|c| c.expect("cert")).collect();
            let key = PrivateKeyDer::from_pem_file(id.key()).expect("key file");
            builder.with_client_auth_cert(chain, key).expect("client identity")
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .local_address(source)
        .tls_info(true)
        .use_preconfigured_tls(config)
        .http1_only()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}
