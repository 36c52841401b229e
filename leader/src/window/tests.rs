//! Window parsing and arithmetic. 2026-01-05 is a Monday; Europe/Berlin
//! springs forward on 2026-03-29 and falls back on 2026-10-25.

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn windows(specs: &[&str]) -> Windows {
    Windows::parse_all(specs).unwrap()
}

fn one(spec: &str) -> Windows {
    windows(&[spec])
}

fn with_length(spec: &str, length: SignedDuration) -> Windows {
    Windows::parse_all_with_cron_length(&[spec], length).unwrap()
}

fn error(spec: &str) -> WindowError {
    spec.parse::<Window>().unwrap_err()
}

fn canonical(spec: &str) -> String {
    spec.parse::<Window>().unwrap().to_string()
}

#[test]
fn documented_examples_parse_and_display_unchanged() {
    for spec in ["Mon-Fri 02:00-05:00 Europe/Berlin", "Sat,Sun 22:00+6h UTC", "0 0 23 * * Mon-Fri *"] {
        assert_eq!(canonical(spec), spec);
    }
}

#[test]
fn display_is_canonical_and_round_trips() {
    let cases = [
        ("monday,WED 2:00-03:00", "Mon,Wed 02:00-03:00 UTC"),
        ("Fri,Sat,Sun,Mon 23:30+1h30m pacific/auckland", "Fri-Mon 23:30+1h30m Pacific/Auckland"),
        ("* 00:00-24:00", "daily 00:00-00:00 UTC"),
        ("tue-thu,sat 09:00+24h america/los_angeles", "Tue-Thu,Sat 09:00+1d America/Los_Angeles"),
        ("Sun,Mon,Wed 01:00+90m", "Sun,Mon,Wed 01:00+1h30m UTC"),
        ("  0  */15   *  * *  Sun ", "0 */15 * * * Sun"),
    ];
    for (spec, expected) in cases {
        assert_eq!(canonical(spec), expected);
        let reparsed: Window = expected.parse().unwrap();
        assert_eq!(reparsed, spec.parse::<Window>().unwrap(), "{spec}");
    }
    assert_eq!(windows(&["Mon 02:00-03:00", "@daily"]).to_string(), "Mon 02:00-03:00 UTC; @daily");
    assert_eq!(Windows::always().to_string(), "always");
}

#[test]
fn weekday_names_are_case_insensitive_and_accept_full_names() {
    assert_eq!(
        "MONDAY-friday 02:00-05:00".parse::<Window>().unwrap(),
        "Mon-Fri 02:00-05:00 UTC".parse::<Window>().unwrap()
    );
    assert_eq!(canonical("Tues,THURS,saturday 02:00-05:00"), "Tue,Thu,Sat 02:00-05:00 UTC");
}

#[test]
fn wrapping_weekday_range_covers_the_weekend() {
    let w = one("Fri-Mon 12:00-13:00");
    for day in ["2026-01-09", "2026-01-10", "2026-01-11", "2026-01-12"] {
        assert!(w.is_open(at(&format!("{day}T12:30Z"))), "{day}");
    }
    for day in ["2026-01-07", "2026-01-08", "2026-01-13"] {
        assert!(!w.is_open(at(&format!("{day}T12:30Z"))), "{day}");
    }
}

#[test]
fn zone_defaults_to_utc() {
    assert_eq!(one("Mon 02:00-03:00"), one("Mon 02:00-03:00 UTC"));
    assert!(one("Mon 02:00-03:00").is_open(at("2026-01-05T02:30Z")));
}

#[test]
fn window_start_is_inclusive_and_end_exclusive() {
    // Berlin is UTC+1 in January: 02:00-05:00 local = 01:00-04:00 UTC.
    let w = one("Mon-Fri 02:00-05:00 Europe/Berlin");
    assert!(!w.is_open(at("2026-01-05T00:59:59Z")));
    assert!(w.is_open(at("2026-01-05T01:00Z")));
    assert!(w.is_open(at("2026-01-05T03:59:59.999Z")));
    assert!(!w.is_open(at("2026-01-05T04:00Z")));
    assert!(!w.is_open(at("2026-01-10T01:30Z")), "Saturday");
}

