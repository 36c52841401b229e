//! Maintenance windows: when the leader may start new update grants.
//!
//! A node that already holds a grant finishes its update whatever the time;
//! only *new* grants wait for a window. Everything here is pure: `now` is
//! always an argument, nothing reads a clock, the environment or the disk
//! (time zones come from the tz database bundled into the binary, so results
//! do not depend on the host's `/usr/share/zoneinfo`).
//!
//! # Grammar
//!
//! Each `--update-window` value (or entry of the UpdatePolicy's
//! `updateWindows`) is one window, in one of two forms. Several windows are
//! combined as a union; an empty list means "always open".
//!
//! ## Weekly form: `<days> <time> [<zone>]`
//!
//! Tokens are separated by whitespace. Examples:
//! `Mon-Fri 02:00-05:00 Europe/Berlin`, `Sat,Sun 22:00+6h UTC`,
//! `Fri-Mon 23:30-01:00`, `daily 03:00+90m America/Los_Angeles`.
//!
//! - `<days>`: `*` or `daily` for every day, otherwise comma-separated items,
//!   each a day or a range of days `<day>-<day>`. A day is `Mon` `Tue` `Wed`
//!   `Thu` `Fri` `Sat` `Sun` or its full English name (`Monday`), also `Tues`,
//!   `Thur`, `Thurs`; case-insensitive. Ranges are inclusive and may wrap
//!   past Sunday (`Fri-Mon` = Fri, Sat, Sun, Mon). The days say on which
//!   local dates a window *starts*.
//! - `<time>`: either `HH:MM-HH:MM` (start and end in the zone's local
//!   wall-clock time; an end at or before the start, e.g. `22:00-02:00`, ends
//!   on the next day, so `Fri 22:00-02:00` is open early on Saturday and
//!   `02:00-02:00` lasts a day; `24:00` is accepted as an end and means
//!   `00:00`) or `HH:MM+<duration>` with a humantime duration (`+6h`, `+90m`,
//!   `+1h30m`, `+2d`), more than zero and at most 7 days, measured in
//!   absolute time. Hours are 0-23 (one or two digits), minutes two digits.
//! - `<zone>`: an IANA time zone name (`Europe/Berlin`, `UTC`,
//!   case-insensitive); optional, default `UTC`.
//!
//! Daylight saving time, for local wall-clock times:
//! - A time that does not exist (spring-forward gap, e.g. 02:30 in
//!   Europe/Berlin on 2026-03-29) means the first instant after the gap
//!   (03:00 CEST). So `Sun 02:30-03:30` is open 03:00-03:30 that night and
//!   `Sun 02:30+1h` is open 03:00-04:00; a window lying wholly inside the gap
//!   does not open that day.
//! - A time that occurs twice (fall-back fold, 02:00-03:00 on 2026-10-25 in
//!   Europe/Berlin) means its first occurrence. So `Sun 02:00-03:00` is open
//!   from the first 02:00 (CEST) until 03:00 CET, two real hours, while
//!   `Sun 02:00+1h` is open one real hour.
//!
//! ## Cron form: the original operator's `SCHEDULER_CRON_EXPRESSION`
//!
//! A value whose first token starts with a digit, `*` or `?` and which has at
//! least four tokens is a cron expression in the format of the Rust `cron`
//! crate that the original operator used: 6 or 7 whitespace-separated fields
//! `sec min hour day-of-month month day-of-week [year]`, e.g.
//! `0 0 23 * * Mon-Fri *`. Ranges: sec and min 0-59, hour 0-23,
//! day-of-month 1-31, month 1-12 or `Jan`..`Dec` (or full names),
//! day-of-week 1-7 where **1 = Sunday** .. 7 = Saturday, or `Sun`..`Sat`
//! (or full names), year 1970-2100. Each field is `*` (or `?`), or a
//! comma-separated list of items `a`, `a-b` (start ≤ end), `*/n`, `a-b/n` or
//! `a/n` (from `a` to the field's maximum in steps of `n`). A day matches
//! when both day-of-month and day-of-week match. The shorthands `@yearly`
//! (`@annually`), `@monthly`, `@weekly` (Sundays), `@daily` and `@hourly`
//! are accepted. Times are UTC. Each matching instant opens a window of one
//! hour ([`DEFAULT_CRON_WINDOW`]), or as long as a last token `+<duration>`
//! says (`0 0 23 * * Mon-Fri * +6h`; [`Window::parse_with_cron_length`]
//! takes another default), at least one minute and at most 7 days. The
//! original operator instead started at a match and went on until every
//! waiting node was done; a window as long as the rollout takes is the
//! nearest equivalent. A 5-field crontab line is rejected with a hint to
//! prepend the seconds field.
//!
//! ## Semantics
//!
//! - A window is open from its start (inclusive) to its end (exclusive). A
//!   set of windows is open when any of them is, and always when it is empty.
//! - [`Windows::current_end`]: when the union closes again, i.e. the latest
//!   end among the open windows, extended through every window that overlaps
//!   or touches it.
//! - [`Windows::next_start`]: when closed, the next start; when open, the
//!   first start after the current opening closes.
//! - Both look at most [`HORIZON`] (366 days) ahead and scan day by day, then
//!   only the matching hours, minutes and seconds of a day.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp, ToSpan};

