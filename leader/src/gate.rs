//! The alert gate's I/O edge: a task that asks Prometheus every
//! `pollInterval` and hands the answer, with the time it came, to the
//! decisions ([`crate::decide`] judges it: firing, clear, unreachable or
//! stale). It runs on every replica, leader or standby, so a replica that
//! takes over decides on a fresh answer.
//!
//! Only Prometheus's HTTP API is spoken: `GET /api/v1/alerts` for alert
//! names (an alert blocks while its state is `firing`; `pending` does not),
//! `GET /api/v1/query?query=` for a PromQL expression (blocks while it
//! returns any series). Every question has the gate's timeout, answers are
//! read up to [`MAX_ANSWER`] bytes, redirects are not followed.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::decide::{GateAnswer, GateObservation, GateSettings, GateTarget};
use crate::metrics::Metrics;

/// The largest answer read from Prometheus (a fleet's alert list is far smaller).
pub const MAX_ANSWER: usize = 4 << 20;
/// The most alerts or series an answer names in the status.
pub const MAX_NAMED: usize = 10;
/// The longest name of one series (its labels) in the status.
const MAX_SERIES_TEXT: usize = 200;

/// The two ends the decision loop holds: the gate to ask for (sent on
/// every change of the spec), and the last answer.
#[derive(Debug)]
pub struct GateHandle {
    pub config: watch::Sender<Option<GateSettings>>,
    pub answers: watch::Receiver<Option<GateObservation>>,
}

/// Starts the poller; it stops at `shutdown` or when the handle is dropped.
pub fn spawn(metrics: Metrics, shutdown: CancellationToken) -> GateHandle {
    let (config, config_rx) = watch::channel(None);
    let (answers_tx, answers) = watch::channel(None);
    tokio::spawn(run(config_rx, answers_tx, metrics, shutdown));
    GateHandle { config, answers }
}

async fn run(
    mut config: watch::Receiver<Option<GateSettings>>,
    answers: watch::Sender<Option<GateObservation>>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(90))
        .build();
    loop {
        let gate = config.borrow_and_update().clone();
        let Some(gate) = gate else {
            answers.send_if_modified(|a| a.take().is_some());
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = config.changed() => if changed.is_err() { return },
            }
            continue;
        };
        let started = Instant::now();
        let answer = match &client {
            Ok(client) => tokio::select! {
                () = shutdown.cancelled() => return,
                a = ask(client, &gate) => a,
            },
            Err(e) => GateAnswer::Unreachable(format!("building the HTTP client: {e}")),
        };
        let result = match &answer {
            GateAnswer::Clear => "clear",
            GateAnswer::Firing(_) => "firing",
            GateAnswer::Unreachable(_) => "unreachable",
        };
        metrics.alert_gate_checks.with_label_values(&[result]).inc();
        let seen = GateObservation { gate: gate.clone(), at: Timestamp::now(), answer };
        // Every answer refreshes the time; only a different one wakes the decisions.
        answers.send_if_modified(|last| {
            let changed = last.as_ref().is_none_or(|l| l.gate != seen.gate || l.answer != seen.answer);
            if changed {
                match &seen.answer {
                    GateAnswer::Unreachable(why) => {
                        tracing::warn!(url = %gate.url, %why, "alert gate: Prometheus unreachable")
                    }
                    other => tracing::info!(url = %gate.url, answer = ?other, "alert gate: answer changed"),
                }
            }
            *last = Some(seen);
            changed
        });
        let next = tokio::time::Instant::from_std(started + gate.poll_interval);
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = config.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(next) => {}
        }
    }
}