#[test]
fn window_crossing_midnight_belongs_to_the_previous_day() {
    let w = one("Fri 22:00-02:00");
    assert!(w.is_open(at("2026-01-09T23:00Z")));
    assert!(w.is_open(at("2026-01-10T01:00Z")), "Saturday early belongs to Friday");
    assert_eq!(w.current_end(at("2026-01-10T01:00Z")), Some(at("2026-01-10T02:00Z")));
    assert!(!w.is_open(at("2026-01-09T01:00Z")), "Friday early belongs to Thursday");
    assert!(!w.is_open(at("2026-01-10T22:30Z")), "Saturday evening");
}

#[test]
fn window_crossing_the_week_boundary_opens_on_monday() {
    let w = one("Sun 23:00+2h");
    assert!(w.is_open(at("2026-01-12T00:30Z")));
    assert_eq!(w.current_end(at("2026-01-12T00:30Z")), Some(at("2026-01-12T01:00Z")));
    assert_eq!(w.next_start(at("2026-01-12T01:00Z")), Some(at("2026-01-18T23:00Z")));
    assert_eq!(w.next_start(at("2026-01-10T00:00Z")), Some(at("2026-01-11T23:00Z")));
}

#[test]
fn duration_window_lasts_the_absolute_duration() {
    let w = one("Sat,Sun 22:00+6h UTC");
    assert!(w.is_open(at("2026-01-11T03:59Z")));
    assert!(!w.is_open(at("2026-01-11T04:00Z")));
    assert!(w.is_open(at("2026-01-12T03:00Z")), "Sunday's window ends Monday 04:00");
    assert!(!w.is_open(at("2026-01-13T03:00Z")));
}

#[test]
fn spring_forward_gap_moves_the_start_to_the_end_of_the_gap() {
    // 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
    let w = one("Sun 02:30-03:30 Europe/Berlin");
    assert_eq!(w.next_start(at("2026-03-28T12:00Z")), Some(at("2026-03-29T01:00Z")));
    assert_eq!(w.current_end(at("2026-03-29T01:00Z")), Some(at("2026-03-29T01:30Z")));
    assert!(!w.is_open(at("2026-03-29T00:45Z")));
    assert_eq!(w.next_start(at("2026-03-22T00:00Z")), Some(at("2026-03-22T01:30Z")), "CET before");
    assert_eq!(w.next_start(at("2026-03-30T00:00Z")), Some(at("2026-04-05T00:30Z")), "CEST after");
}

#[test]
fn spring_forward_gap_keeps_an_absolute_duration() {
    let w = one("Sun 02:30+1h Europe/Berlin");
    assert_eq!(w.next_start(at("2026-03-28T12:00Z")), Some(at("2026-03-29T01:00Z")));
    assert_eq!(w.current_end(at("2026-03-29T01:00Z")), Some(at("2026-03-29T02:00Z")));
}

#[test]
fn window_wholly_inside_the_gap_does_not_open_that_day() {
    let w = one("Sun 02:10-02:50 Europe/Berlin");
    assert_eq!(w.next_start(at("2026-03-28T12:00Z")), Some(at("2026-04-05T00:10Z")));
}

#[test]
fn fall_back_fold_starts_at_the_first_occurrence_and_ends_on_the_wall_clock() {
    // 2026-10-25 03:00 CEST (01:00 UTC) goes back to 02:00 CET: 02:00-03:00 occurs twice.
    let w = one("Sun 02:00-03:00 Europe/Berlin");
    assert_eq!(w.next_start(at("2026-10-24T12:00Z")), Some(at("2026-10-25T00:00Z")));
    assert_eq!(w.current_end(at("2026-10-25T00:00Z")), Some(at("2026-10-25T02:00Z")));
    assert!(w.is_open(at("2026-10-25T01:30Z")), "the second 02:30");
}