pub mod blackout;
mod cron;
#[cfg(test)]
mod tests;

pub use blackout::{Blackout, BlackoutError};
use cron::Cron;

/// Length of the window a cron expression opens at each match.
pub const DEFAULT_CRON_WINDOW: SignedDuration = SignedDuration::from_hours(1);
/// Shortest window a cron expression may open (keeps the chaining in
/// [`Windows::current_end`] to at most ~530,000 steps over the horizon).
pub const MIN_CRON_WINDOW: SignedDuration = SignedDuration::from_mins(1);
/// Longest window (duration form and cron length).
pub const MAX_WINDOW_LENGTH: SignedDuration = SignedDuration::from_hours(7 * 24);
/// How far [`Windows::current_end`] and [`Windows::next_start`] look ahead.
pub const HORIZON: SignedDuration = SignedDuration::from_hours(366 * 24);

const EXPECTED: &str = "expected `<days> <HH:MM-HH:MM | HH:MM+duration> [zone]` or a 6/7-field cron expression";

/// Why a window specification was rejected; each names the whole value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("empty update window: {EXPECTED}")]
    Empty,
    #[error("update window `{value}`: {EXPECTED}")]
    Shape { value: String },
    #[error("update window `{value}`: bad days `{days}`: {reason}")]
    Days { value: String, days: String, reason: String },
    #[error("update window `{value}`: bad time `{time}`: {reason}")]
    Time { value: String, time: String, reason: String },
    #[error("update window `{value}`: bad duration `{duration}`: {reason}")]
    Duration { value: String, duration: String, reason: String },
    #[error(
        "update window `{value}`: unknown time zone `{zone}` (expected an IANA name such as `Europe/Berlin` or `UTC`)"
    )]
    Zone { value: String, zone: String },
    #[error("update window `{value}`: bad cron expression: {reason}")]
    Cron { value: String, reason: String },
}

/// One parsed maintenance window (a weekly rule or a cron expression).
#[derive(Debug, Clone, PartialEq)]
pub struct Window(Kind);

/// A set of windows; open when any of them is (empty: always open) and no
/// blackout ([`blackout`]) covers the time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Windows(Vec<Window>, Vec<Blackout>, Vec<(Window, model::parse::Budget)>);

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Weekly(Weekly),
    Cron(Cron),
}

