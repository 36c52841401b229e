//! The nodeagent's host API client (`nodeagent::hostapi`) against the host
//! simulator: every endpoint, and every fault the simulator scripts. Short
//! timings keep the file to a second or two. The tests run on tokio's
//! current-thread runtime, where a client call that blocked the runtime
//! would also block the simulator and hang: passing shows the async
//! wrappers keep blocking work off the runtime.

use std::time::Duration;

use nodeagent::hostapi::{
    Action, AsyncHostApi, Backoff, CommandDeadlines, CommandStatus, CommandType, Error, Failure, HostApiConfig,
    HostStatus, PollSchedule, UpdateState, UpdateStatus,
};
use tests::hostsim::{CommandKind, Fault, HostConfig, HostEvent, HostFleet, HostSim, PowerState, RebootMode, Timings};

const DEADLINE: Duration = Duration::from_millis(400);

struct Fixture {
    fleet: HostFleet,
    api: AsyncHostApi,
}

impl Fixture {
    fn host(&self) -> &HostSim {
        &self.fleet.hosts()[0]
    }
}

fn fast() -> Timings {
    Timings { reboot_downtime: Duration::from_millis(20), ..Timings::uniform(Duration::from_millis(2)) }
}

fn client_config(socket: &std::path::Path) -> HostApiConfig {
    let quick = Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(20) };
    HostApiConfig {
        request_timeout: Duration::from_secs(2),
        lock_backoff: quick,
        lock_deadline: Duration::from_millis(200),
        poll: PollSchedule { min: Duration::from_millis(20), max: Duration::from_millis(100) },
        deadlines: CommandDeadlines { refresh: DEADLINE, prepare: DEADLINE, activate: DEADLINE, deactivate: DEADLINE },
        ..HostApiConfig::new(socket)
    }
}

/// A host running 1.20.0 with releases up to 1.21.0, and a client of it.
async fn setup(config: HostConfig) -> Fixture {
    let fleet = HostFleet::start(["node"], config.timings(fast())).await.unwrap();
    let api = AsyncHostApi::new(client_config(fleet.hosts()[0].socket_path()));
    Fixture { fleet, api }
}

fn host_config() -> HostConfig {
    HostConfig::new("1.20.0").available(&["1.21.0", "1.20.1", "1.20.0", "1.19.5"])
}

async fn status(api: &AsyncHostApi) -> UpdateStatus {
    match api.status().await.unwrap() {
        HostStatus::Initialized(s) => s,
        HostStatus::Uninitialized => panic!("expected a status"),
    }
}

#[track_caller]
fn failure(result: Result<impl std::fmt::Debug, Error>, action: Action) -> Failure {
    let err = result.expect_err("expected an error");
    assert_eq!(err.action(), action, "{err}");
    match err {
        Error::ReadOs(f)
        | Error::ReadStatus(f)
        | Error::Refresh(f)
        | Error::Prepare(f)
        | Error::Activate(f)
        | Error::Deactivate(f)
        | Error::Reboot(f) => f,
    }
}

#[tokio::test]
async fn os_reads_what_the_host_runs() {
    let f = setup(host_config()).await;
    let os = f.api.os().await.unwrap();
    assert_eq!(
        (os.version_id.as_str(), os.variant_id.as_str(), os.arch.as_str()),
        ("1.20.0", "aws-k8s-1.29", "x86_64")
    );
    assert_eq!(os.pretty_name.as_deref(), Some("Bottlerocket OS 1.20.0 (aws-k8s-1.29)"));
}

#[tokio::test]
async fn a_booted_host_has_an_uninitialized_status_which_is_not_an_error() {
    let f = setup(host_config()).await;
    assert_eq!(f.api.status().await.unwrap(), HostStatus::Uninitialized);
}