#[test]
fn fall_back_fold_with_a_duration_lasts_the_absolute_duration() {
    let w = one("Sun 02:30+1h Europe/Berlin");
    assert_eq!(w.next_start(at("2026-10-24T12:00Z")), Some(at("2026-10-25T00:30Z")));
    assert_eq!(w.current_end(at("2026-10-25T00:30Z")), Some(at("2026-10-25T01:30Z")));
    assert!(!w.is_open(at("2026-10-25T01:45Z")), "the second 02:45");
}

#[test]
fn pacific_auckland_window_opens_on_the_previous_utc_day() {
    let w = one("Mon 09:00-10:00 Pacific/Auckland");
    // January: NZDT, UTC+13.
    assert_eq!(w.next_start(at("2026-01-10T00:00Z")), Some(at("2026-01-11T20:00Z")));
    // July: NZST, UTC+12.
    assert_eq!(w.next_start(at("2026-07-04T00:00Z")), Some(at("2026-07-05T21:00Z")));
}

#[test]
fn los_angeles_window_follows_its_dst() {
    let w = one("Mon-Fri 22:00-23:00 America/Los_Angeles");
    // Friday 22:00 PST (UTC-8) is Saturday 06:00 UTC.
    assert!(w.is_open(at("2026-01-10T06:30Z")));
    assert!(!w.is_open(at("2026-01-10T05:30Z")));
    // Monday 2026-07-06 22:00 PDT (UTC-7) is Tuesday 05:00 UTC.
    assert!(w.is_open(at("2026-07-07T05:30Z")));
    assert!(!w.is_open(at("2026-07-07T06:30Z")));
}

#[test]
fn next_start_from_outside_is_the_next_opening() {
    let w = one("Mon-Fri 02:00-05:00 Europe/Berlin");
    let saturday = at("2026-01-10T12:00Z");
    assert!(!w.is_open(saturday));
    assert_eq!(w.current_end(saturday), None);
    assert_eq!(w.next_start(saturday), Some(at("2026-01-12T01:00Z")));
}

#[test]
fn next_start_from_inside_is_the_opening_after_the_current_one() {
    let w = one("Mon-Fri 02:00-05:00 Europe/Berlin");
    let inside = at("2026-01-12T02:00Z");
    assert!(w.is_open(inside));
    assert_eq!(w.current_end(inside), Some(at("2026-01-12T04:00Z")));
    assert_eq!(w.next_start(inside), Some(at("2026-01-13T01:00Z")));
}

#[test]
fn overlapping_and_touching_windows_merge_into_one_opening() {
    let w = windows(&["Mon 02:00-04:00", "Mon 03:00-06:00", "Mon 06:00+1h"]);
    let inside = at("2026-01-12T02:30Z");
    assert_eq!(w.current_end(inside), Some(at("2026-01-12T07:00Z")));
    assert_eq!(w.next_start(inside), Some(at("2026-01-19T02:00Z")));
    assert!(w.is_open(at("2026-01-12T06:30Z")));
}

#[test]
fn next_start_of_several_windows_is_the_earliest() {
    let w = windows(&["Sat 10:00-11:00", "Tue 03:00-04:00 Europe/Berlin", "0 0 12 * * Wed *"]);
    assert_eq!(w.next_start(at("2026-01-12T12:00Z")), Some(at("2026-01-13T02:00Z")));
    assert_eq!(w.next_start(at("2026-01-13T12:00Z")), Some(at("2026-01-14T12:00Z")));
    assert_eq!(w.next_start(at("2026-01-14T13:00Z")), Some(at("2026-01-17T10:00Z")));
}

