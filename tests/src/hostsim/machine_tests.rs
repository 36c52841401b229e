use super::*;

fn t(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_790_000_000 + secs).unwrap()
}

fn repo(versions: &[&str]) -> Vec<String> {
    versions.iter().map(|v| (*v).to_owned()).collect()
}

fn host(version: &str) -> Machine {
    Machine::new("aws-k8s-1.29", "x86_64", version, VersionLock::Latest)
}

fn run(m: &mut Machine, cmd: CommandKind, outcome: Outcome, repository: &[String]) -> CommandResult {
    m.begin(cmd).unwrap();
    m.finish(cmd, outcome, repository, t(1)).unwrap()
}

fn state(m: &Machine) -> UpdateState {
    m.status().unwrap().update_state
}

fn failed(exit_status: i32) -> Outcome {
    Outcome::Failed { exit_status, stderr: "boom\n".into() }
}

/// A host walked to `target` with releases 1.21.0 and 1.20.0, running 1.20.0.
fn walked_to(target: UpdateState) -> (Machine, Vec<String>) {
    let mut m = host("1.20.0");
    let r = repo(&["1.20.0", "1.21.0"]);
    run(&mut m, CommandKind::Refresh, Outcome::Success, &r);
    if matches!(target, UpdateState::Staged | UpdateState::Ready) {
        run(&mut m, CommandKind::Prepare, Outcome::Success, &r);
    }
    if target == UpdateState::Ready {
        run(&mut m, CommandKind::Activate, Outcome::Success, &r);
    }
    assert_eq!(state(&m), target);
    (m, r)
}

#[test]
fn a_booted_host_has_no_status_until_an_update_action() {
    let m = host("1.20.0");
    assert_eq!(m.read_status().unwrap_err(), Refusal { status: 404, body: STATUS_UNINITIALIZED });
    assert_eq!(m.os().version_id, "1.20.0");
}

#[test]
fn a_refused_action_still_creates_an_idle_status() {
    for cmd in [CommandKind::Prepare, CommandKind::Activate, CommandKind::Deactivate] {
        let mut m = host("1.20.0");
        assert_eq!(m.begin(cmd).unwrap_err().status, 409);
        let s = m.read_status().unwrap();
        assert_eq!(s.update_state, UpdateState::Idle);
        assert!(s.available_updates.is_empty() && s.chosen_update.is_none());
        assert!(s.staging_partition.is_none() && s.most_recent_command.is_none());
        assert_eq!(s.active_partition.image.version, "1.20.0");
        assert!(s.active_partition.next_to_boot);
        assert_eq!(m.running_command(), None, "a refused action takes no lock");
    }
}

#[test]
fn refresh_in_idle_lists_newest_first_and_chooses_the_newest_newer_version() {
    let mut m = host("1.20.0");
    let r = repo(&["1.19.5", "1.21.0", "1.20.0", "1.20.1"]);
    let cmd = run(&mut m, CommandKind::Refresh, Outcome::Success, &r);
    assert_eq!((cmd.cmd_type, cmd.cmd_status, cmd.exit_status), (CommandKind::Refresh, CmdStatus::Success, 0));
    let s = m.read_status().unwrap();
    assert_eq!(s.update_state, UpdateState::Available);
    assert_eq!(s.available_updates, ["1.21.0", "1.20.1", "1.20.0", "1.19.5"]);
    assert_eq!(s.chosen_update.as_ref().unwrap().version, "1.21.0");
}

#[test]
fn refresh_without_a_newer_version_is_idle_and_from_available_falls_back_to_idle() {
    let mut m = host("1.21.0");
    run(&mut m, CommandKind::Refresh, Outcome::Success, &repo(&["1.21.0", "1.20.0"]));
    assert_eq!(state(&m), UpdateState::Idle);
    assert!(m.status().unwrap().chosen_update.is_none());
    let (mut m, _) = walked_to(UpdateState::Available);
    run(&mut m, CommandKind::Refresh, Outcome::Success, &repo(&["1.20.0"]));
    assert_eq!(state(&m), UpdateState::Idle);
}