#[tokio::test]
async fn a_whole_update_walk_follows_each_command_to_completion() {
    let f = setup(host_config()).await;
    let refresh = f.api.refresh().await.unwrap();
    assert_eq!(
        (refresh.cmd_type, refresh.cmd_status, refresh.exit_status),
        (CommandType::Refresh, CommandStatus::Success, Some(0))
    );
    let s = status(&f.api).await;
    assert_eq!(s.update_state, UpdateState::Available);
    assert_eq!(s.available_updates, ["1.21.0", "1.20.1", "1.20.0", "1.19.5"]);
    assert_eq!(s.chosen_version(), Some("1.21.0"));
    assert_eq!(s.most_recent_command.as_ref(), Some(&refresh));

    let prepare = f.api.prepare().await.unwrap();
    assert_eq!(prepare.stderr.as_deref(), Some("Starting update to 1.21.0\n"));
    let s = status(&f.api).await;
    assert_eq!((s.update_state, s.staged_version()), (UpdateState::Staged, Some("1.21.0")));
    assert_eq!(s.next_to_boot_version(), Some("1.20.0"));

    f.api.activate().await.unwrap();
    let s = status(&f.api).await;
    assert_eq!(s.update_state, UpdateState::Ready);
    assert_eq!(s.next_to_boot_version(), Some("1.21.0"));

    let deactivate = f.api.deactivate().await.unwrap();
    assert_eq!(deactivate.cmd_type, CommandType::Deactivate);
    let s = status(&f.api).await;
    assert_eq!((s.update_state, s.next_to_boot_version()), (UpdateState::Staged, Some("1.20.0")));
}

#[tokio::test]
async fn each_command_is_told_apart_from_the_previous_one_by_its_timestamp() {
    let f = setup(host_config()).await;
    let first = f.api.refresh().await.unwrap();
    let second = f.api.refresh().await.unwrap();
    assert_ne!(first.timestamp, second.timestamp);
    // The command noted before is not taken for the one awaited.
    let noted = second.timestamp.clone();
    let deadline = std::time::Instant::now() + Duration::from_millis(100);
    let fail = failure(f.api.wait_for(CommandType::Refresh, Some(noted.clone()), deadline).await, Action::Refresh);
    assert!(fail.to_string().contains(noted.as_str()), "{fail}");
    // An earlier successful refresh must not pass for a new one that hangs.
    f.host().set_fault(Fault::CommandHangs(CommandKind::Refresh));
    let fail = failure(f.api.refresh().await, Action::Refresh);
    assert!(matches!(fail, Failure::Timeout { .. }), "{fail}");
    assert!(fail.to_string().contains("lock held"), "{fail}");
}

#[tokio::test]
async fn a_command_run_after_a_known_one_returns_the_status_it_finished_with() {
    let f = setup(host_config()).await;
    let first = f.api.refresh().await.unwrap();
    // The agent passes the timestamp it last saw; the answer is the status
    // that showed the new command done, as a read right after would show.
    let after = f.api.run_after(CommandType::Refresh, Some(first.timestamp.clone())).await.unwrap();
    let done = after.most_recent_command.as_ref().unwrap();
    assert_eq!((done.cmd_type, done.cmd_status), (CommandType::Refresh, CommandStatus::Success));
    assert_ne!(done.timestamp, first.timestamp);
    assert_eq!(after, status(&f.api).await);
    let prepared = f.api.run_after(CommandType::Prepare, Some(done.timestamp.clone())).await.unwrap();
    assert_eq!(prepared.update_state, UpdateState::Staged);
    // A command that fails is a CommandFailed error, as with `run`.
    f.host().set_fault(Fault::CommandFails { command: CommandKind::Activate, exit_status: 1, stderr: "no".into() });
    let last = prepared.most_recent_command.unwrap().timestamp;
    let fail = failure(f.api.run_after(CommandType::Activate, Some(last)).await, Action::Activate);
    assert!(matches!(fail, Failure::CommandFailed { .. }), "{fail}");
}

#[tokio::test]
async fn prepare_in_state_ready_is_not_allowed() {
    let f = setup(host_config()).await;
    f.api.refresh().await.unwrap();
    f.api.prepare().await.unwrap();
    f.api.activate().await.unwrap();
    let fail = failure(f.api.prepare().await, Action::Prepare);
    assert!(
        matches!(&fail, Failure::NotAllowed { body } if body == "Update action not allowed according to update state"),
        "{fail:?}"
    );
    assert_eq!(fail.status(), Some(409));
    let fail = failure(f.api.activate().await, Action::Activate);
    assert!(matches!(fail, Failure::NotAllowed { .. }), "{fail:?}");
}