#[test]
fn no_windows_means_always_open() {
    let now = at("2026-01-12T12:00Z");
    for w in [Windows::always(), Windows::parse_all::<&str>(&[]).unwrap()] {
        assert!(w.is_empty());
        assert!(w.is_open(now));
        assert_eq!(w.current_end(now), None);
        assert_eq!(w.next_start(now), None);
    }
}

#[test]
fn windows_covering_every_instant_have_no_end_or_next_start() {
    for spec in ["daily 00:00-00:00", "* * * * * * *"] {
        let w = one(spec);
        let now = at("2026-01-12T12:34:56Z");
        assert!(w.is_open(now), "{spec}");
        assert_eq!(w.current_end(now), None, "{spec}");
        assert_eq!(w.next_start(now), None, "{spec}");
    }
}

#[test]
fn cron_window_opens_for_one_hour_at_each_match() {
    let w = one("0 0 23 * * Mon-Fri *");
    assert!(w.is_open(at("2026-01-09T23:30Z")));
    assert_eq!(w.current_end(at("2026-01-09T23:30Z")), Some(at("2026-01-10T00:00Z")));
    assert!(!w.is_open(at("2026-01-10T23:30Z")), "Saturday");
    assert_eq!(w.next_start(at("2026-01-10T12:00Z")), Some(at("2026-01-12T23:00Z")));
    assert_eq!(w.next_start(at("2026-01-12T22:59:59.5Z")), Some(at("2026-01-12T23:00Z")));
}

#[test]
fn cron_steps_open_every_quarter_hour() {
    let w = with_length("0 */15 * * * *", SignedDuration::from_mins(5));
    assert!(w.is_open(at("2026-01-12T10:17Z")));
    assert!(!w.is_open(at("2026-01-12T10:21Z")));
    assert_eq!(w.next_start(at("2026-01-12T10:21Z")), Some(at("2026-01-12T10:30Z")));
    assert_eq!(w.next_start(at("2026-01-12T23:50Z")), Some(at("2026-01-13T00:00Z")));
    let ranged = with_length("0 0-30/10 9 * * *", SignedDuration::from_mins(1));
    assert_eq!(ranged.next_start(at("2026-01-12T09:05Z")), Some(at("2026-01-12T09:10Z")));
    assert_eq!(ranged.next_start(at("2026-01-12T09:31Z")), Some(at("2026-01-13T09:00Z")));
}

#[test]
fn cron_day_of_week_numbers_count_from_sunday() {
    let monday = at("2026-01-05T00:00Z");
    assert_eq!(one("0 0 12 * * 1 *").next_start(monday), Some(at("2026-01-11T12:00Z")));
    assert_eq!(one("0 0 12 * * sun *").next_start(monday), Some(at("2026-01-11T12:00Z")));
    assert_eq!(one("0 0 12 * * 7 *").next_start(monday), Some(at("2026-01-10T12:00Z")));
    assert_eq!(one("0 0 12 * * Tuesday *").next_start(monday), Some(at("2026-01-06T12:00Z")));
}

#[test]
fn cron_day_of_month_and_day_of_week_must_both_match() {
    let friday_13th = one("0 0 0 13 * Fri *");
    assert_eq!(friday_13th.next_start(at("2026-01-01T00:00Z")), Some(at("2026-02-13T00:00Z")));
}

#[test]
fn cron_window_length_is_a_parser_parameter() {
    let spec = "0 0 23 * * * *";
    assert!(!one(spec).is_open(at("2026-01-13T01:30Z")));
    assert!(with_length(spec, SignedDuration::from_hours(3)).is_open(at("2026-01-13T01:30Z")));
    for bad in [SignedDuration::from_secs(59), SignedDuration::from_hours(8 * 24)] {
        let err = Windows::parse_all_with_cron_length(&[spec], bad).unwrap_err();
        assert!(matches!(err, WindowError::Cron { .. }), "{err}");
    }
}

