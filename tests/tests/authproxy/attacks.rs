//! The attack catalogue: every way an agent (or something posing as one)
//! might try to act beyond its own node, each refused and counted.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_catalogue() {
    let f = fleet("authproxy-attacks", 2).await;
    let (a, b) = (f.nodes[0].clone(), f.nodes[1].clone());
    let tls = agent_tls(&f);
    let good = client(&tls.ca(), Some(&tls));
    let tok = agent_token(&f, &a, Some(AUDIENCE)).await;
    let api_tok = agent_token(&f, &a, None).await;
    let pods: Api<Pod> = Api::namespaced(f.client().clone(), &f.ns);
    // An impostor pod on node a, running as another ServiceAccount.
    let impostor: Pod = serde_json::from_value(json!({"metadata": {"name": "impostor"}, "spec": {"nodeName": a, "serviceAccountName": "default", "containers": [{"name": "x", "image": "x"}]}})).unwrap();
    let imp = pods.create(&PostParams::default(), &impostor).await.unwrap();
    let imp_tok =
        token(f.client(), &f.ns, "default", Some(AUDIENCE), Some(("impostor", imp.metadata.uid.as_deref().unwrap())))
            .await
            .unwrap();
    // A token bound to an agent pod that was then deleted.
    let ghost: Pod = serde_json::from_value(json!({"metadata": {"name": "ghost"}, "spec": {"nodeName": a, "serviceAccountName": AGENT_SA, "containers": [{"name": "x", "image": "x"}]}})).unwrap();
    let gh = pods.create(&PostParams::default(), &ghost).await.unwrap();
    let ghost_tok =
        token(f.client(), &f.ns, AGENT_SA, Some(AUDIENCE), Some(("ghost", gh.metadata.uid.as_deref().unwrap())))
            .await
            .unwrap();
    pods.delete("ghost", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    create_lease(&f, "brupop-slot-0", &b, true).await;
    create_lease(&f, "brupop-slot-7", &a, false).await;
    // Wait for the authproxy, then freeze the picture.
    wait_for("the authproxy to answer", T, || async {
        let r = send(
            &good,
            &url(&f, &format!("/v1/nodes/{a}/slot/renew")),
            "POST",
            Some(&tok),
            Some("application/json"),
            b"{}".to_vec(),
        )
        .await?;
        if r.0 == 400 { Ok(()) } else { Err(format!("{r:?}")) }
    })
    .await;
    let before = snapshot(&f).await;
    let foreign = f.pki.foreign_client("intruder").unwrap();
    let no_cert = client(&tls.ca(), None);
    let wrong_ca = client(&tls.ca(), Some(&foreign));
    let status = format!("/v1/nodes/{a}/status");
    let report = br#"{"state":"Idle","currentVersion":"1.20.0"}"#.to_vec();
    let j = Some("application/json");
    let p = |path: &str| url(&f, path);
    type Case<'a> = (
        &'a str,
        &'a reqwest::Client,
        String,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Vec<u8>,
        Option<(u16, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        ("no client certificate", &no_cert, p(&status), "POST", Some(&tok), j, report.clone(), None),
        ("client certificate from another CA", &wrong_ca, p(&status), "POST", Some(&tok), j, report.clone(), None),
        ("no token", &good, p(&status), "POST", None, j, report.clone(), Some((401, "Unauthenticated"))),
        ("empty bearer", &good, p(&status), "POST", Some(""), j, report.clone(), Some((401, "Unauthenticated"))),
        (
            "garbage token",
            &good,
            p(&status),
            "POST",
            Some("not-a-token"),
            j,
            report.clone(),
            Some((401, "Unauthenticated")),
        ),
        (
            "token for the API server's audience",
            &good,
            p(&status),
            "POST",
            Some(&api_tok),
            j,
            report.clone(),
            Some((401, "Unauthenticated")),
        ),
        (
            "token of a deleted pod",
            &good,
            p(&status),
            "POST",
            Some(&ghost_tok),
            j,
            report.clone(),
            Some((401, "Unauthenticated")),
        ),
        (
            "token of another ServiceAccount",
            &good,
            p(&status),
            "POST",
            Some(&imp_tok),
            j,
            report.clone(),
            Some((403, "NotAnAgent")),
        ),
        (
            "another node's status",
            &good,
            p(&format!("/v1/nodes/{b}/status")),
            "POST",
            Some(&tok),
            j,
            report.clone(),
            Some((403, "NodeMismatch")),
        ),
        (
            "another node's cordon",
            &good,
            p(&format!("/v1/nodes/{b}/cordon")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-slot-0","minRemainingSeconds":1}"#.to_vec(),
            Some((403, "NodeMismatch")),
        ),
        (
            "another node's drain",
            &good,
            p(&format!("/v1/nodes/{b}/drain")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-slot-0","minRemainingSeconds":1}"#.to_vec(),
            Some((403, "NodeMismatch")),
        ),
        (
            "another node's slot release",
            &good,
            p(&format!("/v1/nodes/{b}/slot/release")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-slot-0"}"#.to_vec(),
            Some((403, "NodeMismatch")),
        ),
        ("GET instead of POST", &good, p(&status), "GET", Some(&tok), None, vec![], Some((405, "MethodNotAllowed"))),
        (
            "unknown endpoint",
            &good,
            p(&format!("/v1/nodes/{a}/reboot")),
            "POST",
            Some(&tok),
            j,
            vec![],
            Some((404, "NotFound")),
        ),
        (
            "path outside the API",
            &good,
            p("/v1/nodes/../../api/v1/nodes"),
            "POST",
            Some(&tok),
            j,
            vec![],
            Some((404, "NotFound")),
        ),
        (
            "wrong content type",
            &good,
            p(&status),
            "POST",
            Some(&tok),
            Some("text/plain"),
            report.clone(),
            Some((415, "UnsupportedMediaType")),
        ),
        (
            "malformed JSON",
            &good,
            p(&status),
            "POST",
            Some(&tok),
            j,
            b"{\"state\":".to_vec(),
            Some((400, "InvalidBody")),
        ),
        (
            "unknown field",
            &good,
            p(&status),
            "POST",
            Some(&tok),
            j,
            br#"{"state":"Idle","currentVersion":"1.20.0","crashCount":0}"#.to_vec(),
            Some((400, "InvalidBody")),
        ),
        (
            "body too large",
            &good,
            p(&status),
            "POST",
            Some(&tok),
            j,
            vec![b' '; 64 * 1024],
            Some((413, "BodyTooLarge")),
        ),
        (
            "version that is not a version",
            &good,
            p(&status),
            "POST",
            Some(&tok),
            j,
            br#"{"state":"Idle","currentVersion":"$(reboot)"}"#.to_vec(),
            Some((422, "Invalid")),
        ),
        (
            "ErrorReset without a failure",
            &good,
            p(&status),
            "POST",
            Some(&tok),
            j,
            br#"{"state":"ErrorReset","currentVersion":"1.20.0"}"#.to_vec(),
            Some((422, "Invalid")),
        ),
        (
            "unknown state",
            &good,
            p(&status),
            "POST",
            Some(&tok),
            j,
            br#"{"state":"Rebooting","currentVersion":"1.20.0"}"#.to_vec(),
            Some((400, "InvalidBody")),
        ),
        (
            "renew a Lease that is not named as a slot",
            &good,
            p(&format!("/v1/nodes/{a}/slot/renew")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-leader","durationSeconds":60}"#.to_vec(),
            Some((422, "Invalid")),
        ),
        (
            "renew a Lease without the slot label",
            &good,
            p(&format!("/v1/nodes/{a}/slot/renew")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-slot-7","durationSeconds":60}"#.to_vec(),
            Some((422, "NotASlot")),
        ),
        (
            "renew another node's slot",
            &good,
            p(&format!("/v1/nodes/{a}/slot/renew")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-slot-0","durationSeconds":60}"#.to_vec(),
            Some((409, "NotHolder")),
        ),
        (
            "renew a slot that does not exist",
            &good,
            p(&format!("/v1/nodes/{a}/slot/renew")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-slot-3","durationSeconds":60}"#.to_vec(),
            Some((404, "NoSuchSlot")),
        ),
        (
            "renew for zero seconds",
            &good,
            p(&format!("/v1/nodes/{a}/slot/renew")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-slot-0","durationSeconds":0}"#.to_vec(),
            Some((422, "Invalid")),
        ),
        (
            "cordon with another node's slot",
            &good,
            p(&format!("/v1/nodes/{a}/cordon")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-slot-0","minRemainingSeconds":1}"#.to_vec(),
            Some((409, "NotHolder")),
        ),
        (
            "drain with another node's slot",
            &good,
            p(&format!("/v1/nodes/{a}/drain")),
            "POST",
            Some(&tok),
            j,
            br#"{"slot":"brupop-slot-0","minRemainingSeconds":1}"#.to_vec(),
            Some((409, "NotHolder")),
        ),
        (
            "slot request before any status",
            &good,
            p(&format!("/v1/nodes/{a}/slot/request")),
            "POST",
            Some(&tok),
            j,
            vec![],
            Some((409, "NoShadow")),
        ),
        (
            "encoded slash in the node name",
            &good,
            p(&format!("/v1/nodes/{a}%2F..%2F{b}/status")),
            "POST",
            Some(&tok),
            j,
            report.clone(),
            Some((403, "NodeMismatch")),
        ),
    ];
    let count = cases.len();
    for (what, c, u, method, token, ct, body, want) in cases {
        let got = send(c, &u, method, token, ct, body).await;
        match want {
            None => assert!(got.is_err(), "{what}: expected the TLS handshake to be refused, got {got:?}"),
            Some((code, reason)) => assert_eq!(got, Ok((code, reason.to_owned())), "{what}"),
        }
    }
    assert!(count >= 25, "{count} attacks");
    assert_eq!(snapshot(&f).await, before, "the cluster is unchanged after {count} hostile requests");
    let m = f.authproxy_metrics().await;
    assert!(metric(&m, "brupop_authproxy_denied_total{reason=\"NodeMismatch\"}").unwrap_or(0.0) >= 5.0, "{m}");
    f.stop().await;
}