#[derive(Debug, Clone, PartialEq)]
struct Weekly {
    /// Indexed by `Weekday::to_monday_zero_offset`.
    days: [bool; 7],
    start: Time,
    end: End,
    tz: TimeZone,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// Local wall-clock end; at or before `start` means the next day.
    At(Time),
    /// Absolute length.
    After(SignedDuration),
}

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Window, WindowError> {
        Window::parse_with_cron_length(s, DEFAULT_CRON_WINDOW)
    }
}

impl Window {
    /// Parses one window; a cron expression opens windows of `cron_length`.
    pub fn parse_with_cron_length(spec: &str, cron_length: SignedDuration) -> Result<Window, WindowError> {
        let mut tokens: Vec<&str> = spec.split_whitespace().collect();
        let cronish = tokens
            .first()
            .is_some_and(|t| t.starts_with('@') || t.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '?'));
        // A cron expression may end in `+<duration>`: each match opens a
        // window that long instead of `cron_length`.
        let mut cron_length = cron_length;
        if cronish && tokens.len() >= 2 && tokens.last().is_some_and(|t| t.starts_with('+')) {
            let suffix = tokens.pop().unwrap_or_default();
            cron_length = parse_length(&suffix[1..]).map_err(|reason| WindowError::Cron {
                value: spec.to_string(),
                reason: format!("window length `{suffix}`: {reason}"),
            })?;
        }
        match tokens.as_slice() {
            [] => Err(WindowError::Empty),
            [short] if short.starts_with('@') => cron::parse(spec, &tokens, cron_length).map(|c| Window(Kind::Cron(c))),
            _ if cronish && tokens.len() >= 4 => cron::parse(spec, &tokens, cron_length).map(|c| Window(Kind::Cron(c))),
            [days, time] => parse_weekly(spec, days, time, None),
            [days, time, zone] => parse_weekly(spec, days, time, Some(*zone)),
            _ => Err(WindowError::Shape { value: spec.to_string() }),
        }
    }

    /// The latest end among this window's occurrences that contain `t`.
    fn containing_end(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.0 {
            Kind::Weekly(w) => {
                let today = w.tz.to_datetime(t).date();
                let first = today.checked_sub(8.days()).ok()?;
                let last = today.tomorrow().ok()?;
                days_between(first, last)
                    .filter_map(|d| w.occurrence(d))
                    .filter(|&(start, end)| start <= t && t < end)
                    .map(|(_, end)| end)
                    .max()
            }
            Kind::Cron(c) => {
                let start = c.match_at_or_before(t)?;
                let end = start.checked_add(c.length).ok()?;
                (t < end).then_some(end)
            }
        }
    }

    /// The earliest occurrence start in `[from, limit]`.
    fn next_start(&self, from: Timestamp, limit: Timestamp) -> Option<Timestamp> {
        let found = match &self.0 {
            Kind::Weekly(w) => {
                let first = w.tz.to_datetime(from).date().yesterday().ok()?;
                let last = w.tz.to_datetime(limit).date().tomorrow().ok()?;
                // Starts grow with the date, so the first one at or after `from` is the earliest.
                days_between(first, last)
                    .filter_map(|d| w.occurrence(d))
                    .map(|(start, _)| start)
                    .find(|&start| start >= from)
            }
            Kind::Cron(c) => c.match_at_or_after(from, limit),
        };
        found.filter(|&start| start <= limit)
    }
}

impl Windows {
    /// Parses every spec (cron windows last [`DEFAULT_CRON_WINDOW`]); fails on the first bad one.
    pub fn parse_all<S: AsRef<str>>(specs: &[S]) -> Result<Windows, WindowError> {
        Windows::parse_all_with_cron_length(specs, DEFAULT_CRON_WINDOW)
    }

    /// Like [`Windows::parse_all`], with cron windows lasting `cron_length`.
    pub fn parse_all_with_cron_length<S: AsRef<str>>(
        specs: &[S],
        cron_length: SignedDuration,
    ) -> Result<Windows, WindowError> {
        specs
            .iter()
            .map(|s| Window::parse_with_cron_length(s.as_ref(), cron_length))
            .collect::<Result<Vec<_>, _>>()
            .map(|w| Windows(w, Vec::new(), Vec::new()))
    }

