//! Blackouts: absolute date-time ranges during which no new grant starts,
//! whatever the windows say (the UpdatePolicy's `updateExclusions`). Pure.
//!
//! # Grammar: `<from> <to> [<zone>]`
//!
//! `<from>` and `<to>` are local dates (`2026-12-20`) or date-times
//! (`2026-12-20T18:00`, `T18:00:30` with seconds) in `<zone>`, an IANA
//! name (default `UTC`). A date-only `<from>` starts at 00:00 that day, a
//! date-only `<to>` ends at the end of that day, so `2026-12-24 2026-12-26
//! Europe/Berlin` blacks out the three days. A date-time `<to>` is
//! exclusive. `<to>` must be after `<from>`, and a blackout lasts at most
//! [`MAX_BLACKOUT`]. Daylight saving time is read as in the windows (a
//! time in a gap is the first instant after it, a time in a fold its first
//! occurrence).

use jiff::civil::{Date, DateTime};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp};

/// The longest one blackout may last.
pub const MAX_BLACKOUT: SignedDuration = SignedDuration::from_hours(366 * 24);

/// One parsed blackout: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blackout {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// Why a blackout was refused; names the whole value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "update exclusion `{value}`: {reason} (expected `<from> <to> [zone]`, e.g. `2026-12-20 2027-01-03 Europe/Berlin` or `2026-12-20T18:00 2026-12-21T06:00`)"
)]
pub struct BlackoutError {
    pub value: String,
    pub reason: String,
}

/// A local date or date-time; `end`: a date means the end of that day.
fn local(text: &str, end: bool) -> Result<DateTime, String> {
    // (jiff reads a date-time as a date too: look for the time first.)
    if !text.contains(['T', 't', ' '])
        && let Ok(d) = text.parse::<Date>()
    {
        let d = if end { d.tomorrow().map_err(|e| e.to_string())? } else { d };
        return Ok(d.to_datetime(jiff::civil::Time::midnight()));
    }
    text.parse::<DateTime>()
        .map_err(|_| format!("`{text}` is not a date (2026-12-20) or a date-time (2026-12-20T18:00)"))
}

impl std::str::FromStr for Blackout {
    type Err = BlackoutError;

    fn from_str(value: &str) -> Result<Blackout, BlackoutError> {
        let err = |reason: String| BlackoutError { value: value.to_owned(), reason };
        let tokens: Vec<&str> = value.split_whitespace().collect();
        let (from, to, zone) = match tokens.as_slice() {
            [from, to] => (*from, *to, None),
            [from, to, zone] => (*from, *to, Some(*zone)),
            _ => return Err(err("needs two or three parts".to_owned())),
        };
        let tz = match zone {
            None => TimeZone::UTC,
            Some(z) => TimeZoneDatabase::bundled().get(z).map_err(|_| err(format!("unknown time zone `{z}`")))?,
        };
        let at = |dt: DateTime| super::resolve(&tz, dt).ok_or_else(|| err(format!("{dt} does not exist in {tz:?}")));
        let from = at(local(from, false).map_err(&err)?)?;
        let to = at(local(to, true).map_err(&err)?)?;
        if to <= from {
            return Err(err("it ends before it starts".to_owned()));
        }
        if to.duration_since(from) > MAX_BLACKOUT {
            return Err(err("it lasts more than 366 days".to_owned()));
        }
        Ok(Blackout { from, to })
    }
}

/// The end of the blackout containing `t`, extended through every blackout
/// that overlaps or touches it; `None` if `t` is in none.
pub fn blacked_until(blackouts: &[Blackout], t: Timestamp) -> Option<Timestamp> {
    let mut end = blackouts.iter().filter(|b| b.from <= t && t < b.to).map(|b| b.to).max()?;
    while let Some(later) = blackouts.iter().filter(|b| b.from <= end && end < b.to).map(|b| b.to).max() {
        end = later;
    }
    Some(end)
}

/// The start of the first blackout after `t`.
pub fn next_blackout(blackouts: &[Blackout], t: Timestamp) -> Option<Timestamp> {
    blackouts.iter().filter(|b| b.from > t).map(|b| b.from).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn dates_cover_whole_days_in_their_zone_and_date_times_are_exact() {
        let b: Blackout = "2026-12-24 2026-12-26 Europe/Berlin".parse().unwrap();
        assert_eq!((b.from, b.to), (t("2026-12-23T23:00:00Z"), t("2026-12-26T23:00:00Z")));
        let b: Blackout = "2026-12-20T18:00 2026-12-21T06:30".parse().unwrap();
        assert_eq!((b.from, b.to), (t("2026-12-20T18:00:00Z"), t("2026-12-21T06:30:00Z")));
    }

    #[test]
    fn bad_blackouts_are_refused_naming_the_value() {
        for bad in [
            "2026-12-24",
            "2026-12-26 2026-12-24",
            "2026-12-24 2026-12-26 Mars/Olympus",
            "yesterday today",
            "2026-01-01 2028-01-01",
            "2026-12-20T18:00 2026-12-20T18:00",
        ] {
            let e = bad.parse::<Blackout>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn touching_blackouts_chain_and_the_next_one_is_found() {
        let bs: Vec<Blackout> = ["2026-12-24 2026-12-24", "2026-12-25 2026-12-26", "2027-01-01 2027-01-01"]
            .map(|s| s.parse().unwrap())
            .to_vec();
        assert_eq!(blacked_until(&bs, t("2026-12-24T12:00:00Z")), Some(t("2026-12-27T00:00:00Z")));
        assert_eq!(blacked_until(&bs, t("2026-12-27T00:00:00Z")), None, "the end is exclusive");
        assert_eq!(next_blackout(&bs, t("2026-12-27T00:00:00Z")), Some(t("2027-01-01T00:00:00Z")));
        assert_eq!(next_blackout(&bs, t("2027-01-01T00:00:00Z")), None);
    }
}
