//! Scale check of the API simulator: a fleet of nodes, shadows and pods,
//! three watches per node (its pods by `spec.nodeName`, its shadow and its
//! Node by name) multiplexed over a few HTTP/2 connections, then a burst of
//! shadow status updates whose events must each reach their one watcher.
//!
//! `cargo run -p tests --release --example apisim_scale -- [NODES] [PODS_PER_NODE]`
//! (defaults 5000 and 10: 5,000 nodes, 5,000 shadows, 50,000 pods, 15,000 watches).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use http_body_util::{BodyExt, Empty};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tests::apisim::{ApiSim, SimOptions};

const NS: &str = "fleet";
const CONCURRENCY: usize = 64;
const STREAMS_PER_CONNECTION: usize = 500;

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

async fn create_all<F, Fut>(what: &str, n: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let t = Instant::now();
    stream::iter(0..n).map(&f).buffer_unordered(CONCURRENCY).try_collect::<Vec<()>>().await?;
    let secs = t.elapsed().as_secs_f64();
    println!("created {n} {what} in {secs:.1} s ({:.0}/s), RSS {} MiB", n as f64 / secs, rss_mib());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let nodes = args.first().copied().unwrap_or(5000);
    let per_node = args.get(1).copied().unwrap_or(10);
    let sim = ApiSim::start_with(SimOptions { tls: false, ..SimOptions::default() }).await?;
    let mut config = sim.client_config(&sim.admin_token());
    config.default_retry = false;
    let client = kube::Client::try_from(config)?;
    println!("simulator at {}, RSS {} MiB", sim.url(), rss_mib());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": NS}})))
        .await?;
    for crd in model::crds() {
        let api =
            Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(
                client.clone(),
            );
        api.patch(
            crd.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::apply("scale").force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    let node_api: Api<Node> = Api::all(client.clone());
    create_all("nodes", nodes, |i| {
        let api = node_api.clone();
        async move {
            api.create(&PostParams::default(), &obj(json!({"metadata": {"name": format!("node-{i}"), "labels": {"bottlerocket.aws/updater-interface-version": "2.0.0"}}}))).await?;
            Ok(())
        }
    })
    .await?;
    let brs: Api<model::BottlerocketShadow> = Api::namespaced(client.clone(), NS);
    create_all("shadows", nodes, |i| {
        let api = brs.clone();
        async move {
            let s = model::BottlerocketShadow::new(&format!("brs-node-{i}"), Default::default());
            api.create(&PostParams::default(), &s).await?;
            Ok(())
        }
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    create_all("pods", nodes * per_node, |i| {
        let api = pods.clone();
        async move {
            let p = json!({"metadata": {"name": format!("pod-{i}"), "labels": {"app": format!("app-{}", i % 50)}},
                "spec": {"nodeName": format!("node-{}", i % nodes), "containers": [{"name": "c", "image": "example.com/app:1.0"}]}});
            api.create(&PostParams::default(), &obj(p)).await?;
            Ok(())
        }
    })
    .await?;

    // Watches over HTTP/2 (h2c), as a client multiplexing many streams would.
    let rv = sim.resource_version();
    let url: http::Uri = sim.url().parse()?;
    let authority = url.authority().map(|a| a.to_string()).unwrap_or_default();
    let token = sim.admin_token();
    let paths: Vec<String> = (0..nodes)
        .flat_map(|i| {
            [
                format!("/api/v1/namespaces/{NS}/pods?watch=true&fieldSelector=spec.nodeName%3Dnode-{i}&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=3600"),
                format!("/apis/brupop.bottlerocket.aws/v2/namespaces/{NS}/bottlerocketshadows?watch=true&fieldSelector=metadata.name%3Dbrs-node-{i}&resourceVersion={rv}&timeoutSeconds=3600"),
                format!("/api/v1/nodes?watch=true&fieldSelector=metadata.name%3Dnode-{i}&resourceVersion={rv}&timeoutSeconds=3600"),
            ]
        })
        .collect();
    let t = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Bytes)>();
    let mut senders = Vec::new();
    for (c, chunk) in paths.chunks(STREAMS_PER_CONNECTION).enumerate() {
        let tcp = tokio::net::TcpStream::connect(&authority).await?;
        let mut builder = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder.max_concurrent_streams(100_000).initial_stream_window_size(65_535);
        let (send, conn) = builder.handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        for (j, path) in chunk.iter().enumerate() {
            let id = c * STREAMS_PER_CONNECTION + j;
            let req = http::Request::get(format!("http://{authority}{path}"))
                .header("authorization", format!("Bearer {token}"))
                .body(Empty::new())?;
            let mut send = send.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(resp) = send.send_request(req).await else {
                    return;
                };
                let mut body = resp.into_body();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        let _ = tx.send((id, data));
                    }
                }
            });
        }
        senders.push(send);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while sim.watch_count() < paths.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} watches open in {:.1} s over {} HTTP/2 connections, RSS {} MiB",
        sim.watch_count(),
        t.elapsed().as_secs_f64(),
        senders.len(),
        rss_mib()
    );

    // A burst of status updates: each event must reach exactly its shadow's watcher.
    let updates = nodes.min(1000);
    let t = Instant::now();
    create_all("shadow status updates", updates, |i| {
        let api = brs.clone();
        async move {
            let st = json!({"status": {"currentState": "Idle", "currentVersion": "1.0.0", "targetVersion": "1.1.0"}});
            api.patch_status(&format!("brs-node-{i}"), &PatchParams::default(), &Patch::Merge(st)).await?;
            Ok(())
        }
    })
    .await?;
    let mut got = 0;
    while got < updates {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some((id, data))) if id % 3 == 1 && data.windows(8).any(|w| w == b"MODIFIED") => got += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    println!(
        "{got}/{updates} shadow events delivered {:.1} s after the burst began; RSS {} MiB",
        t.elapsed().as_secs_f64(),
        rss_mib()
    );
    let stats = sim.request_log();
    println!("requests: {} ({} writes)", stats.total(), stats.writes());
    Ok(())
}
