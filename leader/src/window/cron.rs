//! The cron form: expressions of the original operator's
//! `SCHEDULER_CRON_EXPRESSION` (the Rust `cron` crate's format), in UTC.

use std::collections::BTreeSet;

use jiff::civil::{Date, Time};
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp, ToSpan};

use super::{MIN_CRON_WINDOW, WindowError, check_length, days_between, weekday};

/// A parsed cron expression; each match opens a window of `length`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cron {
    /// The expression, fields separated by single spaces.
    pub(super) source: String,
    pub(super) length: SignedDuration,
    sec: BTreeSet<i16>,
    min: BTreeSet<i16>,
    hour: BTreeSet<i16>,
    dom: BTreeSet<i16>,
    month: BTreeSet<i16>,
    /// 1 = Sunday .. 7 = Saturday.
    dow: BTreeSet<i16>,
    year: BTreeSet<i16>,
}

#[rustfmt::skip]
const MONTHS: [&str; 12] = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
];

/// Parses `tokens` (the whitespace-separated fields of `spec`).
pub(super) fn parse(spec: &str, tokens: &[&str], length: SignedDuration) -> Result<Cron, WindowError> {
    let error = |reason: String| WindowError::Cron { value: spec.to_string(), reason };
    if length < MIN_CRON_WINDOW {
        return Err(error(format!("window length {length:#} is shorter than one minute")));
    }
    check_length(length).map_err(error)?;
    let expanded: Vec<&str> = match tokens {
        [short] => match short.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => vec!["0", "0", "0", "1", "1", "*"],
            "@monthly" => vec!["0", "0", "0", "1", "*", "*"],
            "@weekly" => vec!["0", "0", "0", "*", "*", "1"],
            "@daily" => vec!["0", "0", "0", "*", "*", "*"],
            "@hourly" => vec!["0", "0", "*", "*", "*", "*"],
            _ => return Err(error(format!("unknown shorthand `{short}`"))),
        },
        _ => tokens.to_vec(),
    };
    let hint = if expanded.len() == 5 {
        " (a 5-field crontab line lacks the leading seconds field: prepend `0 `)"
    } else {
        ""
    };
    let [sec, min, hour, dom, month, dow, rest @ ..] = expanded.as_slice() else {
        return Err(error(format!(
            "expected 6 or 7 fields `sec min hour day-of-month month day-of-week [year]`, got {}{hint}",
            expanded.len()
        )));
    };
    let year = match rest {
        [] => "*",
        [year] => year,
        _ => {
            return Err(error(format!("expected 6 or 7 fields, got {}", expanded.len())));
        }
    };
    let no_names = |_: &str| None;
    Ok(Cron {
        source: tokens.join(" "),
        length,
        sec: cron_field(sec, "seconds", 0, 59, no_names).map_err(error)?,
        min: cron_field(min, "minutes", 0, 59, no_names).map_err(error)?,
        hour: cron_field(hour, "hours", 0, 23, no_names).map_err(error)?,
        dom: cron_field(dom, "day-of-month", 1, 31, no_names).map_err(error)?,
        month: cron_field(month, "month", 1, 12, month_number).map_err(error)?,
        dow: cron_field(dow, "day-of-week (1 = Sunday)", 1, 7, |s| {
            weekday(s).map(|d| i16::from(d.to_sunday_one_offset()))
        })
        .map_err(error)?,
        year: cron_field(year, "year", 1970, 2100, no_names).map_err(error)?,
    })
}

fn month_number(name: &str) -> Option<i16> {
    let i = MONTHS.iter().position(|m| *m == name || m.get(..3) == Some(name))?;
    i16::try_from(i + 1).ok()
}

