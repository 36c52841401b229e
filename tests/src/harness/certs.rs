//! Certificates the way cert-manager would issue them for a real install: one
//! CA, a server certificate for the authproxy (SANs `127.0.0.1` and
//! `localhost`), and one client certificate shared by the agents (the
//! DaemonSet's Certificate). Files are laid out as a mounted TLS Secret:
//! `tls.crt`, `tls.key`, `ca.crt`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A CA and the directories of the certificates it issued.
pub struct TestPki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
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

fn new_ca(name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
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

    fn issue(
        &self,
        name: &str,
        sans: &[&str],
        server: bool,
        ca: &CertifiedIssuer<'static, KeyPair>,
    ) -> anyhow::Result<TlsDir> {
        let mut params = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages =
            vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, ca)?;
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

    /// A client certificate from another, unrelated CA (for refusal tests).
    pub fn foreign_client(&self, name: &str) -> anyhow::Result<TlsDir> {
        let other = new_ca("some other CA")?;
        let out = self.issue(name, &[], false, &other)?;
        write_atomic(&out.ca(), &other.pem())?;
        Ok(out)
    }

    /// Replaces the CA (and so every certificate issued after this).
    pub fn rotate_ca(&mut self) -> anyhow::Result<()> {
        self.ca = new_ca("brupop test CA (rotated)")?;
        Ok(())
    }
}