/// Asks Prometheus once, within the gate's timeout.
pub async fn ask(client: &reqwest::Client, gate: &GateSettings) -> GateAnswer {
    let url = match &gate.target {
        GateTarget::Alerts(_) => reqwest::Url::parse(&format!("{}/api/v1/alerts", gate.url)),
        GateTarget::Query(q) => reqwest::Url::parse_with_params(&format!("{}/api/v1/query", gate.url), [("query", q)]),
    };
    let url = match url {
        Ok(u) => u,
        Err(e) => return GateAnswer::Unreachable(format!("{}: not a URL: {e}", gate.url)),
    };
    let late = || format!("no answer within {}", humantime::format_duration(gate.timeout));
    let failed = |e: reqwest::Error| if e.is_timeout() { late() } else { error_chain(&e) };
    let asked = async {
        let mut resp = client
            .get(url.clone())
            .timeout(gate.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(failed)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("the answer is larger than {} MiB", MAX_ANSWER >> 20));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let why = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(format!("answered {status}: {why}"));
        }
        Ok(body)
    };
    let body = match tokio::time::timeout(gate.timeout, asked).await {
        Ok(Ok(body)) => body,
        Ok(Err(why)) => return GateAnswer::Unreachable(format!("{}: {why}", url.path())),
        Err(_) => return GateAnswer::Unreachable(format!("{}: {}", url.path(), late())),
    };
    let read = match &gate.target {
        GateTarget::Alerts(names) => firing_alerts(&body, names),
        GateTarget::Query(_) => query_series(&body),
    };
    match read {
        Ok(firing) if firing.is_empty() => GateAnswer::Clear,
        Ok(firing) => GateAnswer::Firing(firing),
        Err(why) => GateAnswer::Unreachable(format!("{}: {why}", url.path())),
    }
}

/// An error with its causes (reqwest's own message is often just "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// The data of a successful Prometheus API answer.
fn data(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not a Prometheus API answer: {e}"))?;
    if v.get("status").and_then(Value::as_str) != Some("success") {
        let why = v.get("error").and_then(Value::as_str).unwrap_or("no error given");
        return Err(format!("status is not success: {why}"));
    }
    v.get("data").cloned().ok_or_else(|| "no data in the answer".to_owned())
}

/// The names among `names` of the alerts that fire in an `/api/v1/alerts` answer, sorted.
pub fn firing_alerts(body: &[u8], names: &[String]) -> Result<Vec<String>, String> {
    let data = data(body)?;
    let alerts = data.get("alerts").and_then(Value::as_array).ok_or("no alerts list in the answer")?;
    let mut firing: Vec<String> = alerts
        .iter()
        .filter(|a| a.get("state").and_then(Value::as_str) == Some("firing"))
        .filter_map(|a| a.get("labels")?.get("alertname")?.as_str())
        .filter(|n| names.iter().any(|w| w == n))
        .map(str::to_owned)
        .collect();
    firing.sort();
    firing.dedup();
    Ok(firing)
}