#[test]
fn a_pinned_version_is_chosen_even_when_older() {
    let mut m = Machine::new("v", "aarch64", "1.20.0", VersionLock::parse("1.19.5"));
    run(&mut m, CommandKind::Refresh, Outcome::Success, &repo(&["1.21.0", "1.20.0", "1.19.5"]));
    assert_eq!(state(&m), UpdateState::Available);
    let chosen = m.status().unwrap().chosen_update.clone().unwrap();
    assert_eq!((chosen.version.as_str(), chosen.arch.as_str()), ("1.19.5", "aarch64"));
    m.set_version_lock(VersionLock::Pinned("1.30.0".into()));
    run(&mut m, CommandKind::Refresh, Outcome::Success, &repo(&["1.21.0"]));
    assert_eq!(state(&m), UpdateState::Idle, "a pinned version not listed chooses nothing");
    assert_eq!(choose_update(&repo(&["1.20.0"]), "1.20.0", &VersionLock::Pinned("1.20.0".into())), None);
}

#[test]
fn a_failed_refresh_goes_idle_and_keeps_the_old_lists() {
    let (mut m, _) = walked_to(UpdateState::Available);
    let cmd = run(&mut m, CommandKind::Refresh, failed(1), &repo(&["9.9.9"]));
    assert_eq!((cmd.cmd_status, cmd.exit_status, cmd.stderr.as_str()), (CmdStatus::Failed, 1, "boom\n"));
    let s = m.read_status().unwrap();
    assert_eq!(s.update_state, UpdateState::Idle);
    assert_eq!(s.available_updates, ["1.21.0", "1.20.0"]);
    assert_eq!(s.chosen_update.as_ref().unwrap().version, "1.21.0");
}

#[test]
fn refresh_in_staged_or_ready_keeps_the_state_but_rewrites_the_lists() {
    for target in [UpdateState::Staged, UpdateState::Ready] {
        let (mut m, _) = walked_to(target);
        run(&mut m, CommandKind::Refresh, Outcome::Success, &repo(&["1.20.0"]));
        let s = m.read_status().unwrap();
        assert_eq!(s.update_state, target);
        assert_eq!(s.available_updates, ["1.20.0"]);
        assert!(s.chosen_update.is_none());
        assert_eq!(s.staging_partition.as_ref().unwrap().image.version, "1.21.0");
        run(&mut m, CommandKind::Refresh, failed(2), &repo(&[]));
        assert_eq!(state(&m), target, "a failed refresh leaves Staged/Ready alone");
    }
}

#[test]
fn prepare_stages_the_chosen_image_and_says_so_on_stderr() {
    let (mut m, r) = walked_to(UpdateState::Available);
    let cmd = run(&mut m, CommandKind::Prepare, Outcome::Success, &r);
    assert_eq!(cmd.stderr, "Starting update to 1.21.0\n");
    let s = m.read_status().unwrap();
    assert_eq!(s.update_state, UpdateState::Staged);
    let staging = s.staging_partition.as_ref().unwrap();
    assert_eq!((staging.image.version.as_str(), staging.next_to_boot), ("1.21.0", false));
    assert!(s.active_partition.next_to_boot);
    assert_eq!(m.disk().partitions[1].as_ref().unwrap().version, "1.21.0");
}

#[test]
fn prepare_is_allowed_in_available_and_staged_only() {
    for (target, expected) in [
        (UpdateState::Idle, Some(409)),
        (UpdateState::Available, None),
        (UpdateState::Staged, None),
        (UpdateState::Ready, Some(409)),
    ] {
        let (mut m, _) = if target == UpdateState::Idle {
            let mut m = host("1.20.0");
            run(&mut m, CommandKind::Refresh, Outcome::Success, &repo(&["1.20.0"]));
            (m, vec![])
        } else {
            walked_to(target)
        };
        assert_eq!(m.begin(CommandKind::Prepare).err().map(|r| r.status), expected, "{target:?}");
    }
}

