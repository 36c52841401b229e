//! Reboot: going down, coming back on the partition marked next-to-boot,
//! rollback, faults, and the events the end-to-end harness relies on.

use std::time::Duration;

use crate::support::*;
use tests::hostsim::raw;
use tests::hostsim::{BootError, CommandKind, Fault, HostEvent, HostSim, PowerState, RebootMode, Timings};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::Receiver;

async fn next_event(events: &mut Receiver<HostEvent>) -> HostEvent {
    tokio::time::timeout(PATIENCE, events.recv()).await.expect("an event in time").expect("the event stream is open")
}

/// Skips command events; returns the next power event.
async fn next_power_event(events: &mut Receiver<HostEvent>) -> HostEvent {
    loop {
        match next_event(events).await {
            HostEvent::CommandStarted(_) | HostEvent::CommandFinished(_) => {}
            other => return other,
        }
    }
}

async fn reboot(host: &HostSim) {
    let r = post(host, "/actions/reboot").await;
    assert_eq!((r.status, r.body.len()), (204, 0));
}

fn up(version: &str) -> HostEvent {
    HostEvent::Up { version: version.into() }
}

#[tokio::test]
async fn reboot_boots_the_activated_image_with_no_update_status() {
    let host = start(config()).await;
    walk(&host, true).await;
    let mut events = host.events();
    reboot(&host).await;
    assert_eq!(next_power_event(&mut events).await, HostEvent::RebootRequested);
    assert_eq!(next_power_event(&mut events).await, HostEvent::Down);
    assert_eq!(next_power_event(&mut events).await, up("1.21.0"));
    let os = get(&host, "/os").await.json().unwrap();
    assert_eq!(os["version_id"], "1.21.0");
    let r = get(&host, "/updates/status").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "Update status is uninitialized, refresh-updates to initialize it")
    );
    let s = run(&host, CommandKind::Refresh).await;
    assert_eq!(s["active_partition"]["image"]["version"], "1.21.0");
    assert_eq!(s["staging_partition"], serde_json::Value::Null);
    assert_eq!(s["update_state"], "Idle");
    let power = host.power().borrow().clone();
    assert_eq!((power.state, power.boots, power.reboots_requested), (PowerState::Up, 2, 1));
}

#[tokio::test]
async fn reboot_without_an_activated_update_keeps_the_version() {
    let host = start(config()).await;
    walk(&host, false).await;
    let mut events = host.events();
    reboot(&host).await;
    assert_eq!(next_power_event(&mut events).await, HostEvent::RebootRequested);
    assert_eq!(next_power_event(&mut events).await, HostEvent::Down);
    assert_eq!(next_power_event(&mut events).await, up("1.20.0"));
    assert_eq!(get(&host, "/updates/status").await.status, 404);
}

#[tokio::test]
async fn in_manual_mode_the_host_stays_down_until_booted() {
    let host = start(config().reboot_mode(RebootMode::Manual)).await;
    walk(&host, true).await;
    let mut power = host.power();
    reboot(&host).await;
    power.wait_for(|p| p.state == PowerState::Down).await.unwrap();
    let err = raw::request(host.socket_path(), "GET", "/os").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "socket gone while down");
    assert_eq!(host.state().update_status, None, "the status file is lost");
    let outcome = host.boot().unwrap();
    assert_eq!((outcome.version.as_str(), outcome.rolled_back_from), ("1.21.0", None));
    assert_eq!(get(&host, "/os").await.json().unwrap()["version_id"], "1.21.0");
    assert!(matches!(host.boot(), Err(BootError::NotDown(_))));
}

#[tokio::test]
async fn a_bad_image_rolls_back_to_the_old_version_after_a_longer_outage() {
    let host = start(config().fault(Fault::RollbackOnBoot(None))).await;
    walk(&host, true).await;
    let mut events = host.events();
    reboot(&host).await;
    assert_eq!(next_power_event(&mut events).await, HostEvent::RebootRequested);
    assert_eq!(next_power_event(&mut events).await, HostEvent::Down);
    assert_eq!(next_power_event(&mut events).await, HostEvent::BootFailed { version: "1.21.0".into() });
    assert_eq!(next_power_event(&mut events).await, up("1.20.0"));
    assert_eq!(get(&host, "/os").await.json().unwrap()["version_id"], "1.20.0");
    assert_eq!(get(&host, "/updates/status").await.status, 404);
    assert_eq!(host.power().borrow().rollbacks, 1);
}