#[tokio::test]
async fn commands_refused_by_state_or_missing_images_are_typed() {
    let f = setup(host_config()).await;
    // A refused command on a fresh host: 409, and the status now exists.
    let fail = failure(f.api.deactivate().await, Action::Deactivate);
    assert!(matches!(fail, Failure::NotAllowed { .. }), "{fail:?}");
    let s = status(&f.api).await;
    assert!(s.most_recent_command.is_none() && s.update_state == UpdateState::Idle);
    f.api.refresh().await.unwrap();
    f.api.prepare().await.unwrap();
    f.host().repository().withdraw("1.21.0");
    f.host().repository().withdraw("1.20.1");
    f.api.refresh().await.unwrap();
    let fail = failure(f.api.prepare().await, Action::Prepare);
    assert!(
        matches!(&fail, Failure::NoChosenUpdate { body } if body == "Previously chosen Update no longer exists"),
        "{fail:?}"
    );
    assert_eq!(Error::Prepare(fail).failure_reason(), model::FailureReason::UpdateUnavailable);
}

#[tokio::test]
async fn failed_prepare_and_activate_carry_exit_status_and_stderr() {
    let f = setup(host_config()).await;
    f.api.refresh().await.unwrap();
    f.host().set_fault(Fault::CommandFails {
        command: CommandKind::Prepare,
        exit_status: -9,
        stderr: "Failed to write image: killed\n".into(),
    });
    let err = f.api.prepare().await.unwrap_err();
    assert_eq!(err.failure_reason(), model::FailureReason::PrepareFailed);
    let Failure::CommandFailed { command } = failure(Err::<(), _>(err), Action::Prepare) else {
        panic!("expected CommandFailed");
    };
    assert_eq!(command.cmd_status, CommandStatus::Failed);
    assert_eq!(command.exit_status, Some(-9));
    assert_eq!(command.stderr.as_deref(), Some("Failed to write image: killed\n"));
    f.host().clear_faults();
    f.api.prepare().await.unwrap();
    f.host().set_fault(Fault::CommandFails {
        command: CommandKind::Activate,
        exit_status: 1,
        stderr: "Failed to set boot flags\n".into(),
    });
    let err = f.api.activate().await.unwrap_err();
    assert_eq!(err.failure_reason(), model::FailureReason::ActivateFailed);
    assert_eq!(
        err.to_string(),
        "activate-update: the command finished Failed with exit status 1: Failed to set boot flags"
    );
    assert_eq!(status(&f.api).await.update_state, UpdateState::Staged);
}

#[tokio::test]
async fn an_action_answering_500_is_a_server_error_with_its_body() {
    let f = setup(host_config()).await;
    f.host().set_fault(Fault::ActionFails { command: CommandKind::Refresh, body: "Failed to start refresh".into() });
    let fail = failure(f.api.refresh().await, Action::Refresh);
    assert!(matches!(&fail, Failure::Server { status: 500, body } if body == "Failed to start refresh"), "{fail:?}");
}

#[tokio::test]
async fn a_host_that_cannot_update_in_place_is_reported_as_such() {
    let f = setup(host_config().fault(Fault::CannotUpdateInPlace)).await;
    for (result, action) in [
        (f.api.refresh().await, Action::Refresh),
        (f.api.prepare().await, Action::Prepare),
        (f.api.activate().await, Action::Activate),
        (f.api.deactivate().await, Action::Deactivate),
    ] {
        let fail = failure(result, action);
        assert!(matches!(fail, Failure::CannotUpdateInPlace { .. }), "{fail:?}");
    }
    assert_eq!(f.api.status().await.unwrap(), HostStatus::Uninitialized);
}