fn cron_field(
    text: &str,
    field: &str,
    lo: i16,
    hi: i16,
    names: impl Fn(&str) -> Option<i16>,
) -> Result<BTreeSet<i16>, String> {
    let value = |s: &str| -> Result<i16, String> {
        let lower = s.to_ascii_lowercase();
        let v = match lower.parse::<i16>() {
            Ok(v) => v,
            Err(_) => names(&lower).ok_or_else(|| format!("`{s}` is not a valid {field} value"))?,
        };
        if (lo..=hi).contains(&v) { Ok(v) } else { Err(format!("{field} value {v} is out of range {lo}-{hi}")) }
    };
    let mut set = BTreeSet::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => match step.parse::<i16>() {
                Ok(n) if n > 0 => (range, Some(n)),
                _ => {
                    return Err(format!("step `{step}` in {field} `{item}` is not a positive number"));
                }
            },
            None => (item, None),
        };
        let (a, b) = match range.split_once('-') {
            _ if range == "*" || range == "?" => (lo, hi),
            Some((a, b)) => (value(a)?, value(b)?),
            None if step.is_some() => (value(range)?, hi),
            None => (value(range)?, value(range)?),
        };
        if a > b {
            return Err(format!("{field} range `{range}` starts after it ends"));
        }
        set.extend((a..=b).step_by(usize::try_from(step.unwrap_or(1)).unwrap_or(1)));
    }
    Ok(set)
}

impl Cron {
    fn day_matches(&self, d: Date) -> bool {
        self.year.contains(&d.year())
            && self.month.contains(&i16::from(d.month()))
            && self.dom.contains(&i16::from(d.day()))
            && self.dow.contains(&i16::from(d.weekday().to_sunday_one_offset()))
    }

    /// The latest match at or before `t`, looking back no further than the window length.
    pub(super) fn match_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let now = Offset::UTC.to_datetime(t);
        let first = Offset::UTC.to_datetime(t.checked_sub(self.length).ok()?).date();
        let today = now.date();
        for d in today.series((-1).day()).take_while(|d| *d >= first) {
            if !self.day_matches(d) {
                continue;
            }
            let h_max = if d == today { i16::from(now.hour()) } else { 23 };
            for &h in self.hour.range(..=h_max).rev() {
                let at_now = d == today && h == i16::from(now.hour());
                let m_max = if at_now { i16::from(now.minute()) } else { 59 };
                for &m in self.min.range(..=m_max).rev() {
                    let at_now = at_now && m == i16::from(now.minute());
                    let s_max = if at_now { i16::from(now.second()) } else { 59 };
                    if let Some(&s) = self.sec.range(..=s_max).next_back() {
                        return utc(d, h, m, s);
                    }
                }
            }
        }
        None
    }

    /// The earliest match at or after `t`, looking no further than `limit`'s date.
    pub(super) fn match_at_or_after(&self, t: Timestamp, limit: Timestamp) -> Option<Timestamp> {
        let whole = Timestamp::from_second(t.as_second()).ok()?;
        let t = if whole < t { whole.checked_add(SignedDuration::from_secs(1)).ok()? } else { t };
        let now = Offset::UTC.to_datetime(t);
        let today = now.date();
        let last = Offset::UTC.to_datetime(limit).date();
        for d in days_between(today, last) {
            if !self.day_matches(d) {
                continue;
            }
            let h_min = if d == today { i16::from(now.hour()) } else { 0 };
            for &h in self.hour.range(h_min..) {
                let at_now = d == today && h == i16::from(now.hour());
                let m_min = if at_now { i16::from(now.minute()) } else { 0 };
                for &m in self.min.range(m_min..) {
                    let at_now = at_now && m == i16::from(now.minute());
                    let s_min = if at_now { i16::from(now.second()) } else { 0 };
                    if let Some(&s) = self.sec.range(s_min..).next() {
                        return utc(d, h, m, s);
                    }
                }
            }
        }
        None
    }
}

fn utc(d: Date, h: i16, m: i16, s: i16) -> Option<Timestamp> {
    let time = Time::new(i8::try_from(h).ok()?, i8::try_from(m).ok()?, i8::try_from(s).ok()?, 0).ok()?;
    Offset::UTC.to_timestamp(d.to_datetime(time)).ok()
}