    /// No windows: grants may start at any time.
    pub fn always() -> Windows {
        Windows(Vec::new(), Vec::new(), Vec::new())
    }

    /// These windows with budget windows: while one is open, its budget applies.
    pub fn with_budgets(mut self, budgets: Vec<(Window, model::parse::Budget)>) -> Windows {
        self.2 = budgets;
        self
    }

    /// The budget of the first budget window open at `now`, and when that
    /// answer next changes (the soonest edge of any budget window).
    pub fn budget(&self, now: Timestamp) -> (Option<model::parse::Budget>, Option<Timestamp>) {
        let limit = now.checked_add(HORIZON).unwrap_or(Timestamp::MAX);
        let budget = self.2.iter().find(|(w, _)| w.containing_end(now).is_some()).map(|(_, b)| *b);
        let edge = self
            .2
            .iter()
            .filter_map(|(w, _)| w.containing_end(now).or_else(|| w.next_start(now, limit)))
            .filter(|t| *t > now)
            .min();
        (budget, edge)
    }

    /// These windows with `blackouts` taken out of them.
    pub fn with_blackouts(mut self, blackouts: Vec<Blackout>) -> Windows {
        self.1 = blackouts;
        self
    }

    /// No windows and no blackouts: always open.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty() && self.1.is_empty()
    }

    /// The parsed windows, e.g. to show them in canonical form.
    pub fn windows(&self) -> &[Window] {
        &self.0
    }

    /// If `now` is in a blackout: when it ends (through touching ones).
    pub fn blacked_out_until(&self, now: Timestamp) -> Option<Timestamp> {
        blackout::blacked_until(&self.1, now)
    }

    /// Whether `now` is inside any window (start inclusive, end exclusive)
    /// and in no blackout. Without windows, open whenever not blacked out.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.base_open(now) && self.blacked_out_until(now).is_none()
    }

    fn base_open(&self, now: Timestamp) -> bool {
        self.0.is_empty() || self.0.iter().any(|w| w.containing_end(now).is_some())
    }

    /// If open: when it closes again, at the end of the union of windows
    /// open now (extended through every window that overlaps or touches it)
    /// or at the next blackout, whichever comes first. `None` if closed at
    /// `now`, or if it stays open for the whole [`HORIZON`].
    pub fn current_end(&self, now: Timestamp) -> Option<Timestamp> {
        if !self.is_open(now) {
            return None;
        }
        let limit = now.checked_add(HORIZON).unwrap_or(Timestamp::MAX);
        let windows_end = if self.0.is_empty() { None } else { self.base_current_end(now, limit) };
        let blackout = blackout::next_blackout(&self.1, now).filter(|t| *t <= limit);
        match (windows_end, blackout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn base_current_end(&self, now: Timestamp, limit: Timestamp) -> Option<Timestamp> {
        let mut end = self.latest_containing_end(now)?;
        while end <= limit {
            match self.latest_containing_end(end) {
                Some(later) => end = later,
                None => return Some(end),
            }
        }
        None
    }

    /// When it next opens: if closed at `now`, the first instant after
    /// `now` that is inside a window and in no blackout; if open, the first
    /// such instant after it next closes (see [`Windows::current_end`]).
    /// `None` if always open, or if there is no such instant within
    /// [`HORIZON`] of `now`.
    pub fn next_start(&self, now: Timestamp) -> Option<Timestamp> {
        let limit = now.checked_add(HORIZON).unwrap_or(Timestamp::MAX);
        let mut t = if self.is_open(now) { self.current_end(now)? } else { now };
        // Each step jumps past one blackout or to the next window's start.
        for _ in 0..1024 {
            if t > limit {
                return None;
            }
            if let Some(end) = self.blacked_out_until(t) {
                t = end;
                continue;
            }
            if self.base_open(t) {
                return Some(t);
            }
            t = self.0.iter().filter_map(|w| w.next_start(t, limit)).min()?;
        }
        None
    }

    fn latest_containing_end(&self, t: Timestamp) -> Option<Timestamp> {
        self.0.iter().filter_map(|w| w.containing_end(t)).max()
    }
}

impl Weekly {
    /// The occurrence starting on local date `d`, if the window opens that day.
    fn occurrence(&self, d: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days[day_index(d.weekday())] {
            return None;
        }
        let start = resolve(&self.tz, d.to_datetime(self.start))?;
        let end = match self.end {
            End::At(t) => {
                let end_date = if t <= self.start { d.tomorrow().ok()? } else { d };
                resolve(&self.tz, end_date.to_datetime(t))?
            }
            End::After(length) => start.checked_add(length).ok()?,
        };
        (start < end).then_some((start, end))
    }
}

/// The instant of a local wall-clock time: in a gap the first instant after
/// the gap, in a fold the first occurrence.
fn resolve(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        AmbiguousOffset::Fold { before, after } => {
            let a = before.to_timestamp(dt).ok()?;
            let b = after.to_timestamp(dt).ok()?;
            Some(a.min(b))
        }
        AmbiguousOffset::Gap { before, after } => {
            // Read with the later offset, `dt` lies just before the transition.
            let ahead = after.to_timestamp(dt).ok()?;
            match tz.following(ahead).next() {
                Some(transition) => Some(transition.timestamp()),
                None => before.to_timestamp(dt).ok(),
            }
        }
    }
}

