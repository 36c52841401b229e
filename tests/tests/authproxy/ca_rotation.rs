//! CA rotation as cert-manager produces it, as file swaps through the test
//! PKI: the CA renews first, then the agents' leaf, then the authproxy's
//! leaf, while agents renew their slots throughout (each from its own
//! address, each renewal a new connection built from the files as they are
//! then, as an agent builds one after its files change). No renewal may fail.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tests::harness::certs::TlsDir;
use tests::harness::tlsclient::client_trusting;
use tokio::sync::RwLock;

use super::*;

const AGENTS: usize = 4;

/// Agents renewing their slots until stopped.
struct Renewing {
    stop: Arc<AtomicBool>,
    /// Successful renewals, per agent.
    renewed: Arc<Vec<AtomicU64>>,
    /// The server certificate (DER) each agent saw last.
    served: Arc<Mutex<Vec<Vec<u8>>>>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

/// The first certificate of a PEM file, as DER.
fn first_cert(path: &std::path::Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path).unwrap().next().unwrap().unwrap().to_vec()
}

/// Starts `AGENTS` agents renewing every 100 ms. `files` is held for reading
/// while an agent reads its certificate files (a swap holds it for writing:
/// a mounted Secret changes all at once).
async fn start_renewing(f: &Fleet, files: Arc<RwLock<()>>) -> Renewing {
    let stop = Arc::new(AtomicBool::new(false));
    let renewed: Arc<Vec<AtomicU64>> = Arc::new((0..AGENTS).map(|_| AtomicU64::new(0)).collect());
    let served = Arc::new(Mutex::new(vec![Vec::new(); AGENTS]));
    let mut tasks = Vec::new();
    for (i, node) in f.nodes.iter().take(AGENTS).enumerate() {
        let slot = format!("brupop-slot-{i}");
        create_lease(f, &slot, node, true).await;
        let tok = agent_token(f, node, Some(AUDIENCE)).await;
        let u = url(f, &format!("/v1/nodes/{node}/slot/renew"));
        let (tls, bundle) = (agent_tls(f), f.pki.ca_bundle());
        let (stop, renewed, served, files) = (stop.clone(), renewed.clone(), served.clone(), files.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let c = {
                    let _unchanging = files.read().await;
                    client_trusting(&[&tls.ca(), &bundle], Some(&tls), Some(node_address(i)))
                };
                let body = json!({"slot": slot, "durationSeconds": 60});
                match c.post(&u).bearer_auth(&tok).json(&body).send().await {
                    Ok(r) if r.status() == 200 => {
                        if let Some(info) = r.extensions().get::<reqwest::tls::TlsInfo>() {
                            served.lock().unwrap()[i] = info.peer_certificate().unwrap_or_default().to_vec();
                        }
                        renewed[i].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failed.push(format!("agent {i}: {} {}", r.status(), r.text().await.unwrap_or_default())),
                    Err(e) => failed.push(format!("agent {i}: {e:?}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            failed
        }));
    }
    let r = Renewing { stop, renewed, served, tasks };
    r.each_renewed_more("the agents' first renewals", 1).await;
    r
}

impl Renewing {
    fn counts(&self) -> Vec<u64> {
        self.renewed.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    /// Waits until every agent has renewed `more` times since now.
    async fn each_renewed_more(&self, what: &str, more: u64) {
        let start = self.counts();
        wait_for(what, T, || async {
            let now = self.counts();
            if now.iter().zip(&start).all(|(n, s)| *n >= s + more) { Ok(()) } else { Err(format!("{now:?}")) }
        })
        .await;
    }

    /// Waits until every agent has been served `cert` (DER).
    async fn each_served(&self, cert: &[u8]) {
        wait_for("every agent to be served the renewed server certificate", T, || async {
            let served = self.served.lock().unwrap().clone();
            if served.iter().all(|s| s == cert) { Ok(()) } else { Err("not yet".to_owned()) }
        })
        .await;
    }

    /// Stops the agents; the failed renewals.
    async fn stop(mut self) -> (Vec<u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failed = Vec::new();
        for t in std::mem::take(&mut self.tasks) {
            failed.extend(t.await.unwrap());
        }
        (self.counts(), failed)
    }
}

/// Whether a new connection presenting `identity` (and trusting the server's
/// current CA) gets an answer from the authproxy.
async fn accepted(f: &Fleet, identity: &TlsDir, tok: &str) -> bool {
    let server_ca = TlsDir { dir: f.dir.join("pki").join("authproxy") }.ca();
    let c = client_trusting(&[&server_ca, &f.pki.ca_bundle()], Some(identity), Some("127.0.4.1".parse().unwrap()));
    let u = url(f, &format!("/v1/nodes/{}/status", f.nodes[0]));
    send(&c, &u, "POST", Some(tok), Some("application/json"), br#"{"state":"Idle","currentVersion":"1.20.0"}"#.to_vec())
        .await
        .is_ok_and(|(code, _)| code == 200)
}

/// The shipped configuration (`rotationPolicy: Never`): the CA renews on its
/// key, then the agents' leaf renews, then the authproxy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_renewal_on_the_same_key_loses_no_agent_renewal() {
    let mut f = fleet("authproxy-ca-renewal", AGENTS).await;
    let files = Arc::new(RwLock::new(()));
    let original_ca = f.pki.ca_pem();
    let agents = start_renewing(&f, files.clone()).await;

    // 1. cert-manager renews the CA: same key and subject, new certificate.
    // Nothing mounted changes yet (the leaves' ca.crt is the old CA's).
    f.pki.renew_ca().unwrap();
    assert_ne!(f.pki.ca_pem(), original_ca, "a new CA certificate");
    agents.each_renewed_more("renewals after the CA renewal", 3).await;

    // 2. The agents' leaf renews: signed by the renewed CA, whose ca.crt
    // the agents now trust; the authproxy still trusts only the old one.
    {
        let _swap = files.write().await;
        f.pki.client("agent").unwrap();
    }
    assert_eq!(std::fs::read_to_string(agent_tls(&f).ca()).unwrap(), f.pki.ca_pem());
    agents.each_renewed_more("renewals with the renewed agent leaf", 5).await;

    // 3. The authproxy's leaf renews (and its ca.crt becomes the renewed CA).
    let server = {
        let _swap = files.write().await;
        f.pki.server("authproxy").unwrap()
    };
    agents.each_served(&first_cert(&server.cert())).await;
    agents.each_renewed_more("renewals with the renewed server leaf", 5).await;

    let (counts, failed) = agents.stop().await;
    println!("renewals per agent across the CA renewal: {counts:?}");
    assert!(failed.is_empty(), "renewals failed during the CA renewal: {failed:#?}");
    f.stop().await;
}

/// The manual key rotation (SECURITY.md, "Rotating the CA key"): the new CA
/// goes into the bundle both sides trust first, then the CA switches key,
/// the agents' leaf renews, the authproxy's leaf renews, and the old CA is
/// dropped from the bundle, after which it is trusted no longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_key_rotation_through_the_trust_bundle_loses_no_agent_renewal() {
    let mut f = fleet("authproxy-ca-key-rotation", AGENTS).await;
    let files = Arc::new(RwLock::new(()));
    let tok = agent_token(&f, &f.nodes[0], Some(AUDIENCE)).await;
    let old_ca = f.pki.ca_pem();
    // A copy of the agents' leaf from the old CA, to check its trust at the end.
    let old_leaf = TlsDir { dir: f.dir.join("old-agent-leaf") };
    std::fs::create_dir_all(&old_leaf.dir).unwrap();
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        std::fs::copy(agent_tls(&f).dir.join(file), old_leaf.dir.join(file)).unwrap();
    }
    let agents = start_renewing(&f, files.clone()).await;

    // 0. The new CA (same subject, new key) exists but does not issue yet.
    // Without the bundle, its certificates are refused: that is the outage
    // a key change without this procedure causes.
    let next = f.pki.next_ca().unwrap();
    let probe = f.pki.client_issued_by("probe-next-ca", &next).unwrap();
    assert!(!accepted(&f, &probe, &tok).await, "a leaf of the new CA is refused before the bundle");

    // 1. The bundle with the old and the new CA, on both sides.
    f.pki.write_ca_bundle(&[old_ca.clone(), next.pem()]).unwrap();
    wait_for("the authproxy to trust the bundle", T, || async {
        if accepted(&f, &probe, &tok).await { Ok(()) } else { Err("refused".to_owned()) }
    })
    .await;

    // 2. The CA switches to the new key.
    f.pki.switch_ca(next);
    agents.each_renewed_more("renewals after the CA key change", 3).await;

    // 3. The agents' leaf renews from the new CA.
    {
        let _swap = files.write().await;
        f.pki.client("agent").unwrap();
    }
    agents.each_renewed_more("renewals with the new agent leaf", 5).await;

    // 4. The authproxy's leaf renews from the new CA.
    let server = {
        let _swap = files.write().await;
        f.pki.server("authproxy").unwrap()
    };
    agents.each_served(&first_cert(&server.cert())).await;
    agents.each_renewed_more("renewals with the new server leaf", 5).await;

    // 5. The old CA leaves the bundle (the ConfigMap is deleted).
    assert!(accepted(&f, &old_leaf, &tok).await, "the old CA is still trusted while in the bundle");
    {
        let _swap = files.write().await;
        f.pki.remove_ca_bundle().unwrap();
    }
    wait_for("the authproxy to stop trusting the old CA", T, || async {
        if accepted(&f, &old_leaf, &tok).await { Err("still accepted".to_owned()) } else { Ok(()) }
    })
    .await;
    agents.each_renewed_more("renewals after the old CA is dropped", 5).await;

    let (counts, failed) = agents.stop().await;
    println!("renewals per agent across the CA key rotation: {counts:?}");
    assert!(failed.is_empty(), "renewals failed during the CA key rotation: {failed:#?}");
    // The agents' side trusts only the new CA now, too.
    assert!(!f.pki.ca_bundle().exists());
    assert_eq!(std::fs::read_to_string(agent_tls(&f).ca()).unwrap(), f.pki.ca_pem());
    assert_ne!(f.pki.ca_pem(), old_ca);
    f.stop().await;
}
