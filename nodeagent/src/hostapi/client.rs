//! The blocking host API client: typed requests for every endpoint, 423
//! retries, and commands followed to completion.
//!
//! What this module does: sends one HTTP/1.1 request per connection over the
//! host's Unix socket, maps every answer to a typed result, retries 423 (on
//! reads and actions) with a bounded doubling backoff until a lock deadline,
//! and runs a command the way the fact sheet says: note the previous
//! `most_recent_command.timestamp`, POST the action, poll the status (423
//! means "still running") until a command of that type with another
//! timestamp appears, then read its `cmd_status`, all within the command's
//! deadline.
//!
//! What it must not do: decide what to do next (the agent's state machine
//! does), pick versions, or block an async runtime's worker thread (use
//! [`super::AsyncHostApi`] from async code).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::debug;

use super::error::{Action, Error, Failure};
use super::transport::{NoDns, UnixConnector, is_connect_failure};
use super::types::{
    Command, CommandStatus, CommandTimestamp, CommandType, HostStatus, OsInfo, UpdateStatus, parse_os,
    parse_update_status,
};

/// The host's API socket inside the agent's container (a hostPath mount of
/// the host's `/run/api.sock`).
pub const DEFAULT_SOCKET: &str = "/run/api.sock";

/// Answers are small; anything larger than this is malformed.
const MAX_BODY: u64 = 1 << 20;

/// A bounded doubling backoff: `initial`, `2 × initial`, … capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(10), max: Duration::from_secs(1) }
    }
}

/// How often something the host is doing is looked at: a running command
/// (its status reads answer 423 until it ends), or a host coming back from
/// a reboot. The pause before the next look grows with the time the thing
/// has taken so far, so the number of looks grows with the logarithm of its
/// duration and its end is noticed within about 5% of it:
///
/// - at first half the time elapsed (at least `min / 16`), until that
///   reaches `min` (short commands: a few looks, each at most 50% late);
/// - then `min`, until 5% of the elapsed time is longer;
/// - then 5% of the elapsed time, at most `max`.
///
/// With the defaults (1 s, 5 s) a 2-minute command is looked at about 64
/// times, a 1-second one about 8 times, and nothing is noticed more than 5 s
/// late. Both bounds are durations to scale down with the host work in
/// tests: the number of looks depends only on the ratio of the two, so a
/// scaled-down run makes the requests a production run would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSchedule {
    /// The pause between looks once the first second or so has passed.
    pub min: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Default for PollSchedule {
    fn default() -> Self {
        PollSchedule { min: Duration::from_secs(1), max: Duration::from_secs(5) }
    }
}

impl PollSchedule {
    /// The pause before the next look at something going on for `elapsed`.
    pub fn delay(&self, elapsed: Duration) -> Duration {
        let early = (self.min / 16).max(elapsed / 2);
        early.min(self.min).max(elapsed / 20).min(self.max)
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How long each command may take, from the POST until its result is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandDeadlines {
    /// refresh-updates (downloads the repository metadata).
    pub refresh: Duration,
    /// prepare-update (downloads and writes the image).
    pub prepare: Duration,
    /// activate-update (flips the boot flags).
    pub activate: Duration,
    /// deactivate-update (flips them back).
    pub deactivate: Duration,
}

impl Default for CommandDeadlines {
    fn default() -> Self {
        CommandDeadlines {
            refresh: Duration::from_secs(120),
            prepare: Duration::from_secs(900),
            activate: Duration::from_secs(120),
            deactivate: Duration::from_secs(120),
        }
    }
}

impl CommandDeadlines {
    /// The deadline of `cmd`.
    pub fn of(&self, cmd: CommandType) -> Duration {
        match cmd {
            CommandType::Refresh => self.refresh,
            CommandType::Prepare => self.prepare,
            CommandType::Activate => self.activate,
            CommandType::Deactivate => self.deactivate,
        }
    }
}

/// How the client talks to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostApiConfig {
    /// The host's API socket.
    pub socket: PathBuf,
    /// Longest time for one HTTP exchange.
    pub request_timeout: Duration,
    /// Backoff between actions answered 423 (a status reader held the
    /// shared lock for a moment).
    pub lock_backoff: Backoff,
    /// How long one read or action retries 423 before failing with `LockHeld`.
    pub lock_deadline: Duration,
    /// Pauses between status reads while a command runs (waiting for a
    /// command, or a read that finds one running: 423).
    pub poll: PollSchedule,
    /// Deadline of each command.
    pub deadlines: CommandDeadlines,
}

impl HostApiConfig {
    /// Defaults for the socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        HostApiConfig {
            socket: socket.into(),
            request_timeout: Duration::from_secs(10),
            lock_backoff: Backoff::default(),
            lock_deadline: Duration::from_secs(30),
            poll: PollSchedule::default(),
            deadlines: CommandDeadlines::default(),
        }
    }
}

