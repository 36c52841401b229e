//! Every scripted fault, seen on the wire.

use std::time::Duration;

use crate::support::*;
use serde_json::Value;
use tests::hostsim::{CommandKind, Fault, HostEvent};

#[tokio::test]
async fn an_action_can_answer_500_and_start_nothing() {
    let host = start(config()).await;
    run(&host, CommandKind::Refresh).await;
    host.set_fault(Fault::ActionFails { command: CommandKind::Prepare, body: "Failed to start prepare".into() });
    let r = action(&host, CommandKind::Prepare).await;
    assert_eq!((r.status, r.text().as_str()), (500, "Failed to start prepare"));
    let s = settled_status(&host).await;
    assert_eq!(s["update_state"], "Available");
    assert_eq!(s["most_recent_command"]["cmd_type"], "refresh");
}

#[tokio::test]
async fn a_hanging_command_holds_the_lock_until_the_fault_is_cleared() {
    let host = start(config().fault(Fault::CommandHangs(CommandKind::Refresh))).await;
    let mut events = host.events();
    assert_eq!(action(&host, CommandKind::Refresh).await.status, 204);
    assert_eq!(events.recv().await.unwrap(), HostEvent::CommandStarted(CommandKind::Refresh));
    for _ in 0..5 {
        assert_eq!(get(&host, "/updates/status").await.status, 423);
    }
    assert_eq!(host.state().running_command, Some(CommandKind::Refresh));
    host.clear_faults();
    let s = settled_status(&host).await;
    assert_eq!(s["most_recent_command"]["cmd_type"], "refresh");
}

#[tokio::test]
async fn a_slow_command_is_423_until_it_finishes() {
    let host = start(
        config().fault(Fault::SlowCommand { command: CommandKind::Refresh, duration: Duration::from_millis(500) }),
    )
    .await;
    let started = std::time::Instant::now();
    assert_eq!(action(&host, CommandKind::Refresh).await.status, 204);
    assert_eq!(get(&host, "/updates/status").await.status, 423);
    let s = settled_status(&host).await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(s["most_recent_command"]["cmd_status"], "Success");
}

#[tokio::test]
async fn the_status_can_be_malformed_or_partial() {
    let host = start(config().fault(Fault::StatusBody("{\"update_state\": ".into()))).await;
    run_raw(&host).await;
    let r = get(&host, "/updates/status").await;
    assert_eq!((r.status, r.text().as_str()), (200, "{\"update_state\": "));
    host.clear_faults();
    let full = get(&host, "/updates/status").await.body;
    host.set_fault(Fault::TruncatedStatus { bytes: 100 });
    let r = get(&host, "/updates/status").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(r.body, full[..100]);
    assert!(r.json().is_err());
}

async fn run_raw(host: &tests::hostsim::HostSim) {
    assert_eq!(action(host, CommandKind::Refresh).await.status, 204);
    eventually("refresh to finish", || async { (host.state().running_command.is_none()).then_some(()) }).await;
}

#[tokio::test]
async fn every_optional_field_can_be_absent_or_null() {
    let host = start(config()).await;
    run(&host, CommandKind::Refresh).await;
    for path in [
        "available_updates",
        "chosen_update",
        "active_partition",
        "staging_partition",
        "most_recent_command",
        "most_recent_command.exit_status",
        "most_recent_command.stderr",
    ] {
        host.set_fault(Fault::StatusFieldAbsent(path.into()));
        let s = settled_status(&host).await;
        assert_eq!(lookup(&s, path), None, "{path} absent");
        host.clear_faults();
        host.set_fault(Fault::StatusFieldNull(path.into()));
        let s = settled_status(&host).await;
        assert_eq!(lookup(&s, path), Some(&Value::Null), "{path} null");
        host.clear_faults();
    }
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

#[tokio::test]
async fn timestamps_can_have_zero_three_or_six_fraction_digits() {
    let host = start(config()).await;
    let s = run(&host, CommandKind::Refresh).await;
    let nine = s["most_recent_command"]["timestamp"].as_str().unwrap().to_owned();
    for digits in [0u8, 3, 6] {
        host.set_fault(Fault::TimestampDigits(digits));
        let s = settled_status(&host).await;
        let ts = s["most_recent_command"]["timestamp"].as_str().unwrap();
        let expected =
            if digits == 0 { format!("{}Z", &nine[..19]) } else { format!("{}Z", &nine[..20 + usize::from(digits)]) };
        assert_eq!(ts, expected);
    }
}

#[tokio::test]
async fn the_status_can_be_unreadable_and_os_can_be_rewritten() {
    let host = start(config().fault(Fault::StatusUnreadable)).await;
    run_raw(&host).await;
    let r = get(&host, "/updates/status").await;
    assert_eq!(r.status, 500);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    host.set_fault(Fault::OsBody("{\"version_id\":".into()));
    assert_eq!(get(&host, "/os").await.text(), "{\"version_id\":");
}

#[tokio::test]
async fn a_host_that_cannot_update_in_place_answers_500_and_keeps_its_status_404() {
    let host = start(config().fault(Fault::CannotUpdateInPlace)).await;
    for cmd in CommandKind::ALL {
        let r = action(&host, cmd).await;
        assert_eq!((r.status, r.text().as_str()), (500, "Unable to start the update dispatcher"), "{cmd:?}");
        assert_eq!(get(&host, "/updates/status").await.status, 404);
    }
    assert_eq!(get(&host, "/os").await.status, 200);
}

#[tokio::test]
async fn a_refused_reboot_answers_500_and_the_host_stays_up() {
    let host = start(config().fault(Fault::RebootRefused("Failed to reboot, systemd refused: inhibited".into()))).await;
    let r = post(&host, "/actions/reboot").await;
    assert_eq!((r.status, r.text().as_str()), (500, "Failed to reboot, systemd refused: inhibited"));
    assert_eq!(host.power().borrow().reboots_requested, 0);
    assert_eq!(get(&host, "/os").await.status, 200);
}