/// Dates from `first` to `last`, both inclusive.
fn days_between(first: Date, last: Date) -> impl Iterator<Item = Date> {
    first.series(1.day()).take_while(move |d| *d <= last)
}

fn parse_weekly(spec: &str, days: &str, time: &str, zone: Option<&str>) -> Result<Window, WindowError> {
    let days = parse_days(days).map_err(|reason| WindowError::Days {
        value: spec.to_string(),
        days: days.to_string(),
        reason,
    })?;
    let time_error = |reason: String| WindowError::Time { value: spec.to_string(), time: time.to_string(), reason };
    let (start, end) = if let Some((start, length)) = time.split_once('+') {
        let start = parse_hhmm(start, false).map_err(time_error)?;
        let length = parse_length(length).map_err(|reason| WindowError::Duration {
            value: spec.to_string(),
            duration: length.to_string(),
            reason,
        })?;
        (start, End::After(length))
    } else if let Some((start, end)) = time.split_once('-') {
        let start = parse_hhmm(start, false).map_err(time_error)?;
        (start, End::At(parse_hhmm(end, true).map_err(time_error)?))
    } else {
        return Err(time_error("expected `HH:MM-HH:MM` or `HH:MM+<duration>`".into()));
    };
    let tz = match zone {
        None => TimeZone::UTC,
        Some(zone) => TimeZoneDatabase::bundled()
            .get(zone)
            .map_err(|_| WindowError::Zone { value: spec.to_string(), zone: zone.to_string() })?,
    };
    Ok(Window(Kind::Weekly(Weekly { days, start, end, tz })))
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    if text == "*" || text.eq_ignore_ascii_case("daily") {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for item in text.split(',') {
        let day = |name| {
            weekday(name)
                .ok_or_else(|| format!("`{item}` is not a day (`Mon`..`Sun`), a range like `Mon-Fri`, `*` or `daily`"))
        };
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (day(a)?, day(b)?),
            None => (day(item)?, day(item)?),
        };
        let mut d = first;
        days[day_index(d)] = true;
        while d != last {
            d = d.next();
            days[day_index(d)] = true;
        }
    }
    Ok(days)
}

/// Index into `Weekly::days`: Monday = 0 .. Sunday = 6.
fn day_index(day: Weekday) -> usize {
    usize::from(day.to_monday_zero_offset().unsigned_abs())
}