impl Default for HostApiConfig {
    fn default() -> Self {
        HostApiConfig::new(DEFAULT_SOCKET)
    }
}

/// One answer: status and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim_end().to_owned()
    }
}

/// The blocking client of one host's update API.
#[derive(Debug)]
pub struct HostApi {
    agent: ureq::Agent,
    config: HostApiConfig,
}

// === impl HostApi ===

impl HostApi {
    /// A client of the host API described by `config`.
    pub fn new(config: HostApiConfig) -> Self {
        let ureq_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.request_timeout))
            .proxy(None)
            .max_redirects(0)
            // One connection per request: a pooled connection could be one
            // the host closed while rebooting.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .user_agent("brupop-nodeagent")
            .build();
        let agent = ureq::Agent::with_parts(ureq_config, UnixConnector::new(config.socket.clone()), NoDns);
        HostApi { agent, config }
    }

    /// The configuration.
    pub fn config(&self) -> &HostApiConfig {
        &self.config
    }

    /// `GET /os`: what the host runs.
    pub fn os(&self) -> Result<OsInfo, Error> {
        let action = Action::ReadOs;
        let answer = self.request_retrying_lock("GET", "/os").map_err(|f| Error::new(action, f))?;
        match answer.status {
            200 => parse_os(&answer.body).map_err(|m| Error::new(action, Failure::Malformed(m))),
            _ => Err(Error::new(action, http_failure(action, &answer))),
        }
    }

    /// `GET /updates/status`, retrying 423 until the lock deadline.
    /// [`HostStatus::Uninitialized`] after a boot is not an error.
    pub fn status(&self) -> Result<HostStatus, Error> {
        let answer = self.request_retrying_lock("GET", "/updates/status").map_err(Error::ReadStatus)?;
        status_from(answer).map_err(Error::ReadStatus)
    }

    /// POSTs the action of `cmd` (retrying 423) and returns once the host
    /// accepted it (204); the command then runs in the background. Most
    /// callers want [`HostApi::run`].
    pub fn start(&self, cmd: CommandType) -> Result<(), Error> {
        let action = Action::of(cmd);
        let answer = self.request_retrying_lock("POST", cmd.action_path()).map_err(|f| Error::new(action, f))?;
        match answer.status {
            200..=299 => Ok(()),
            _ => Err(Error::new(action, http_failure(action, &answer))),
        }
    }

    /// Runs `cmd` to completion: notes the previous command's timestamp,
    /// starts it, and waits for its result within its deadline. A command
    /// that finished `Failed` is [`Failure::CommandFailed`].
    pub fn run(&self, cmd: CommandType) -> Result<Command, Error> {
        let deadline = Instant::now() + self.config.deadlines.of(cmd);
        let before = match self.status() {
            Ok(status) => status.last_command_timestamp().cloned(),
            // A status read inside a command is reported as the command's error.
            Err(e) => return Err(Error::new(Action::of(cmd), e.into_failure())),
        };
        self.run_until(cmd, before.as_ref(), deadline).map(|(done, _)| done)
    }

    /// Starts `cmd` knowing the previous command's timestamp (from a status
    /// just read: no read of its own first) and waits for its result within
    /// its deadline. Returns the status that showed it finished, which is
    /// the host's current update status.
    pub fn run_after(&self, cmd: CommandType, previous: Option<&CommandTimestamp>) -> Result<UpdateStatus, Error> {
        let deadline = Instant::now() + self.config.deadlines.of(cmd);
        self.run_until(cmd, previous, deadline).map(|(_, status)| status)
    }

    /// Starts `cmd` after the command of timestamp `previous` and waits for
    /// its result until `deadline`.
    fn run_until(
        &self,
        cmd: CommandType,
        previous: Option<&CommandTimestamp>,
        deadline: Instant,
    ) -> Result<(Command, UpdateStatus), Error> {
        self.start(cmd)?;
        debug!(command = %cmd, previous = previous.map(CommandTimestamp::as_str), "command started");
        self.wait_for_status(cmd, previous, deadline)
    }

    /// Polls the status until a `cmd` command finished with a timestamp other
    /// than `previous`, or `deadline` passes.
    pub fn wait_for(
        &self,
        cmd: CommandType,
        previous: Option<&CommandTimestamp>,
        deadline: Instant,
    ) -> Result<Command, Error> {
        self.wait_for_status(cmd, previous, deadline).map(|(done, _)| done)
    }

    /// [`HostApi::wait_for`], also returning the status that showed the result.
    fn wait_for_status(
        &self,
        cmd: CommandType,
        previous: Option<&CommandTimestamp>,
        deadline: Instant,
    ) -> Result<(Command, UpdateStatus), Error> {
        let action = Action::of(cmd);
        let fail = |f| Error::new(action, f);
        let started = Instant::now();
        let mut last_seen: String;
        loop {
            let answer = self.request("GET", "/updates/status").map_err(fail)?;
            if answer.status == 423 {
                last_seen = "the update lock held (command running)".into();
            } else {
                match status_from(answer).map_err(fail)? {
                    HostStatus::Uninitialized => {
                        return Err(fail(Failure::StatusUninitialized {
                            body: "the status was reset while waiting for the command (the host rebooted?)".into(),
                        }));
                    }
                    HostStatus::Initialized(status) => match status.most_recent_command.clone() {
                        Some(done) if done.cmd_type == cmd && Some(&done.timestamp) != previous => {
                            return match done.cmd_status {
                                CommandStatus::Success => Ok((done, status)),
                                CommandStatus::Failed | CommandStatus::Unknown => {
                                    Err(fail(Failure::CommandFailed { command: done }))
                                }
                            };
                        }
                        Some(other) => {
                            last_seen = format!(
                                "most recent command {} {} at {}",
                                other.cmd_type, other.cmd_status, other.timestamp
                            );
                        }
                        None => last_seen = "no command in the status".into(),
                    },
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(fail(Failure::Timeout { waited: started.elapsed(), last_seen }));
            }
            std::thread::sleep(self.config.poll.delay(started.elapsed()).min(deadline - now));
        }
    }

    /// refresh-updates, to completion.
    pub fn refresh(&self) -> Result<Command, Error> {
        self.run(CommandType::Refresh)
    }

    /// prepare-update, to completion.
    pub fn prepare(&self) -> Result<Command, Error> {
        self.run(CommandType::Prepare)
    }

    /// activate-update, to completion.
    pub fn activate(&self) -> Result<Command, Error> {
        self.run(CommandType::Activate)
    }

    /// deactivate-update, to completion.
    pub fn deactivate(&self) -> Result<Command, Error> {
        self.run(CommandType::Deactivate)
    }

    /// `POST /actions/reboot`: Ok once the host queued the reboot (204). A
    /// connection closed after the request was sent is
    /// [`Failure::ConnectionDropped`]: the host is probably going down, and
    /// the caller should check `/os` after it comes back.
    pub fn reboot(&self) -> Result<(), Error> {
        let action = Action::Reboot;
        let answer = self.request_retrying_lock("POST", "/actions/reboot").map_err(|f| Error::new(action, f))?;
        match answer.status {
            200..=299 => Ok(()),
            _ => Err(Error::new(action, http_failure(action, &answer))),
        }
    }

    /// One request, retried while it answers 423, until the lock deadline:
    /// an action quickly (a status reader held the lock for a moment), a
    /// read as a running command is looked at ([`PollSchedule`]).
    fn request_retrying_lock(&self, method: &str, path: &str) -> Result<Answer, Failure> {
        let started = Instant::now();
        let mut attempts: u32 = 0;
        loop {
            let answer = self.request(method, path)?;
            if answer.status != 423 {
                return Ok(answer);
            }
            attempts = attempts.saturating_add(1);
            let waited = started.elapsed();
            let delay = if method == "GET" {
                self.config.poll.delay(waited)
            } else {
                self.config.lock_backoff.delay(attempts - 1)
            };
            if waited + delay > self.config.lock_deadline {
                return Err(Failure::LockHeld { body: answer.text(), attempts, waited });
            }
            debug!(method, path, attempts, delay_ms = delay.as_millis() as u64, "update lock held; retrying");
            std::thread::sleep(delay);
        }
    }

    /// One HTTP exchange on a new connection.
    fn request(&self, method: &str, path: &str) -> Result<Answer, Failure> {
        let uri = format!("http://localhost{path}");
        let result = match method {
            "POST" => self.agent.post(&uri).send_empty(),
            _ => self.agent.get(&uri).call(),
        };
        let mut response = result.map_err(transport_failure)?;
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(MAX_BODY).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => Failure::Malformed(format!("answer larger than {MAX_BODY} bytes")),
            other => transport_failure(other),
        })?;
        Ok(Answer { status, body })
    }
}

