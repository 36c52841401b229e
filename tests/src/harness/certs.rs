//! Certificates the way cert-manager would issue them for a real install: one
//! CA, a server certificate for the authproxy (SANs `127.0.0.1` and
//! `localhost`), and one client certificate shared by the agents (the
//! DaemonSet's Certificate). Files are laid out as a mounted TLS Secret:
//! `tls.crt`, `tls.key`, `ca.crt`; the optional `brupop-ca-bundle`
//! ConfigMap both sides also trust is [`TestPki::ca_bundle`] (absent until
//! written, as the ConfigMap is absent until a CA key rotation).
//!
//! The CA renews as cert-manager renews it: [`TestPki::renew_ca`] re-signs the
//! same key (the shipped `rotationPolicy: Never`), [`TestPki::next_ca`] and
//! [`TestPki::switch_ca`] replace the key (a manual key rotation, or
//! cert-manager's default `Always`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A CA and the directories of the certificates it issued.
pub struct TestPki {
    dir: PathBuf,
    ca: TestCa,
}

/// A CA certificate and its key (kept, so that it can be re-signed).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
    name: String,
    generation: u8,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("name", &self.name).field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl TestCa {
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Where a mounted TLS Secret's three files are.
#[derive(Clone, Debug)]
pub struct TlsDir {
    pub dir: PathBuf,
}

impl TlsDir {
    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

/// A self-signed CA certificate for `key`; each generation has its own
/// serial number and validity, as a renewal by cert-manager has.
fn ca_with_key(name: &str, key_pem: String, generation: u8) -> anyhow::Result<TestCa> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| anyhow::anyhow!("random serial: {e}"))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.not_before = rcgen::date_time_ymd(2000 + i32::from(generation), 1, 1);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::from_pem(&key_pem)?)?;
    Ok(TestCa { issuer, key_pem, name: name.to_owned(), generation })
}

fn new_ca(name: &str) -> anyhow::Result<TestCa> {
    ca_with_key(name, KeyPair::generate()?.serialize_pem(), 0)
}

/// Writes a file atomically (write then rename), as the kubelet updates a mounted Secret.
fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(tmp, path)
}

impl TestPki {
    /// A new CA under `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<TestPki> {
        std::fs::create_dir_all(dir)?;
        Ok(TestPki { dir: dir.to_owned(), ca: new_ca("brupop test CA")? })
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn issue(&self, name: &str, sans: &[&str], server: bool, ca: &TestCa) -> anyhow::Result<TlsDir> {
        let mut params = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages =
            vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca.issuer)?;
        let out = TlsDir { dir: self.dir.join(name) };
        std::fs::create_dir_all(&out.dir)?;
        write_atomic(&out.key(), &key.serialize_pem())?;
        write_atomic(&out.cert(), &cert.pem())?;
        write_atomic(&out.ca(), &self.ca.pem())?;
        Ok(out)
    }

    /// The authproxy's server certificate (re-issuing rotates it in place).
    pub fn server(&self, name: &str) -> anyhow::Result<TlsDir> {
        self.issue(name, &["127.0.0.1", "localhost"], true, &self.ca)
    }

    /// A client certificate (the agents').
    pub fn client(&self, name: &str) -> anyhow::Result<TlsDir> {
        self.issue(name, &[], false, &self.ca)
    }

    /// A client certificate issued by `ca` (e.g. a CA not yet issuing), its
    /// `ca.crt` that CA.
    pub fn client_issued_by(&self, name: &str, ca: &TestCa) -> anyhow::Result<TlsDir> {
        let out = self.issue(name, &[], false, ca)?;
        write_atomic(&out.ca(), &ca.pem())?;
        Ok(out)
    }

    /// A client certificate from another, unrelated CA (for refusal tests).
    pub fn foreign_client(&self, name: &str) -> anyhow::Result<TlsDir> {
        let other = new_ca("some other CA")?;
        let out = self.issue(name, &[], false, &other)?;
        write_atomic(&out.ca(), &other.pem())?;
        Ok(out)
    }

    /// Replaces the CA with one of a new key (and so every certificate
    /// issued after this): cert-manager's renewal under `rotationPolicy: Always`.
    pub fn rotate_ca(&mut self) -> anyhow::Result<()> {
        self.ca = new_ca("brupop test CA (rotated)")?;
        Ok(())
    }

    /// Renews the CA certificate on the same key and subject (a new serial
    /// and validity): cert-manager's renewal under `rotationPolicy: Never`.
    /// Leaves issued before stay valid under the renewed certificate.
    pub fn renew_ca(&mut self) -> anyhow::Result<()> {
        let generation = self.ca.generation.checked_add(1).ok_or_else(|| anyhow::anyhow!("too many renewals"))?;
        self.ca = ca_with_key(&self.ca.name, self.ca.key_pem.clone(), generation)?;
        Ok(())
    }

    /// A CA of a new key and the same subject (as cert-manager would issue
    /// it from the same Certificate), not yet issuing: the first step of a
    /// key rotation puts it into the trusted bundle before anything is
    /// issued from it.
    pub fn next_ca(&self) -> anyhow::Result<TestCa> {
        ca_with_key(&self.ca.name, KeyPair::generate()?.serialize_pem(), 0)
    }

    /// Makes `ca` the issuing CA (certificates issued after this chain to it).
    pub fn switch_ca(&mut self, ca: TestCa) {
        self.ca = ca;
    }

    /// The extra trust bundle both sides read (the optional
    /// `brupop-ca-bundle` ConfigMap's `ca-bundle.crt`), absent until written.
    pub fn ca_bundle(&self) -> PathBuf {
        self.dir.join("ca-bundle").join("ca-bundle.crt")
    }

    /// Writes the extra trust bundle (concatenated PEM certificates).
    pub fn write_ca_bundle(&self, cas: &[String]) -> anyhow::Result<()> {
        let path = self.ca_bundle();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_atomic(&path, &cas.concat())?;
        Ok(())
    }

    /// Removes the extra trust bundle (the ConfigMap deleted).
    pub fn remove_ca_bundle(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.ca_bundle()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}
