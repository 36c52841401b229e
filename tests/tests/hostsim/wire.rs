//! Endpoints, status codes, bodies and the JSON shape.

use crate::support::*;
use tests::hostsim::CommandKind;

#[tokio::test]
async fn os_is_compact_json_of_exactly_five_strings() {
    let host = start(config()).await;
    let r = get(&host, "/os").await;
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(!r.text().contains(": ") && !r.text().contains('\n'), "compact JSON: {}", r.text());
    let os = r.json().unwrap();
    let map = os.as_object().unwrap();
    let mut keys: Vec<_> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["arch", "build_id", "pretty_name", "variant_id", "version_id"]);
    assert!(map.values().all(|v| v.is_string()));
    assert_eq!(os["version_id"], "1.20.0");
    assert_eq!(os["variant_id"], "aws-k8s-1.29");
    assert_eq!(os["arch"], "x86_64");
    assert_eq!(os["pretty_name"], "Bottlerocket OS 1.20.0 (aws-k8s-1.29)");
    assert_eq!(host.os_version(), "1.20.0");
}

#[tokio::test]
async fn a_booted_host_answers_404_uninitialized_in_plain_text() {
    let host = start(config()).await;
    let r = get(&host, "/updates/status").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Update status is uninitialized, refresh-updates to initialize it");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
}

#[tokio::test]
async fn unknown_paths_are_404_empty_and_wrong_methods_405() {
    let host = start(config()).await;
    for path in ["/", "/settings", "/actions/update", "/updates/status/x"] {
        let r = get(&host, path).await;
        assert_eq!((r.status, r.body.len()), (404, 0), "{path}");
        let r = post(&host, path).await;
        assert_eq!((r.status, r.body.len()), (404, 0), "POST {path}");
    }
    for path in ["/os", "/updates/status"] {
        assert_eq!(post(&host, path).await.status, 405, "POST {path}");
    }
    for cmd in CommandKind::ALL {
        assert_eq!(get(&host, cmd.path()).await.status, 405, "GET {cmd:?}");
    }
    assert_eq!(get(&host, "/actions/reboot").await.status, 405);
    let r = tests::hostsim::raw::request(host.socket_path(), "DELETE", "/updates/status").await.unwrap();
    assert_eq!(r.status, 405);
    assert!(host.update_status().is_none(), "no status was created by refused requests");
}

#[tokio::test]
async fn actions_answer_204_with_no_body_and_the_status_has_every_key() {
    let host = start(config()).await;
    let r = action(&host, CommandKind::Refresh).await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(r.header("content-type"), None);
    settled_status(&host).await;
    let r = get(&host, "/updates/status").await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Keys in a real host's order, all present, null where empty.
    let text = r.text();
    let order = [
        "\"update_state\"",
        "\"available_updates\"",
        "\"chosen_update\"",
        "\"active_partition\"",
        "\"staging_partition\":null",
        "\"most_recent_command\"",
        "\"cmd_type\"",
        "\"cmd_status\"",
        "\"timestamp\"",
        "\"exit_status\"",
        "\"stderr\"",
    ];
    let positions: Vec<_> =
        order.iter().map(|k| text.find(k).unwrap_or_else(|| panic!("{k} missing in {text}"))).collect();
    assert!(positions.is_sorted(), "{text}");
    let s = r.json().unwrap();
    assert_eq!(s.as_object().unwrap().len(), 6);
    assert_eq!(s["most_recent_command"].as_object().unwrap().len(), 5);
    assert_eq!(
        s["chosen_update"],
        serde_json::json!({"arch": "x86_64", "version": "1.21.0", "variant": "aws-k8s-1.29"})
    );
    assert_eq!(
        s["active_partition"],
        serde_json::json!({"image": {"arch": "x86_64", "version": "1.20.0", "variant": "aws-k8s-1.29"}, "next_to_boot": true})
    );
}

#[tokio::test]
async fn timestamps_are_rfc3339_with_nine_digits_set_when_the_work_finished() {
    let host = start(config()).await;
    let before = jiff::Timestamp::now();
    let s = run(&host, CommandKind::Refresh).await;
    let after = jiff::Timestamp::now();
    let text = s["most_recent_command"]["timestamp"].as_str().unwrap();
    let (_, fraction) = text.split_once('.').unwrap();
    assert_eq!(fraction.len(), 10, "9 digits and Z: {text}");
    assert!(fraction.ends_with('Z'));
    let at: jiff::Timestamp = text.parse().unwrap();
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    let s2 = run(&host, CommandKind::Refresh).await;
    assert_ne!(
        s2["most_recent_command"]["timestamp"], s["most_recent_command"]["timestamp"],
        "two commands are told apart by their timestamps"
    );
}