#[test]
fn prepare_without_a_chosen_update_is_404_and_a_failed_prepare_changes_nothing() {
    let (mut m, r) = walked_to(UpdateState::Staged);
    run(&mut m, CommandKind::Refresh, Outcome::Success, &repo(&["1.20.0"]));
    assert_eq!(m.begin(CommandKind::Prepare).unwrap_err(), Refusal { status: 404, body: NO_CHOSEN_UPDATE });
    let (mut m, _) = walked_to(UpdateState::Available);
    let before = m.status().unwrap().clone();
    let cmd = run(&mut m, CommandKind::Prepare, failed(3), &r);
    assert_eq!((cmd.cmd_type, cmd.cmd_status, cmd.exit_status), (CommandKind::Prepare, CmdStatus::Failed, 3));
    let after = m.status().unwrap();
    assert_eq!(after.update_state, UpdateState::Available);
    assert_eq!(after.staging_partition, before.staging_partition);
}

#[test]
fn prepare_of_a_release_withdrawn_from_the_repository_fails() {
    let (mut m, _) = walked_to(UpdateState::Available);
    let cmd = run(&mut m, CommandKind::Prepare, Outcome::Success, &repo(&["1.20.0"]));
    assert_eq!(cmd.cmd_status, CmdStatus::Failed);
    assert!(cmd.stderr.contains("1.21.0"), "{}", cmd.stderr);
    assert_eq!(state(&m), UpdateState::Available);
}

#[test]
fn activate_marks_the_staged_image_to_boot_next() {
    let (mut m, r) = walked_to(UpdateState::Staged);
    run(&mut m, CommandKind::Activate, Outcome::Success, &r);
    let s = m.read_status().unwrap();
    assert_eq!(s.update_state, UpdateState::Ready);
    assert!(s.staging_partition.as_ref().unwrap().next_to_boot);
    assert!(!s.active_partition.next_to_boot);
    assert_eq!(m.disk().next_to_boot, 1);
}

#[test]
fn activate_is_409_outside_staged_and_404_without_a_staged_image() {
    for target in [UpdateState::Available, UpdateState::Ready] {
        let (mut m, _) = walked_to(target);
        assert_eq!(m.begin(CommandKind::Activate).unwrap_err().status, 409);
    }
    let (mut m, r) = walked_to(UpdateState::Staged);
    m.status.as_mut().unwrap().staging_partition = None;
    assert_eq!(m.begin(CommandKind::Activate).unwrap_err(), Refusal { status: 404, body: NOTHING_STAGED });
    let (mut m, _) = walked_to(UpdateState::Staged);
    run(&mut m, CommandKind::Activate, failed(4), &r);
    assert_eq!(state(&m), UpdateState::Staged, "a failed activate changes nothing");
    assert_eq!(m.disk().next_to_boot, 0);
}

#[test]
fn deactivate_flips_back_and_is_allowed_in_ready_only() {
    let (mut m, r) = walked_to(UpdateState::Ready);
    run(&mut m, CommandKind::Deactivate, Outcome::Success, &r);
    let s = m.read_status().unwrap();
    assert_eq!(s.update_state, UpdateState::Staged);
    assert!(!s.staging_partition.as_ref().unwrap().next_to_boot);
    assert!(s.active_partition.next_to_boot);
    assert_eq!(m.disk().next_to_boot, 0);
    assert_eq!(m.begin(CommandKind::Deactivate).unwrap_err().status, 409);
    let (mut m, _) = walked_to(UpdateState::Ready);
    run(&mut m, CommandKind::Deactivate, failed(5), &r);
    assert_eq!(state(&m), UpdateState::Ready);
    let (mut m, _) = walked_to(UpdateState::Ready);
    m.status.as_mut().unwrap().staging_partition = None;
    assert_eq!(m.begin(CommandKind::Deactivate).unwrap_err().status, 404);
}

