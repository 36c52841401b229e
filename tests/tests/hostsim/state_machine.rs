//! Every row of the fact sheet's state-machine table, the order of the
//! checks (423 → 409 → 404), and the update lock.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};
use tests::hostsim::{CommandKind, Fault, HostConfig, HostFleet, Timings};

fn versions(s: &Value) -> Vec<&str> {
    s["available_updates"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
}

async fn expect(host: &tests::hostsim::HostSim, cmd: CommandKind, status: u16, body: &str) {
    let r = action(host, cmd).await;
    assert_eq!((r.status, r.text().as_str()), (status, body), "{cmd:?}");
    if status != 204 {
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    }
}

const NOT_ALLOWED: &str = "Update action not allowed according to update state";

#[tokio::test]
async fn refresh_lists_newest_first_and_chooses_the_newest_newer_release() {
    let host = start(config()).await;
    let s = run(&host, CommandKind::Refresh).await;
    assert_eq!(s["update_state"], "Available");
    assert_eq!(versions(&s), ["1.21.0", "1.20.1", "1.20.0", "1.19.5"]);
    assert_eq!(s["chosen_update"]["version"], "1.21.0");
    assert_eq!(last_command(&s), ("refresh", "Success", 0, ""));
}

#[tokio::test]
async fn refresh_without_a_newer_release_is_idle_and_available_falls_back_to_idle() {
    let host = start(HostConfig::new("1.21.0").available(&["1.21.0", "1.20.0"]).timings(fast())).await;
    let s = run(&host, CommandKind::Refresh).await;
    assert_eq!((s["update_state"].as_str(), &s["chosen_update"]), (Some("Idle"), &Value::Null));
    let host = start(config()).await;
    run(&host, CommandKind::Refresh).await;
    host.repository().withdraw("1.21.0");
    host.repository().withdraw("1.20.1");
    let s = run(&host, CommandKind::Refresh).await;
    assert_eq!(s["update_state"], "Idle");
    assert_eq!(versions(&s), ["1.20.0", "1.19.5"]);
}

#[tokio::test]
async fn a_failed_refresh_goes_idle_and_keeps_the_old_lists() {
    let host = start(config()).await;
    run(&host, CommandKind::Refresh).await;
    host.set_fault(Fault::CommandFails {
        command: CommandKind::Refresh,
        exit_status: 1,
        stderr: "Failed to fetch manifest\n".into(),
    });
    let s = run(&host, CommandKind::Refresh).await;
    assert_eq!(s["update_state"], "Idle");
    assert_eq!(versions(&s), ["1.21.0", "1.20.1", "1.20.0", "1.19.5"]);
    assert_eq!(s["chosen_update"]["version"], "1.21.0");
    assert_eq!(last_command(&s), ("refresh", "Failed", 1, "Failed to fetch manifest\n"));
}

#[tokio::test]
async fn refresh_in_staged_and_ready_keeps_the_state_and_rewrites_the_lists() {
    for to_ready in [false, true] {
        let host = start(config()).await;
        walk(&host, to_ready).await;
        let state = if to_ready { "Ready" } else { "Staged" };
        host.repository().withdraw("1.21.0");
        host.repository().withdraw("1.20.1");
        let s = run(&host, CommandKind::Refresh).await;
        assert_eq!(s["update_state"], state);
        assert_eq!(s["chosen_update"], Value::Null, "may become null");
        assert_eq!(versions(&s), ["1.20.0", "1.19.5"]);
        assert_eq!(s["staging_partition"]["image"]["version"], "1.21.0");
        host.set_fault(Fault::CommandFails { command: CommandKind::Refresh, exit_status: 2, stderr: "x".into() });
        let s = run(&host, CommandKind::Refresh).await;
        assert_eq!(s["update_state"], state, "a failed refresh leaves {state} alone");
    }
}

#[tokio::test]
async fn prepare_stages_the_chosen_image_not_to_boot_yet() {
    let host = start(config()).await;
    run(&host, CommandKind::Refresh).await;
    let s = run(&host, CommandKind::Prepare).await;
    assert_eq!(s["update_state"], "Staged");
    assert_eq!(
        s["staging_partition"],
        json!({"image": {"arch": "x86_64", "version": "1.21.0", "variant": "aws-k8s-1.29"}, "next_to_boot": false})
    );
    assert_eq!(s["active_partition"]["next_to_boot"], true);
    assert_eq!(last_command(&s), ("prepare", "Success", 0, "Starting update to 1.21.0\n"));
}

#[tokio::test]
async fn prepare_again_in_staged_stages_a_newer_chosen_release() {
    let host = start(config()).await;
    walk(&host, false).await;
    host.repository().publish("1.22.0");
    run(&host, CommandKind::Refresh).await;
    let s = run(&host, CommandKind::Prepare).await;
    assert_eq!(s["update_state"], "Staged");
    assert_eq!(s["staging_partition"]["image"]["version"], "1.22.0");
}

#[tokio::test]
async fn prepare_is_409_in_idle_and_ready_and_404_without_a_chosen_update() {
    let host = start(HostConfig::new("1.21.0").timings(fast())).await;
    run(&host, CommandKind::Refresh).await;
    expect(&host, CommandKind::Prepare, 409, NOT_ALLOWED).await;
    let host = start(config()).await;
    walk(&host, true).await;
    expect(&host, CommandKind::Prepare, 409, NOT_ALLOWED).await;
    let host = start(config()).await;
    walk(&host, false).await;
    host.repository().withdraw("1.21.0");
    host.repository().withdraw("1.20.1");
    run(&host, CommandKind::Refresh).await;
    expect(&host, CommandKind::Prepare, 404, "Previously chosen Update no longer exists").await;
}

#[tokio::test]
async fn failed_prepare_activate_and_deactivate_change_nothing() {
    let cases = [
        (CommandKind::Prepare, false, "Available"),
        (CommandKind::Activate, false, "Staged"),
        (CommandKind::Deactivate, true, "Ready"),
    ];
    for (cmd, _, state) in cases {
        let host = start(config()).await;
        let before = match cmd {
            CommandKind::Prepare => run(&host, CommandKind::Refresh).await,
            CommandKind::Activate => walk(&host, false).await,
            _ => walk(&host, true).await,
        };
        host.set_fault(Fault::CommandFails { command: cmd, exit_status: -9, stderr: "killed\n".into() });
        let s = run(&host, cmd).await;
        assert_eq!(s["update_state"], state, "{cmd:?}");
        assert_eq!(s["staging_partition"], before["staging_partition"]);
        assert_eq!(s["active_partition"], before["active_partition"]);
        let (kind, status, exit, stderr) = last_command(&s);
        assert_eq!((status, exit, stderr), ("Failed", -9, "killed\n"), "{kind}");
    }
}

#[tokio::test]
async fn activate_marks_the_staged_image_to_boot_next_and_deactivate_flips_back() {
    let host = start(config()).await;
    walk(&host, false).await;
    let s = run(&host, CommandKind::Activate).await;
    assert_eq!(s["update_state"], "Ready");
    assert_eq!(s["staging_partition"]["next_to_boot"], true);
    assert_eq!(s["active_partition"]["next_to_boot"], false);
    assert_eq!(last_command(&s), ("activate", "Success", 0, ""));
    let s = run(&host, CommandKind::Deactivate).await;
    assert_eq!(s["update_state"], "Staged");
    assert_eq!(s["staging_partition"]["next_to_boot"], false);
    assert_eq!(s["active_partition"]["next_to_boot"], true);
    assert_eq!(last_command(&s), ("deactivate", "Success", 0, ""));
}

#[tokio::test]
async fn activate_and_deactivate_outside_their_state_are_409() {
    let host = start(config()).await;
    for cmd in [CommandKind::Activate, CommandKind::Deactivate] {
        expect(&host, cmd, 409, NOT_ALLOWED).await; // Idle
    }
    run(&host, CommandKind::Refresh).await;
    for cmd in [CommandKind::Activate, CommandKind::Deactivate] {
        expect(&host, cmd, 409, NOT_ALLOWED).await; // Available
    }
    run(&host, CommandKind::Prepare).await;
    expect(&host, CommandKind::Deactivate, 409, NOT_ALLOWED).await; // Staged
    run(&host, CommandKind::Activate).await;
    expect(&host, CommandKind::Activate, 409, NOT_ALLOWED).await; // Ready
}

#[tokio::test]
async fn a_refused_action_creates_an_idle_status_with_nulls() {
    for cmd in [CommandKind::Prepare, CommandKind::Activate, CommandKind::Deactivate] {
        let host = start(config()).await;
        expect(&host, cmd, 409, NOT_ALLOWED).await;
        let r = get(&host, "/updates/status").await;
        assert_eq!(r.status, 200, "{cmd:?} created the status file");
        assert_eq!(
            r.json().unwrap(),
            json!({
                "update_state": "Idle",
                "available_updates": [],
                "chosen_update": null,
                "active_partition": {"image": {"arch": "x86_64", "version": "1.20.0", "variant": "aws-k8s-1.29"}, "next_to_boot": true},
                "staging_partition": null,
                "most_recent_command": null
            })
        );
    }
}

#[tokio::test]
async fn the_lock_is_checked_first_then_the_state_then_the_image() {
    let host = start(config()).await;
    run(&host, CommandKind::Refresh).await;
    host.set_fault(Fault::CommandHangs(CommandKind::Refresh));
    expect(&host, CommandKind::Refresh, 204, "").await;
    // Would be 409 (activate in Available): the lock answers first.
    expect(&host, CommandKind::Activate, 423, "Update lock held").await;
    assert_eq!(get(&host, "/updates/status").await.status, 423);
    host.clear_faults();
    let s = settled_status(&host).await;
    assert_eq!(s["update_state"], "Available");
    // Deactivate in Available with nothing staged: 409, not 404.
    expect(&host, CommandKind::Deactivate, 409, NOT_ALLOWED).await;
}

#[tokio::test]
async fn after_a_204_a_read_sees_the_lock_or_the_finished_command_never_the_old_status() {
    let host = start(config().timings(Timings { refresh: Duration::from_millis(30), ..fast() })).await;
    let mut saw_lock = false;
    let mut previous = Value::Null;
    for _ in 0..5 {
        expect(&host, CommandKind::Refresh, 204, "").await;
        let r = get(&host, "/updates/status").await;
        match r.status {
            423 => saw_lock = true,
            200 => assert_ne!(
                r.json().unwrap()["most_recent_command"],
                previous,
                "a read after the 204 showed the status from before"
            ),
            other => panic!("unexpected {other}"),
        }
        previous = settled_status(&host).await["most_recent_command"].clone();
    }
    assert!(saw_lock, "a 30 ms command was never seen running");
}

#[tokio::test]
async fn a_status_reader_holding_the_shared_lock_makes_actions_423() {
    let host = start(config()).await;
    run(&host, CommandKind::Refresh).await;
    let guard = host.hold_status_lock().unwrap();
    expect(&host, CommandKind::Prepare, 423, "Update lock held").await;
    assert_eq!(get(&host, "/updates/status").await.status, 200, "reads share the lock");
    drop(guard);
    expect(&host, CommandKind::Prepare, 204, "").await;
    assert_eq!(host.hold_status_lock().unwrap_err(), 423, "a command holds the lock");
}

#[tokio::test]
async fn a_slow_status_read_holds_the_shared_lock_while_it_reads() {
    let host = start(config().timings(Timings { status_read_hold: Duration::from_millis(800), ..fast() })).await;
    let socket = host.socket_path().to_owned();
    let reader = tokio::spawn(async move { tests::hostsim::raw::request(&socket, "GET", "/updates/status").await });
    eventually("the reader to hold the lock", || async { (host.state().status_readers == 1).then_some(()) }).await;
    expect(&host, CommandKind::Refresh, 423, "Update lock held").await;
    assert_eq!(reader.await.unwrap().unwrap().status, 404, "the read itself completes");
    assert_eq!(host.state().status_readers, 0);
    expect(&host, CommandKind::Refresh, 204, "").await;
}

#[tokio::test]
async fn lock_contention_refuses_the_next_actions_then_lets_them_through() {
    let host = start(config().fault(Fault::LockContention { count: 2 })).await;
    expect(&host, CommandKind::Refresh, 423, "Update lock held").await;
    expect(&host, CommandKind::Refresh, 423, "Update lock held").await;
    assert_eq!(get(&host, "/updates/status").await.status, 404, "a 423-refused action creates no status");
    expect(&host, CommandKind::Refresh, 204, "").await;
}

#[tokio::test]
async fn a_pinned_version_lock_chooses_a_downgrade() {
    let host = start(config().version_lock("1.19.5")).await;
    let s = run(&host, CommandKind::Refresh).await;
    assert_eq!(
        (s["update_state"].as_str(), s["chosen_update"]["version"].as_str()),
        (Some("Available"), Some("1.19.5"))
    );
    let s = run(&host, CommandKind::Prepare).await;
    assert_eq!(s["staging_partition"]["image"]["version"], "1.19.5");
    host.set_version_lock("latest");
    let s = run(&host, CommandKind::Refresh).await;
    assert_eq!(s["chosen_update"]["version"], "1.21.0");
}

#[tokio::test]
async fn a_release_published_mid_test_reaches_every_host_at_its_next_refresh() {
    let fleet = HostFleet::start_n(3, HostConfig::new("1.20.0").timings(fast())).await.unwrap();
    for host in fleet.hosts() {
        assert_eq!(run(host, CommandKind::Refresh).await["update_state"], "Idle");
    }
    fleet.publish("1.21.0");
    for host in fleet.hosts() {
        let s = run(host, CommandKind::Refresh).await;
        assert_eq!(s["update_state"], "Available", "{}", host.name());
        assert_eq!(versions(&s), ["1.21.0", "1.20.0"]);
    }
    assert!(fleet.host("node-2").unwrap().socket_path().starts_with(fleet.dir()));
}

#[tokio::test]
async fn preparing_a_withdrawn_release_fails() {
    let host = start(config()).await;
    run(&host, CommandKind::Refresh).await;
    host.repository().withdraw("1.21.0");
    let s = run(&host, CommandKind::Prepare).await;
    let (_, status, exit, stderr) = last_command(&s);
    assert_eq!((status, exit), ("Failed", 1));
    assert!(stderr.contains("1.21.0"), "{stderr}");
    assert_eq!(s["update_state"], "Available");
}