/// The series an `/api/v1/query` answer returned, as label sets (at most
/// [`MAX_NAMED`], then how many more). A scalar or string result is an
/// error: the gate needs an expression that returns series.
pub fn query_series(body: &[u8]) -> Result<Vec<String>, String> {
    let data = data(body)?;
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("none");
    if !matches!(kind, "vector" | "matrix") {
        return Err(format!("the query must return series (an instant vector), not {kind}"));
    }
    let result = data.get("result").and_then(Value::as_array).ok_or("no result in the answer")?;
    let mut named: Vec<String> = result
        .iter()
        .take(MAX_NAMED)
        .map(|s| {
            let mut labels: Vec<String> = s
                .get("metric")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            labels.sort();
            let text = format!("{{{}}}", labels.join(","));
            if text.chars().count() > MAX_SERIES_TEXT {
                format!("{}...}}", text.chars().take(MAX_SERIES_TEXT).collect::<String>())
            } else {
                text
            }
        })
        .collect();
    if result.len() > MAX_NAMED {
        named.push(format!("and {} more series", result.len() - MAX_NAMED));
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn gate_at(addr: std::net::SocketAddr) -> GateSettings {
        GateSettings {
            url: format!("http://{addr}"),
            target: GateTarget::Alerts(vec!["A".into()]),
            poll_interval: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
            on_unreachable: model::alert_gate::OnUnreachable::Block,
        }
    }

    /// A server answering every connection with `answer` (or never, if `None`).
    async fn serve(answer: Option<Vec<u8>>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    match answer {
                        Some(a) => {
                            let _ = conn.write_all(&a).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        addr
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().build().unwrap()
    }

    #[tokio::test]
    async fn a_slow_an_oversized_or_a_refused_answer_is_unreachable() {
        let silent = serve(None).await;
        let started = Instant::now();
        let a = ask(&client(), &gate_at(silent)).await;
        assert!(matches!(&a, GateAnswer::Unreachable(w) if w.contains("no answer within")), "{a:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "bounded by the timeout");
        let body = vec![b' '; MAX_ANSWER + 1];
        let mut huge = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        huge.extend_from_slice(&body);
        let gate = GateSettings { timeout: Duration::from_secs(10), ..gate_at(serve(Some(huge)).await) };
        let a = ask(&client(), &gate).await;
        assert!(matches!(&a, GateAnswer::Unreachable(w) if w.contains("larger than")), "{a:?}");
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let a = ask(&client(), &gate_at(refused)).await;
        assert!(matches!(&a, GateAnswer::Unreachable(w) if w.starts_with("/api/v1/alerts: ")), "{a:?}");
        let err = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\n\r\nbusy!".to_vec();
        let a = ask(&client(), &gate_at(serve(Some(err)).await)).await;
        assert!(matches!(&a, GateAnswer::Unreachable(w) if w.contains("503") && w.contains("busy!")), "{a:?}");
    }

    #[tokio::test]
    async fn a_firing_answer_names_the_alert() {
        let body = br#"{"status":"success","data":{"alerts":[{"labels":{"alertname":"A"},"state":"firing"}]}}"#;
        let mut answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        answer.extend_from_slice(body);
        let a = ask(&client(), &gate_at(serve(Some(answer)).await)).await;
        assert_eq!(a, GateAnswer::Firing(vec!["A".into()]));
    }

    #[test]
    fn only_firing_alerts_of_the_watched_names_count() {
        let body = br#"{"status":"success","data":{"alerts":[
            {"labels":{"alertname":"NodeDown","instance":"a"},"state":"firing"},
            {"labels":{"alertname":"NodeDown","instance":"b"},"state":"firing"},
            {"labels":{"alertname":"DiskFull"},"state":"pending"},
            {"labels":{"alertname":"Other"},"state":"firing"},
            {"labels":{},"state":"firing"}
        ]}}"#;
        let names = ["NodeDown".to_owned(), "DiskFull".to_owned()];
        assert_eq!(firing_alerts(body, &names), Ok(vec!["NodeDown".to_owned()]));
        let none = br#"{"status":"success","data":{"alerts":[]}}"#;
        assert_eq!(firing_alerts(none, &names), Ok(vec![]));
    }

    #[test]
    fn an_answer_that_is_not_prometheus_s_is_an_error() {
        let names = ["A".to_owned()];
        assert!(firing_alerts(b"<html>", &names).unwrap_err().contains("not a Prometheus API answer"));
        let e = firing_alerts(br#"{"status":"error","error":"boom"}"#, &names).unwrap_err();
        assert!(e.contains("boom"), "{e}");
        assert!(firing_alerts(br#"{"status":"success","data":{}}"#, &names).is_err());
    }

    #[test]
    fn a_query_blocks_with_its_series_and_refuses_scalars() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"api","instance":"x"},"value":[1,"1"]}]}}"#;
        assert_eq!(query_series(body), Ok(vec![r#"{instance="x",job="api"}"#.to_owned()]));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(query_series(empty), Ok(vec![]));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#;
        assert!(query_series(scalar).unwrap_err().contains("scalar"));
        let many: Vec<String> = (0..25).map(|i| format!(r#"{{"metric":{{"i":"{i}"}},"value":[1,"1"]}}"#)).collect();
        let body = format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, many.join(","));
        let named = query_series(body.as_bytes()).unwrap();
        assert_eq!(named.len(), MAX_NAMED + 1);
        assert_eq!(named.last().map(String::as_str), Some("and 15 more series"));
    }
}