#[tokio::test]
async fn a_lock_never_released_ends_in_deadline_errors() {
    let f = setup(host_config().fault(Fault::CommandHangs(CommandKind::Refresh))).await;
    let started = std::time::Instant::now();
    let fail = failure(f.api.refresh().await, Action::Refresh);
    assert!(matches!(fail, Failure::Timeout { .. }), "{fail:?}");
    assert!(started.elapsed() >= DEADLINE);
    let fail = failure(f.api.status().await, Action::ReadStatus);
    let Failure::LockHeld { attempts, body, .. } = fail else {
        panic!("expected LockHeld: {fail:?}");
    };
    assert!(attempts > 1, "retried: {attempts}");
    assert_eq!(body, "Update lock held");
    // The lock frees: the client reads the finished command.
    f.host().clear_faults();
    let s = status(&f.api).await;
    assert_eq!(s.most_recent_command.unwrap().cmd_type, CommandType::Refresh);
}

#[tokio::test]
async fn a_slow_command_is_followed_to_completion() {
    let f = setup(
        host_config().fault(Fault::SlowCommand { command: CommandKind::Refresh, duration: Duration::from_millis(150) }),
    )
    .await;
    let started = std::time::Instant::now();
    let done = f.api.refresh().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(done.cmd_status, CommandStatus::Success);
}

#[tokio::test]
async fn actions_retry_423_from_a_status_reader_and_give_up_at_the_lock_deadline() {
    let f = setup(host_config().fault(Fault::LockContention { count: 3 })).await;
    f.api.refresh().await.unwrap();
    assert_eq!(f.host().faults(), [Fault::LockContention { count: 0 }], "three 423s were retried");
    let guard = f.host().hold_status_lock().unwrap();
    let fail = failure(f.api.start(CommandType::Refresh).await, Action::Refresh);
    assert!(matches!(fail, Failure::LockHeld { attempts, .. } if attempts > 1), "{fail:?}");
    drop(guard);
    f.api.start(CommandType::Refresh).await.unwrap();
}