#[test]
fn the_lock_is_checked_before_the_state_and_the_state_before_the_image() {
    let (mut m, r) = walked_to(UpdateState::Available);
    m.begin(CommandKind::Refresh).unwrap();
    // Activate in Available would be 409, but the lock comes first.
    assert_eq!(m.begin(CommandKind::Activate).unwrap_err(), Refusal::LOCKED);
    assert_eq!(m.read_status().unwrap_err(), Refusal::LOCKED);
    assert_eq!(m.lock_shared().unwrap_err(), Refusal::LOCKED);
    m.finish(CommandKind::Refresh, Outcome::Success, &r, t(2));
    // Deactivate in Available with nothing staged: 409, not 404.
    assert_eq!(m.begin(CommandKind::Deactivate).unwrap_err().status, 409);
}

#[test]
fn a_status_reader_holding_the_shared_lock_makes_actions_423_but_not_reads() {
    let (mut m, _) = walked_to(UpdateState::Available);
    m.lock_shared().unwrap();
    m.lock_shared().unwrap();
    assert_eq!(m.begin(CommandKind::Refresh).unwrap_err(), Refusal::LOCKED);
    assert!(m.read_status().is_ok());
    m.unlock_shared();
    assert_eq!(m.readers(), 1);
    m.unlock_shared();
    assert!(m.begin(CommandKind::Refresh).is_ok());
}

#[test]
fn finish_timestamps_are_strictly_increasing_with_nine_digits() {
    let (mut m, r) = walked_to(UpdateState::Available);
    m.begin(CommandKind::Refresh).unwrap();
    let a = m.finish(CommandKind::Refresh, Outcome::Success, &r, t(10)).unwrap();
    m.begin(CommandKind::Refresh).unwrap();
    let b = m.finish(CommandKind::Refresh, Outcome::Success, &r, t(10)).unwrap();
    assert_eq!(a.timestamp.len(), "2026-09-21T14:13:30.000000000Z".len());
    assert!(b.timestamp > a.timestamp, "{} then {}", a.timestamp, b.timestamp);
    assert_eq!(m.finish(CommandKind::Prepare, Outcome::Success, &r, t(11)), None);
}

#[test]
fn boot_runs_the_activated_image_and_forgets_the_status() {
    let (mut m, r) = walked_to(UpdateState::Ready);
    let out = m.boot(false);
    assert_eq!(out, BootOutcome { version: "1.21.0".into(), rolled_back_from: None });
    assert_eq!(m.os().version_id, "1.21.0");
    assert_eq!(m.read_status().unwrap_err().status, 404);
    run(&mut m, CommandKind::Refresh, Outcome::Success, &r);
    let s = m.read_status().unwrap();
    assert_eq!(s.active_partition.image.version, "1.21.0");
    assert_eq!(s.update_state, UpdateState::Idle);
    assert!(s.staging_partition.is_none());
}

#[test]
fn a_bad_image_rolls_back_to_the_old_partition() {
    let (mut m, _) = walked_to(UpdateState::Ready);
    let out = m.boot(true);
    assert_eq!(out, BootOutcome { version: "1.20.0".into(), rolled_back_from: Some("1.21.0".into()) });
    assert_eq!(m.disk().next_to_boot, m.disk().booted);
    assert_eq!(m.boot(true).rolled_back_from, None, "nothing new to try on the next boot");
}

#[test]
fn reboot_without_activation_or_after_deactivation_keeps_the_version() {
    let (mut m, r) = walked_to(UpdateState::Staged);
    assert_eq!(m.boot(false).version, "1.20.0");
    let (mut m, _) = walked_to(UpdateState::Ready);
    run(&mut m, CommandKind::Deactivate, Outcome::Success, &r);
    assert_eq!(m.boot(false).version, "1.20.0");
}

#[test]
fn power_off_loses_a_running_command_and_its_lock() {
    let (mut m, r) = walked_to(UpdateState::Available);
    m.begin(CommandKind::Prepare).unwrap();
    m.power_off();
    assert_eq!(m.running_command(), None);
    assert_eq!(m.finish(CommandKind::Prepare, Outcome::Success, &r, t(3)), None);
    assert_eq!(m.read_status().unwrap_err().status, 404);
}