#[tokio::test]
async fn a_rollback_can_target_one_version_only() {
    let host = start(config().fault(Fault::RollbackOnBoot(Some("1.99.0".into())))).await;
    walk(&host, true).await;
    let mut events = host.events();
    reboot(&host).await;
    loop {
        match next_power_event(&mut events).await {
            HostEvent::Up { version } => break assert_eq!(version, "1.21.0"),
            HostEvent::BootFailed { version } => panic!("{version} should boot"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_reboot_that_never_comes_back_stays_down_until_the_fault_is_cleared() {
    let host = start(config().fault(Fault::RebootNeverReturns)).await;
    let mut events = host.events();
    reboot(&host).await;
    assert_eq!(next_power_event(&mut events).await, HostEvent::RebootRequested);
    assert_eq!(next_power_event(&mut events).await, HostEvent::Down);
    // Ten times the downtime without an Up.
    let quiet = tokio::time::timeout(fast().reboot_downtime * 10, events.recv()).await;
    assert!(quiet.is_err(), "no event while it never returns: {quiet:?}");
    assert!(matches!(host.boot(), Err(BootError::NeverReturns(_))));
    host.clear_faults();
    host.boot().unwrap();
    assert_eq!(next_power_event(&mut events).await, up("1.20.0"));
}

#[tokio::test]
async fn a_reboot_that_drops_the_connection_still_reboots() {
    let host = start(config().fault(Fault::RebootDropsConnection)).await;
    let mut events = host.events();
    let err = raw::request(host.socket_path(), "POST", "/actions/reboot").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    assert_eq!(next_power_event(&mut events).await, HostEvent::RebootRequested);
    assert_eq!(next_power_event(&mut events).await, HostEvent::Down);
    assert_eq!(next_power_event(&mut events).await, up("1.20.0"));
}

#[tokio::test]
async fn a_reboot_request_is_not_lost_when_the_client_dies_right_after_sending_it() {
    let host = start(config().reboot_mode(RebootMode::Manual)).await;
    let mut power = host.power();
    {
        let mut stream = tokio::net::UnixStream::connect(host.socket_path()).await.unwrap();
        stream
            .write_all(b"POST /actions/reboot HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        // The agent is killed: the connection closes without reading.
    }
    let p = power.wait_for(|p| p.state == PowerState::Down).await.unwrap().clone();
    assert_eq!(p.reboots_requested, 1);
    host.boot().unwrap();
}

#[tokio::test]
async fn a_reboot_loses_a_running_command_and_is_not_gated_by_the_lock() {
    let host = start(config().fault(Fault::CommandHangs(CommandKind::Refresh))).await;
    assert_eq!(action(&host, CommandKind::Refresh).await.status, 204);
    let mut events = host.events();
    reboot(&host).await;
    loop {
        if let HostEvent::Up { .. } = next_power_event(&mut events).await {
            break;
        }
    }
    assert_eq!(host.state().running_command, None);
    assert_eq!(get(&host, "/updates/status").await.status, 404);
    host.clear_faults();
    let s = run(&host, CommandKind::Refresh).await;
    assert_eq!(s["most_recent_command"]["cmd_type"], "refresh");
}

#[tokio::test]
async fn a_crash_takes_the_host_down_and_back_without_a_reboot_request() {
    let host = start(config().timings(Timings { reboot_downtime: Duration::from_millis(10), ..fast() })).await;
    run(&host, CommandKind::Refresh).await;
    let mut events = host.events();
    host.crash();
    assert_eq!(next_power_event(&mut events).await, HostEvent::Down);
    assert_eq!(next_power_event(&mut events).await, up("1.20.0"));
    assert_eq!(host.power().borrow().reboots_requested, 0);
    assert_eq!(get(&host, "/updates/status").await.status, 404);
}

#[tokio::test]
async fn reboot_still_works_on_a_host_that_cannot_update_in_place() {
    let host = start(config().fault(Fault::CannotUpdateInPlace)).await;
    let mut events = host.events();
    reboot(&host).await;
    assert_eq!(next_power_event(&mut events).await, HostEvent::RebootRequested);
}