/// A day by its English name or abbreviation, case-insensitive.
fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tues" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thur" | "thurs" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

/// `H:MM` or `HH:MM`; `24:00` only as an end (`allow_24`), meaning `00:00`.
fn parse_hhmm(text: &str, allow_24: bool) -> Result<Time, String> {
    let bad = || format!("`{text}` is not a time `HH:MM`");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if allow_24 && h == 24 && m == 0 {
        return Ok(Time::midnight());
    }
    if h > 23 {
        return Err(format!("hour {h} in `{text}` is out of range 0-23"));
    }
    if m > 59 {
        return Err(format!("minute {m} in `{text}` is out of range 0-59"));
    }
    Time::new(h, m, 0, 0).map_err(|e| e.to_string())
}

fn parse_length(text: &str) -> Result<SignedDuration, String> {
    let std = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    let length = SignedDuration::try_from(std).map_err(|e| e.to_string())?;
    check_length(length)?;
    Ok(length)
}

fn check_length(length: SignedDuration) -> Result<(), String> {
    if length <= SignedDuration::ZERO {
        Err("a window must last more than zero".into())
    } else if length > MAX_WINDOW_LENGTH {
        Err("a window may last at most 7 days".into())
    } else {
        Ok(())
    }
}

impl fmt::Display for Window {
    /// Canonical text: weekly windows as `<days> <time> <zone>` (e.g.
    /// `Mon-Fri 02:00-05:00 Europe/Berlin`), cron windows as their expression
    /// with single spaces and a non-default length as `+<duration>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = match &self.0 {
            Kind::Cron(c) if c.length == DEFAULT_CRON_WINDOW => return f.write_str(&c.source),
            Kind::Cron(c) => return write!(f, "{} +{}", c.source, format_length(c.length)),
            Kind::Weekly(w) => w,
        };
        let hhmm = |t: Time| format!("{:02}:{:02}", t.hour(), t.minute());
        write!(f, "{} {}", format_days(&w.days), hhmm(w.start))?;
        match w.end {
            End::At(t) => write!(f, "-{}", hhmm(t))?,
            End::After(length) => write!(f, "+{}", format_length(length))?,
        }
        write!(f, " {}", w.tz.iana_name().unwrap_or("UTC"))
    }
}

impl fmt::Display for Windows {
    /// The windows joined by `"; "`, or `always` when there are none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("always");
        }
        let texts: Vec<String> = self.0.iter().map(Window::to_string).collect();
        f.write_str(&texts.join("; "))
    }
}

/// `daily`, or runs of days from Monday (or from the start of a run that
/// wraps past Sunday): runs of three or more as ranges, e.g. `Fri-Mon,Wed`.
fn format_days(days: &[bool; 7]) -> String {
    if days.iter().all(|&d| d) {
        return "daily".into();
    }
    let mut start = 0;
    while days[start] && days[(start + 6) % 7] {
        start = (start + 6) % 7;
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !days[(start + i) % 7] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < 7 && days[(start + j + 1) % 7] {
            j += 1;
        }
        let (a, b) = (DAY_NAMES[(start + i) % 7], DAY_NAMES[(start + j) % 7]);
        parts.push(match j - i {
            0 => a.to_string(),
            1 => format!("{a},{b}"),
            _ => format!("{a}-{b}"),
        });
        i = j + 1;
    }
    parts.join(",")
}

/// A compact humantime duration without spaces, e.g. `1h30m`.
fn format_length(length: SignedDuration) -> String {
    let secs = length.as_secs();
    let units = [(secs / 86_400, "d"), (secs / 3600 % 24, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")];
    let mut text: String = units.iter().filter(|(n, _)| *n != 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    if length.subsec_nanos() != 0 {
        text.push_str(&format!("{}ns", length.subsec_nanos()));
    }
    text
}