#[test]
fn a_cron_window_may_say_how_long_it_lasts() {
    let w = one("0 0 23 * * Mon-Fri * +6h");
    // Tuesday 2026-01-13, 23:00 UTC + 6h: open until 05:00 on Wednesday.
    assert!(w.is_open(at("2026-01-14T04:30Z")));
    assert!(!w.is_open(at("2026-01-14T05:00Z")));
    assert_eq!(w.to_string(), "0 0 23 * * Mon-Fri * +6h");
    assert_eq!(one("0 0 23 * * Mon-Fri * +1h").to_string(), "0 0 23 * * Mon-Fri *");
    assert!(one("@daily +90m").is_open(at("2026-01-13T01:29Z")));
    for bad in ["0 0 23 * * * * +30s", "0 0 23 * * * * +8d", "0 0 23 * * * * +soon", "0 0 23 * * * * +"] {
        let err = Windows::parse_all(&[bad]).unwrap_err();
        assert!(matches!(err, WindowError::Cron { .. }), "{bad}: {err}");
    }
}

#[test]
fn cron_accepts_month_names_years_and_shorthands() {
    let w = one("0 30 4 1 Jan-Mar * 2027");
    assert_eq!(w.next_start(at("2026-01-01T12:00Z")), Some(at("2027-01-01T04:30Z")));
    assert_eq!(one("@daily").next_start(at("2026-01-05T12:00Z")), Some(at("2026-01-06T00:00Z")));
    assert_eq!(one("@weekly").next_start(at("2026-01-05T12:00Z")), Some(at("2026-01-11T00:00Z")));
    assert!(one("? 5/20 * ? * ?").is_open(at("2026-01-05T12:25:10Z")));
}

#[test]
fn leap_day_cron_is_found_within_a_year_or_not_at_all() {
    let w = one("0 0 0 29 Feb *");
    assert_eq!(w.next_start(at("2027-03-01T00:00Z")), Some(at("2028-02-29T00:00Z")));
    assert_eq!(w.next_start(at("2026-03-01T00:00Z")), None);
}