#[tokio::test]
async fn malformed_partial_or_unknown_answers_are_clear_errors() {
    let f = setup(host_config()).await;
    f.api.refresh().await.unwrap();
    for (fault, expected) in [
        (Fault::StatusBody("not json".into()), "invalid update status"),
        (Fault::TruncatedStatus { bytes: 60 }, "EOF while parsing"),
        (
            Fault::StatusBody(r#"{"update_state":"Rebooting"}"#.into()),
            "unknown variant `Rebooting`",
        ),
        (
            Fault::StatusBody(r#"{"update_state":"Idle","most_recent_command":{"cmd_type":"refresh","cmd_status":"Success","timestamp":"soon"}}"#.into()),
            "not RFC 3339",
        ),
    ] {
        f.host().set_fault(fault.clone());
        let fail = failure(f.api.status().await, Action::ReadStatus);
        assert!(matches!(fail, Failure::Malformed(_)), "{fault:?}: {fail:?}");
        assert!(fail.to_string().contains(expected), "{fault:?}: {fail}");
        // While waiting for a command too.
        let fail = failure(f.api.refresh().await, Action::Refresh);
        assert!(matches!(fail, Failure::Malformed(_)), "{fault:?}: {fail:?}");
        f.host().clear_faults();
    }
    f.host().set_fault(Fault::OsBody("{\"variant_id\":\"v\"}".into()));
    let fail = failure(f.api.os().await, Action::ReadOs);
    assert!(fail.to_string().contains("missing field `version_id`"), "{fail}");
}

#[tokio::test]
async fn null_and_absent_optional_fields_parse() {
    let f = setup(host_config()).await;
    f.api.refresh().await.unwrap();
    for path in [
        "available_updates",
        "chosen_update",
        "active_partition",
        "staging_partition",
        "most_recent_command",
        "most_recent_command.exit_status",
        "most_recent_command.stderr",
    ] {
        for fault in [Fault::StatusFieldAbsent(path.into()), Fault::StatusFieldNull(path.into())] {
            f.host().set_fault(fault.clone());
            let s = status(&f.api).await;
            assert_eq!(s.update_state, UpdateState::Available, "{fault:?}");
            f.host().clear_faults();
        }
    }
    f.host().set_fault(Fault::StatusFieldNull("most_recent_command.exit_status".into()));
    let cmd = status(&f.api).await.most_recent_command.unwrap();
    assert_eq!((cmd.exit_status, cmd.stderr.as_deref()), (None, Some("")));
}

#[tokio::test]
async fn timestamps_are_kept_exactly_with_0_3_6_or_9_digits() {
    let f = setup(host_config()).await;
    f.api.refresh().await.unwrap();
    let nine = status(&f.api).await.most_recent_command.unwrap().timestamp;
    assert_eq!(nine.as_str().len(), "2026-11-24T10:00:07.123456789Z".len());
    for digits in [0u8, 3, 6] {
        f.host().set_fault(Fault::TimestampDigits(digits));
        let ts = status(&f.api).await.most_recent_command.unwrap().timestamp;
        let cut = if digits == 0 { 19 } else { 20 + usize::from(digits) };
        assert_eq!(ts.as_str(), format!("{}Z", &nine.as_str()[..cut]));
    }
}

#[tokio::test]
async fn an_unreadable_status_is_a_server_error() {
    let f = setup(host_config().fault(Fault::StatusUnreadable)).await;
    let fail = failure(f.api.status().await, Action::ReadStatus);
    assert!(matches!(fail, Failure::Server { status: 500, .. }), "{fail:?}");
}

#[tokio::test]
async fn reboot_is_ok_on_204_and_the_host_comes_back_with_status_404() {
    let f = setup(host_config().reboot_mode(RebootMode::Manual)).await;
    f.api.refresh().await.unwrap();
    f.api.prepare().await.unwrap();
    f.api.activate().await.unwrap();
    let mut power = f.host().power();
    f.api.reboot().await.unwrap();
    power.wait_for(|p| p.state == PowerState::Down).await.unwrap();
    // While down the socket is gone: a connect failure, not a dropped request.
    let fail = failure(f.api.os().await, Action::ReadOs);
    assert!(matches!(fail, Failure::Io(_)), "{fail:?}");
    f.host().boot().unwrap();
    assert_eq!(f.api.os().await.unwrap().version_id, "1.21.0");
    assert_eq!(f.api.status().await.unwrap(), HostStatus::Uninitialized);
    assert_eq!(power.borrow().reboots_requested, 1);
}

#[tokio::test]
async fn a_rolled_back_host_reports_the_old_version_and_no_status() {
    let f = setup(host_config().fault(Fault::RollbackOnBoot(None))).await;
    f.api.refresh().await.unwrap();
    f.api.prepare().await.unwrap();
    f.api.activate().await.unwrap();
    let mut power = f.host().power();
    f.api.reboot().await.unwrap();
    power.wait_for(|p| p.state == PowerState::Up && p.boots == 2).await.unwrap();
    assert_eq!(f.api.os().await.unwrap().version_id, "1.20.0");
    assert_eq!(f.api.status().await.unwrap(), HostStatus::Uninitialized);
}

#[tokio::test]
async fn a_refused_reboot_is_an_error() {
    let f = setup(host_config().fault(Fault::RebootRefused("Failed to reboot, inhibited by kubelet".into()))).await;
    let err = f.api.reboot().await.unwrap_err();
    assert_eq!(err.failure_reason(), model::FailureReason::RebootFailed);
    let fail = failure(Err::<(), _>(err), Action::Reboot);
    assert!(matches!(&fail, Failure::Server { status: 500, body } if body.starts_with("Failed to reboot")), "{fail:?}");
}

#[tokio::test]
async fn a_reboot_whose_connection_drops_is_reported_distinctly() {
    let f = setup(host_config().fault(Fault::RebootDropsConnection)).await;
    let mut events = f.host().events();
    let fail = failure(f.api.reboot().await, Action::Reboot);
    assert!(matches!(fail, Failure::ConnectionDropped(_)), "{fail:?}");
    assert_eq!(events.recv().await.unwrap(), HostEvent::RebootRequested);
}

#[tokio::test]
async fn a_host_that_is_gone_is_an_io_error() {
    let f = setup(host_config()).await;
    let api = AsyncHostApi::new(client_config(&f.fleet.dir().join("missing.sock")));
    let fail = failure(api.status().await, Action::ReadStatus);
    assert!(matches!(&fail, Failure::Io(e) if e.kind() == std::io::ErrorKind::NotFound), "{fail:?}");
}