/// Maps a ureq error: a connect failure never reached the host; anything
/// after the connect means the exchange broke with the request (partly) sent.
fn transport_failure(err: ureq::Error) -> Failure {
    match err {
        ureq::Error::Io(io) if is_connect_failure(&io) => Failure::Io(io),
        ureq::Error::Io(io) => Failure::ConnectionDropped(io.to_string()),
        ureq::Error::Protocol(p) => Failure::ConnectionDropped(format!("HTTP protocol: {p}")),
        ureq::Error::Timeout(t) => {
            Failure::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer in time ({t})")))
        }
        other => Failure::Io(std::io::Error::other(other.to_string())),
    }
}

/// The status answer as a [`HostStatus`], or what was wrong with it.
fn status_from(answer: Answer) -> Result<HostStatus, Failure> {
    match answer.status {
        200 => parse_update_status(&answer.body).map(HostStatus::Initialized).map_err(Failure::Malformed),
        // A 404 without a body is an unknown path, not a missing status.
        404 if !answer.body.is_empty() => Ok(HostStatus::Uninitialized),
        _ => Err(http_failure(Action::ReadStatus, &answer)),
    }
}

/// The failure an unsuccessful answer to `action` means.
fn http_failure(action: Action, answer: &Answer) -> Failure {
    let body = answer.text();
    match (answer.status, action) {
        (409, _) => Failure::NotAllowed { body },
        (404, _) if body.is_empty() => Failure::UnexpectedStatus { status: 404, body },
        (404, Action::Prepare) => Failure::NoChosenUpdate { body },
        (404, Action::Activate | Action::Deactivate) => Failure::NothingStaged { body },
        (404, Action::ReadStatus) => Failure::StatusUninitialized { body },
        (423, _) => Failure::LockHeld { body, attempts: 1, waited: Duration::ZERO },
        (500, _) if body.contains("Unable to start the update dispatcher") => Failure::CannotUpdateInPlace { body },
        (500..=599, _) => Failure::Server { status: answer.status, body },
        (status, _) => Failure::UnexpectedStatus { status, body },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_initial_and_stops_at_max() {
        let b = Backoff::default();
        let delays: Vec<_> = (0..9).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    /// Looks until something that takes `duration` is seen done, and how late.
    fn looks(p: &PollSchedule, duration: Duration) -> (u32, Duration) {
        let (mut t, mut n) = (Duration::ZERO, 0);
        loop {
            n += 1;
            if t >= duration {
                return (n, t - duration);
            }
            t += p.delay(t);
        }
    }

    #[test]
    fn a_running_command_is_looked_at_less_and_less_often() {
        let p = PollSchedule::default();
        let s = Duration::from_secs;
        assert_eq!(p.delay(Duration::ZERO), Duration::from_micros(62_500), "the first look comes soon");
        assert_eq!(p.delay(Duration::from_millis(600)), Duration::from_millis(300), "half the time at first");
        assert_eq!(p.delay(s(10)), s(1), "then the minimum");
        assert_eq!(p.delay(s(40)), s(2), "then 5% of the time elapsed");
        assert_eq!(p.delay(s(3600)), s(5), "never more than the maximum");
        for (secs, most) in [(1, 10), (5, 16), (30, 40), (120, 70), (180, 82), (900, 230)] {
            let (n, late) = looks(&p, s(secs));
            assert!(n <= most, "a {secs} s command: {n} looks, expected at most {most}");
            let allowed = if secs >= 20 { s(secs) / 20 } else { s(1).max(s(secs) / 2) };
            assert!(late <= allowed.max(Duration::from_millis(1)), "a {secs} s command noticed {late:?} late");
            assert!(late <= s(5));
        }
    }

    #[test]
    fn scaled_down_schedules_make_as_many_looks_as_production() {
        let prod = PollSchedule::default();
        let scaled = PollSchedule { min: prod.min / 40, max: prod.max / 40 };
        for secs in [2u64, 30, 120, 600] {
            let (a, _) = looks(&prod, Duration::from_secs(secs));
            let (b, _) = looks(&scaled, Duration::from_secs(secs) / 40);
            assert!(a.abs_diff(b) <= 1, "{secs} s: {a} looks in production, {b} scaled down 40x");
        }
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn answers_map_to_failures_named_by_action() {
        let f = http_failure(Action::Prepare, &answer(404, "Previously chosen Update no longer exists"));
        assert!(matches!(f, Failure::NoChosenUpdate { .. }), "{f:?}");
        let f = http_failure(Action::Activate, &answer(404, "No update image applied to staging partition"));
        assert!(matches!(f, Failure::NothingStaged { .. }), "{f:?}");
        let f = http_failure(Action::Deactivate, &answer(409, "Update action not allowed according to update state"));
        assert!(matches!(f, Failure::NotAllowed { .. }), "{f:?}");
        let f = http_failure(Action::Refresh, &answer(500, "Unable to start the update dispatcher\n"));
        assert!(
            matches!(&f, Failure::CannotUpdateInPlace { body } if body == "Unable to start the update dispatcher"),
            "{f:?}"
        );
        let f = http_failure(Action::Reboot, &answer(500, "Failed to reboot, inhibited"));
        assert!(matches!(f, Failure::Server { status: 500, .. }), "{f:?}");
        let f = http_failure(Action::Prepare, &answer(404, ""));
        assert!(matches!(f, Failure::UnexpectedStatus { status: 404, .. }), "{f:?}");
        let f = http_failure(Action::Refresh, &answer(405, ""));
        assert!(matches!(f, Failure::UnexpectedStatus { status: 405, .. }), "{f:?}");
    }

    #[test]
    fn status_404_with_a_message_is_uninitialized_not_an_error() {
        let s = status_from(answer(404, "Update status is uninitialized, refresh-updates to initialize it")).unwrap();
        assert_eq!(s, HostStatus::Uninitialized);
        assert!(status_from(answer(404, "")).is_err());
        let err = status_from(answer(200, "{\"update_state\":")).unwrap_err();
        assert!(matches!(err, Failure::Malformed(_)), "{err:?}");
    }
}