#[test]
fn rejects_an_hour_out_of_range() {
    let err = error("Mon-Fri 25:00-05:00");
    assert!(matches!(err, WindowError::Time { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("`Mon-Fri 25:00-05:00`") && text.contains("hour 25"), "{text}");
}

#[test]
fn rejects_an_unknown_weekday() {
    let err = error("Funday 02:00-03:00");
    assert!(matches!(&err, WindowError::Days { days, .. } if days == "Funday"), "{err}");
    assert!(err.to_string().contains("Funday 02:00-03:00"), "{err}");
}

#[test]
fn rejects_an_unknown_time_zone() {
    let err = error("Mon 02:00-03:00 Mars/Olympus");
    assert!(matches!(&err, WindowError::Zone { zone, .. } if zone == "Mars/Olympus"), "{err}");
}

#[test]
fn rejects_zero_and_too_long_durations() {
    for spec in ["Mon 02:00+0s", "Mon 02:00+8d", "Mon 02:00+soon"] {
        let err = error(spec);
        assert!(matches!(&err, WindowError::Duration { value, .. } if value == spec), "{err}");
    }
    assert_eq!(canonical("Mon 02:00+1w"), "Mon 02:00+7d UTC");
}

#[test]
fn rejects_empty_and_blank_specs() {
    assert_eq!(error(""), WindowError::Empty);
    assert_eq!(error("  \t "), WindowError::Empty);
}

#[test]
fn rejects_a_five_field_crontab_with_a_hint() {
    let err = error("0 23 * * Mon-Fri");
    assert!(matches!(err, WindowError::Cron { .. }), "{err}");
    assert!(err.to_string().contains("prepend `0 `"), "{err}");
}

#[test]
fn rejects_bad_cron_fields() {
    let cases = [
        ("0 60 * * * *", "minutes value 60 is out of range 0-59"),
        ("0 0 0 * * 0 *", "day-of-week (1 = Sunday) value 0 is out of range 1-7"),
        ("0 0 0 * * Funday *", "`Funday` is not a valid day-of-week"),
        ("0 */0 * * * *", "not a positive number"),
        ("0 0 5-1 * * *", "starts after it ends"),
        ("0 0 0 * * * * *", "got 8"),
        ("0 0 0 * Smarch *", "`Smarch` is not a valid month"),
        ("@fortnightly", "unknown shorthand"),
    ];
    for (spec, reason) in cases {
        let err = error(spec);
        assert!(matches!(err, WindowError::Cron { .. }), "{spec}: {err}");
        assert!(err.to_string().contains(reason), "{spec}: {err}");
    }
}

#[test]
fn rejects_malformed_shapes_and_times() {
    assert!(matches!(error("Mon"), WindowError::Shape { .. }));
    assert!(matches!(error("Mon 02:00-03:00 UTC extra"), WindowError::Shape { .. }));
    for spec in ["Mon 02:00", "Mon 2:0-03:00", "Mon 02:00-03:60", "Mon 24:00-03:00", "Mon x-y"] {
        assert!(matches!(error(spec), WindowError::Time { .. }), "{spec}");
    }
    assert!(matches!(error("Mon,,Tue 02:00-03:00"), WindowError::Days { .. }));
}

#[test]
fn parse_all_reports_the_first_bad_spec() {
    let err = Windows::parse_all(&["Mon 02:00-03:00", "Tue 99:00-01:00", "nope"]).unwrap_err();
    assert!(matches!(&err, WindowError::Time { value, .. } if value == "Tue 99:00-01:00"), "{err}");
}

#[test]
fn blackouts_are_taken_out_of_the_windows() {
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    let bo = |s: &str| s.parse::<super::Blackout>().unwrap();
    // Nightly 02:00-05:00 UTC, with the nights of 24 and 25 December blacked out.
    let w = Windows::parse_all(&["daily 02:00-05:00"]).unwrap().with_blackouts(vec![bo("2026-12-24 2026-12-25")]);
    assert!(w.is_open(t("2026-12-23T03:00:00Z")));
    assert!(!w.is_open(t("2026-12-24T03:00:00Z")));
    assert_eq!(w.blacked_out_until(t("2026-12-24T03:00:00Z")), Some(t("2026-12-26T00:00:00Z")));
    assert_eq!(w.next_start(t("2026-12-24T03:00:00Z")), Some(t("2026-12-26T02:00:00Z")), "skips both nights");
    assert_eq!(w.next_start(t("2026-12-23T03:00:00Z")), Some(t("2026-12-26T02:00:00Z")));
    // A blackout starting inside an open window closes it early.
    let w = Windows::parse_all(&["daily 02:00-05:00"])
        .unwrap()
        .with_blackouts(vec![bo("2026-12-23T04:00 2026-12-23T04:30")]);
    assert_eq!(w.current_end(t("2026-12-23T03:00:00Z")), Some(t("2026-12-23T04:00:00Z")));
    assert_eq!(w.next_start(t("2026-12-23T03:00:00Z")), Some(t("2026-12-23T04:30:00Z")), "the rest of the window");
    // Without windows: open except in the blackout.
    let w = Windows::always().with_blackouts(vec![bo("2026-12-24 2026-12-24")]);
    assert!(w.is_open(t("2026-12-23T12:00:00Z")));
    assert_eq!(w.current_end(t("2026-12-23T12:00:00Z")), Some(t("2026-12-24T00:00:00Z")));
    assert!(!w.is_open(t("2026-12-24T12:00:00Z")));
    assert_eq!(w.next_start(t("2026-12-24T12:00:00Z")), Some(t("2026-12-25T00:00:00Z")));
    assert_eq!(w.to_string(), "always");
}
