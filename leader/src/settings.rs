//! The settings in force: the UpdatePolicy spec laid over the leader's flags.
//! Pure. A value in the spec the leader cannot use stops grants (phase
//! `InvalidSpec`, the message names the field and value) rather than falling
//! back to something wider than the person meant.

use std::time::Duration;

use model::UpdatePolicySpec;
use model::parse::Budget;
use model::policy::MAX_CONCURRENT_UPDATES_LIMIT;
use model::walk::WalkSpec;

use crate::decide::{CanarySettings, GateSettings, GateTarget, Settings, WindowState, ZoneLimit};
use crate::window::Windows;

/// Whether `windows` are open at `now`, and their next edges.
pub fn window_state(windows: &Windows, now: jiff::Timestamp) -> WindowState {
    WindowState {
        open: windows.is_open(now),
        next_start: windows.next_start(now),
        current_end: windows.current_end(now),
        blackout_until: windows.blacked_out_until(now),
        budget: windows.budget(now).0,
        budget_change_at: windows.budget(now).1,
    }
}

/// The leader's flags that the UpdatePolicy can override.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub budget: Budget,
    pub failure_backoff: Duration,
    pub failure_backoff_max: Duration,
    pub max_consecutive_failures: u32,
    pub windows: Vec<String>,
    pub slot_lease_duration: Duration,
    pub max_slot_hold: Duration,
    /// The label selector of managed nodes (`--node-selector`).
    pub node_selector: String,
}

impl Defaults {
    /// As published in the UpdatePolicy status.
    pub fn published(&self) -> model::policy::LeaderDefaults {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        model::policy::LeaderDefaults {
            max_concurrent_updates: self.budget.to_string(),
            failure_backoff: d(self.failure_backoff),
            failure_backoff_max: d(self.failure_backoff_max),
            max_consecutive_failures: self.max_consecutive_failures,
            update_windows: self.windows.clone(),
            slot_lease_duration: d(self.slot_lease_duration),
            max_slot_hold: d(self.max_slot_hold),
            node_selector: self.node_selector.clone(),
        }
    }

    /// Read back from the UpdatePolicy status (what a tool deciding as the
    /// leader does starts from).
    pub fn from_published(p: &model::policy::LeaderDefaults) -> Result<Defaults, String> {
        let d = |field: &str, v: &str| model::parse::duration(v).map_err(|e| format!("leaderDefaults.{field}: {e}"));
        Ok(Defaults {
            budget: Budget::parse(&p.max_concurrent_updates)
                .map_err(|e| format!("leaderDefaults.maxConcurrentUpdates: {e}"))?,
            failure_backoff: d("failureBackoff", &p.failure_backoff)?,
            failure_backoff_max: d("failureBackoffMax", &p.failure_backoff_max)?,
            max_consecutive_failures: p.max_consecutive_failures,
            windows: p.update_windows.clone(),
            slot_lease_duration: d("slotLeaseDuration", &p.slot_lease_duration)?,
            max_slot_hold: d("maxSlotHold", &p.max_slot_hold)?,
            node_selector: p.node_selector.clone(),
        })
    }
}

/// The settings and windows for `spec` (no UpdatePolicy: the defaults).
pub fn resolve(defaults: &Defaults, spec: Option<&UpdatePolicySpec>) -> (Settings, Windows) {
    let empty = UpdatePolicySpec::default();
    let spec = spec.unwrap_or(&empty);
    // Values the spec held that could not be read at all (model::policy).
    let mut problems = spec.unreadable.clone();
    let budget = match &spec.max_concurrent_updates {
        None => defaults.budget,
        Some(v) => match Budget::from_int_or_string(v) {
            Ok(Budget::Count(n)) if n > MAX_CONCURRENT_UPDATES_LIMIT.unsigned_abs() => {
                problems.push(format!("spec.maxConcurrentUpdates: {n} is above {MAX_CONCURRENT_UPDATES_LIMIT}"));
                defaults.budget
            }
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("spec.maxConcurrentUpdates: {e}"));
                defaults.budget
            }
        },
    };
    let mut dur = |field: &str, v: &Option<String>, default: Duration| match v {
        None => default,
        Some(s) => model::parse::duration(s).unwrap_or_else(|e| {
            problems.push(format!("spec.{field}: {e}"));
            default
        }),
    };
    let failure_backoff = dur("failureBackoff", &spec.failure_backoff, defaults.failure_backoff);
    let failure_backoff_max = dur("failureBackoffMax", &spec.failure_backoff_max, defaults.failure_backoff_max);
    let max_slot_hold = dur("maxSlotHold", &spec.max_slot_hold, defaults.max_slot_hold);
    let min_release_age =
        spec.min_release_age.as_ref().map(|_| dur("minReleaseAge", &spec.min_release_age, Duration::ZERO));
    if failure_backoff > failure_backoff_max {
        problems.push("spec.failureBackoff must not exceed spec.failureBackoffMax".to_owned());
    }
    if max_slot_hold <= defaults.slot_lease_duration {
        problems
            .push(format!("spec.maxSlotHold must be longer than the slot lease ({:?})", defaults.slot_lease_duration));
    }
    let walk = walk_settings(spec, max_slot_hold, &mut problems);
    let specs = if spec.update_windows.is_empty() { &defaults.windows } else { &spec.update_windows };
    let windows = Windows::parse_all(specs).unwrap_or_else(|e| {
        problems.push(format!("spec.updateWindows: {e}"));
        Windows::always()
    });
    let blackouts = spec
        .update_exclusions
        .iter()
        .map(|s| s.parse::<crate::window::Blackout>())
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| {
            problems.push(format!("spec.updateExclusions: {e}"));
            Vec::new()
        });
    let mut budgets = Vec::new();
    for (i, wb) in spec.window_budgets.iter().enumerate() {
        let window = wb.window.parse::<crate::window::Window>();
        let budget = Budget::from_int_or_string(&wb.max_concurrent_updates);
        match (window, budget) {
            (Ok(_), Ok(Budget::Count(n))) if n > MAX_CONCURRENT_UPDATES_LIMIT.unsigned_abs() => problems.push(format!(
                "spec.windowBudgets[{i}].maxConcurrentUpdates: {n} is above {MAX_CONCURRENT_UPDATES_LIMIT}"
            )),
            (Ok(w), Ok(b)) => budgets.push((w, b)),
            (Err(e), _) => problems.push(format!("spec.windowBudgets[{i}].window: {e}")),
            (_, Err(e)) => problems.push(format!("spec.windowBudgets[{i}].maxConcurrentUpdates: {e}")),
        }
    }
    let windows = windows.with_blackouts(blackouts).with_budgets(budgets);
    let alert_gate = spec.alert_gate.as_ref().and_then(|g| alert_gate(g, &mut problems));
    let zones = zone_limit(spec, &mut problems);
    let canary = spec.canary.as_ref().map(|c| canary(c, &mut problems));
    let settings = Settings {
        budget,
        paused: spec.paused,
        failure_backoff,
        failure_backoff_max,
        max_consecutive_failures: spec.max_consecutive_failures.unwrap_or(defaults.max_consecutive_failures),
        update_cordoned_nodes: spec.update_cordoned_nodes,
        slot_lease_duration: defaults.slot_lease_duration,
        max_slot_hold,
        resume_request: spec.resume_request.clone(),
        walk,
        min_release_age: min_release_age.filter(|d| !d.is_zero()),
        invalid: (!problems.is_empty())
            .then(|| format!("the UpdatePolicy is invalid, no grants until it is fixed: {}", problems.join("; "))),
        alert_gate,
        zones,
        canary,
        published: Some(defaults.published()),
    };
    (settings, windows)
}

/// The per-zone limit (`topologyKey`, `maxUnavailablePerZone`,
/// `oneZoneAtATime`, `zoneOrder`), checked; `None` when the policy sets
/// neither a limit nor one zone at a time.
fn zone_limit(spec: &UpdatePolicySpec, problems: &mut Vec<String>) -> Option<ZoneLimit> {
    let topology_key = spec.topology_key.clone().unwrap_or_else(|| model::names::ZONE_LABEL.to_owned());
    if let Err(e) = model::parse::label_key(&topology_key) {
        problems.push(format!("spec.topologyKey: {e}"));
    }
    let per_zone = match &spec.max_unavailable_per_zone {
        None => None,
        Some(v) => match Budget::from_int_or_string(v) {
            Ok(Budget::Count(n)) if n > MAX_CONCURRENT_UPDATES_LIMIT.unsigned_abs() => {
                problems.push(format!("spec.maxUnavailablePerZone: {n} is above {MAX_CONCURRENT_UPDATES_LIMIT}"));
                None
            }
            Ok(b) => Some(b),
            Err(e) => {
                problems.push(format!("spec.maxUnavailablePerZone: {e}"));
                None
            }
        },
    };
    for (i, z) in spec.zone_order.iter().enumerate() {
        if let Err(e) = model::parse::label_value(z) {
            problems.push(format!("spec.zoneOrder[{i}]: {e}"));
        } else if spec.zone_order[..i].contains(z) {
            problems.push(format!("spec.zoneOrder[{i}]: {z:?} is listed twice"));
        }
    }
    (per_zone.is_some() || spec.one_zone_at_a_time).then(|| ZoneLimit {
        topology_key,
        per_zone,
        one_zone_at_a_time: spec.one_zone_at_a_time,
        zone_order: spec.zone_order.clone(),
    })
}

/// The canary (`spec.canary`), checked: `nodes` a count or percentage
/// (default 1), `soak` a duration (default none).
fn canary(spec: &model::policy::CanarySpec, problems: &mut Vec<String>) -> CanarySettings {
    let nodes = match &spec.nodes {
        None => Budget::Count(1),
        Some(v) => match Budget::from_int_or_string(v) {
            Ok(Budget::Count(n)) if n > MAX_CONCURRENT_UPDATES_LIMIT.unsigned_abs() => {
                problems.push(format!("spec.canary.nodes: {n} is above {MAX_CONCURRENT_UPDATES_LIMIT}"));
                Budget::Count(1)
            }
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("spec.canary.nodes: {e}"));
                Budget::Count(1)
            }
        },
    };
    let soak = match spec.soak.as_deref().map(model::parse::duration) {
        None => Duration::ZERO,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            problems.push(format!("spec.canary.soak: {e}"));
            Duration::ZERO
        }
    };
    CanarySettings { nodes, soak, skip_soak: spec.skip_soak.clone().filter(|v| !v.is_empty()) }
}

/// The policy's walk settings (`health`, `drain`), checked: each duration
/// and selector must read, and the waits they set must leave the hold cap
/// room for the host commands and the reboot (at least half of it). `None`
/// when the policy sets none.
fn walk_settings(spec: &UpdatePolicySpec, max_slot_hold: Duration, problems: &mut Vec<String>) -> Option<WalkSpec> {
    let mut waits = Duration::ZERO;
    let mut dur = |field: &str, v: &Option<String>, problems: &mut Vec<String>| {
        if let Some(s) = v {
            match model::parse::duration(s) {
                Ok(d) => waits += d,
                Err(e) => problems.push(format!("spec.{field}: {e}")),
            }
        }
    };
    let selector = |field: &str, v: &Option<String>, problems: &mut Vec<String>| {
        if let Some(Err(e)) = v.as_deref().map(model::selector::parse) {
            problems.push(format!("spec.{field}: {e}"));
        }
    };
    if let Some(h) = &spec.health {
        dur("health.timeout", &h.timeout, problems);
        selector("health.ignorePodSelector", &h.ignore_pod_selector, problems);
        if let Some(Err(e)) = h.minimum.as_deref().map(model::parse::duration) {
            problems.push(format!("spec.health.minimum: {e}"));
        }
        let minimum = h.minimum.as_deref().and_then(|m| model::parse::duration(m).ok());
        let timeout = h.timeout.as_deref().and_then(|t| model::parse::duration(t).ok());
        if let (Some(m), Some(t)) = (minimum, timeout)
            && m > t
        {
            problems.push("spec.health.minimum must not exceed spec.health.timeout".to_owned());
        }
    }
    if let Some(d) = &spec.drain {
        dur("drain.timeout", &d.timeout, problems);
        dur("drain.doNotDisruptTimeout", &d.do_not_disrupt_timeout, problems);
        dur("drain.loadBalancerWait", &d.load_balancer_wait, problems);
        if let Some(Err(e)) = d.delete_blocked_pods_after.as_deref().map(model::parse::duration) {
            problems.push(format!("spec.drain.deleteBlockedPodsAfter: {e}"));
        }
        let after = d.delete_blocked_pods_after.as_deref().and_then(|a| model::parse::duration(a).ok());
        let timeout = d.timeout.as_deref().and_then(|t| model::parse::duration(t).ok());
        if let (Some(a), Some(t)) = (after, timeout)
            && a >= t
        {
            problems.push("spec.drain.deleteBlockedPodsAfter must be shorter than spec.drain.timeout".to_owned());
        }
        selector("drain.skipPodSelector", &d.skip_pod_selector, problems);
    }
    if let Some(hooks) = &spec.hooks {
        for (name, hook) in [("beforeDrain", &hooks.before_drain), ("afterReboot", &hooks.after_reboot)] {
            if let Some(h) = hook {
                problems.extend(h.problems(&format!("spec.hooks.{name}")));
                if h.wait_for_annotation.is_some() {
                    waits += h.wait();
                }
            }
        }
    }
    if waits > max_slot_hold / 2 {
        problems.push(format!(
            "the waits of spec.health, spec.drain and spec.hooks add up to {waits:?}, more than half of maxSlotHold ({max_slot_hold:?}): raise spec.maxSlotHold so a walk that uses them is not taken back"
        ));
    }
    WalkSpec { health: spec.health.clone(), drain: spec.drain.clone(), hooks: spec.hooks.clone() }.or_none()
}

/// `alertGate.pollInterval` when unset, and its bounds.
pub const GATE_POLL_DEFAULT: Duration = Duration::from_secs(30);
pub const GATE_POLL_MIN: Duration = Duration::from_millis(100);
pub const GATE_POLL_MAX: Duration = Duration::from_secs(3600);
/// `alertGate.timeout` when unset, and its bounds.
pub const GATE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
pub const GATE_TIMEOUT_MIN: Duration = Duration::from_millis(100);
pub const GATE_TIMEOUT_MAX: Duration = Duration::from_secs(60);

/// The alert gate of the spec, checked field by field; `None` (and a
/// problem naming the field, so no grants) if any field is unusable.
fn alert_gate(g: &model::alert_gate::AlertGate, problems: &mut Vec<String>) -> Option<GateSettings> {
    let before = problems.len();
    let url = g.prometheus_url.trim();
    match reqwest::Url::parse(url) {
        _ if url.is_empty() => problems.push("spec.alertGate.prometheusUrl: required".to_owned()),
        Err(e) => problems.push(format!("spec.alertGate.prometheusUrl: {url:?} is not a URL: {e}")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            problems.push(format!("spec.alertGate.prometheusUrl: {url:?}: only http and https are supported"))
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            problems.push("spec.alertGate.prometheusUrl: credentials in the URL are not supported".to_owned())
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            problems.push(format!("spec.alertGate.prometheusUrl: {url:?}: the base URL takes no query or fragment"))
        }
        Ok(_) => {}
    }
    let query = g.query.as_deref().map(str::trim);
    let target = match (g.alerts.is_empty(), query) {
        (false, None) => {
            if g.alerts.iter().any(|a| a.trim().is_empty()) {
                problems.push("spec.alertGate.alerts: an empty name".to_owned());
            }
            Some(GateTarget::Alerts(g.alerts.clone()))
        }
        (true, Some("")) => {
            problems.push("spec.alertGate.query: empty".to_owned());
            None
        }
        (true, Some(q)) => Some(GateTarget::Query(q.to_owned())),
        (true, None) => {
            problems.push("spec.alertGate: set alerts (alert names) or query (PromQL)".to_owned());
            None
        }
        (false, Some(_)) => {
            problems.push("spec.alertGate: set alerts or query, not both".to_owned());
            None
        }
    };
    let mut bounded = |field: &str, v: Option<&String>, default: Duration, min: Duration, max: Duration| match v {
        None => default,
        Some(s) => match model::parse::duration(s) {
            Ok(d) if (min..=max).contains(&d) => d,
            Ok(_) => {
                let (min, max) = (humantime::format_duration(min), humantime::format_duration(max));
                problems.push(format!("spec.alertGate.{field}: {s:?} is outside {min}..{max}"));
                default
            }
            Err(e) => {
                problems.push(format!("spec.alertGate.{field}: {e}"));
                default
            }
        },
    };
    let poll_interval =
        bounded("pollInterval", g.poll_interval.as_ref(), GATE_POLL_DEFAULT, GATE_POLL_MIN, GATE_POLL_MAX);
    let timeout = bounded("timeout", g.timeout.as_ref(), GATE_TIMEOUT_DEFAULT, GATE_TIMEOUT_MIN, GATE_TIMEOUT_MAX);
    if problems.len() > before {
        return None;
    }
    Some(GateSettings {
        url: url.trim_end_matches('/').to_owned(),
        target: target?,
        poll_interval,
        timeout,
        on_unreachable: g.on_unreachable.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn defaults() -> Defaults {
        Defaults {
            budget: Budget::Count(1),
            failure_backoff: Duration::from_secs(300),
            failure_backoff_max: Duration::from_secs(3600),
            max_consecutive_failures: 3,
            windows: vec![],
            slot_lease_duration: Duration::from_secs(120),
            max_slot_hold: Duration::from_secs(5400),
            node_selector: "bottlerocket.aws/updater-interface-version=2.0.0".into(),
        }
    }

    #[test]
    fn the_published_defaults_read_back() {
        let d = Defaults { windows: vec!["Mon 02:00-04:00 UTC".into()], budget: Budget::Percent(10), ..defaults() };
        let back = Defaults::from_published(&d.published()).unwrap();
        assert_eq!(back, d);
        let mut bad = d.published();
        bad.failure_backoff = "soon".into();
        assert!(Defaults::from_published(&bad).unwrap_err().contains("leaderDefaults.failureBackoff"));
    }

    #[test]
    fn without_a_policy_the_flags_apply() {
        let (s, w) = resolve(&defaults(), None);
        assert_eq!((s.budget, s.paused, s.invalid), (Budget::Count(1), false, None));
        assert!(w.is_empty());
    }

    #[test]
    fn the_policy_overrides_the_flags() {
        let spec = UpdatePolicySpec {
            max_concurrent_updates: Some(IntOrString::String("10%".into())),
            paused: true,
            failure_backoff: Some("1m".into()),
            max_consecutive_failures: Some(5),
            update_windows: vec!["Mon-Fri 02:00-05:00 Europe/Berlin".into()],
            ..Default::default()
        };
        let (s, w) = resolve(&defaults(), Some(&spec));
        assert_eq!(s.budget, Budget::Percent(10));
        assert!(s.paused);
        assert_eq!(s.failure_backoff, Duration::from_secs(60));
        assert_eq!(s.max_consecutive_failures, 5);
        assert!(!w.is_empty());
    }

    /// A spec as the leader reads it from the API (the lenient reader).
    fn read(json: serde_json::Value) -> UpdatePolicySpec {
        UpdatePolicySpec::from_value(json)
    }

    #[test]
    fn zones_and_canary_are_read_from_the_stored_object() {
        let spec = read(serde_json::json!({
            "maxUnavailablePerZone": "34%", "oneZoneAtATime": true, "zoneOrder": ["b", "a"],
            "canary": {"nodes": 2, "soak": "90m", "skipSoak": "1.21.0"}
        }));
        let (s, _) = resolve(&defaults(), Some(&spec));
        assert_eq!(s.invalid, None);
        let z = s.zones.unwrap();
        assert_eq!(z.topology_key, model::names::ZONE_LABEL);
        assert_eq!(
            (z.per_zone, z.one_zone_at_a_time, z.zone_order),
            (Some(Budget::Percent(34)), true, vec!["b".into(), "a".into()])
        );
        let c = s.canary.unwrap();
        assert_eq!(
            (c.nodes, c.soak, c.skip_soak.as_deref()),
            (Budget::Count(2), Duration::from_secs(5400), Some("1.21.0"))
        );
        // A canary without settings: one node, no soak.
        let (s, _) = resolve(&defaults(), Some(&read(serde_json::json!({"canary": {}}))));
        assert_eq!(s.canary.map(|c| (c.nodes, c.soak)), Some((Budget::Count(1), Duration::ZERO)));
    }

    #[test]
    fn bad_zone_and_canary_values_name_their_field() {
        for (json, field) in [
            (serde_json::json!({"maxUnavailablePerZone": "abc"}), "spec.maxUnavailablePerZone"),
            (serde_json::json!({"topologyKey": "not a key!", "oneZoneAtATime": true}), "spec.topologyKey"),
            (serde_json::json!({"oneZoneAtATime": true, "zoneOrder": ["a", "a"]}), "spec.zoneOrder[1]"),
            (serde_json::json!({"canary": {"nodes": "150%"}}), "spec.canary.nodes"),
            (serde_json::json!({"canary": {"soak": "soon"}}), "spec.canary.soak"),
            (serde_json::json!({"canary": {"nodes": true}}), "spec.canary"),
        ] {
            let (s, _) = resolve(&defaults(), Some(&read(json.clone())));
            let msg = s.invalid.unwrap_or_default();
            assert!(msg.contains(field), "{json}: {msg}");
        }
    }

    #[test]
    fn max_slot_hold_comes_from_the_policy_and_must_outlast_the_slot_lease() {
        assert_eq!(resolve(&defaults(), None).0.max_slot_hold, Duration::from_secs(5400));
        let spec = UpdatePolicySpec { max_slot_hold: Some("2h".into()), ..Default::default() };
        assert_eq!(resolve(&defaults(), Some(&spec)).0.max_slot_hold, Duration::from_secs(7200));
        let spec = UpdatePolicySpec { max_slot_hold: Some("1m".into()), ..Default::default() };
        let msg = resolve(&defaults(), Some(&spec)).0.invalid.unwrap();
        assert!(msg.contains("spec.maxSlotHold"), "{msg}");
    }

    #[test]
    fn blackouts_close_the_windows_and_a_bad_one_names_the_field() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let spec = UpdatePolicySpec {
            update_exclusions: vec!["2026-12-24 2026-12-26 Europe/Berlin".into()],
            ..Default::default()
        };
        let (s, w) = resolve(&defaults(), Some(&spec));
        assert_eq!(s.invalid, None);
        assert!(w.is_open(t("2026-12-23T12:00:00Z")));
        assert!(!w.is_open(t("2026-12-25T12:00:00Z")));
        assert_eq!(w.next_start(t("2026-12-25T12:00:00Z")), Some(t("2026-12-26T23:00:00Z")));
        let weekend = UpdatePolicySpec {
            window_budgets: vec![model::policy::WindowBudget {
                window: "Sat,Sun 00:00+24h UTC".into(),
                max_concurrent_updates: IntOrString::String("30%".into()),
            }],
            ..Default::default()
        };
        let (s, w) = resolve(&defaults(), Some(&weekend));
        assert_eq!(s.invalid, None);
        // 2026-12-26 is a Saturday.
        assert_eq!(w.budget(t("2026-12-26T12:00:00Z")), (Some(Budget::Percent(30)), Some(t("2026-12-27T00:00:00Z"))));
        assert_eq!(w.budget(t("2026-12-25T12:00:00Z")), (None, Some(t("2026-12-26T00:00:00Z"))));
        let bad = UpdatePolicySpec {
            window_budgets: vec![model::policy::WindowBudget {
                window: "Caturday".into(),
                max_concurrent_updates: IntOrString::String("lots".into()),
            }],
            ..Default::default()
        };
        assert!(resolve(&defaults(), Some(&bad)).0.invalid.unwrap().contains("spec.windowBudgets[0].window"));
        let aged = UpdatePolicySpec { min_release_age: Some("72h".into()), ..Default::default() };
        assert_eq!(resolve(&defaults(), Some(&aged)).0.min_release_age, Some(Duration::from_secs(72 * 3600)));
        let aged = UpdatePolicySpec { min_release_age: Some("three days".into()), ..Default::default() };
        assert!(resolve(&defaults(), Some(&aged)).0.invalid.unwrap().contains("spec.minReleaseAge"));
        let bad = UpdatePolicySpec { update_exclusions: vec!["Christmas".into()], ..Default::default() };
        let msg = resolve(&defaults(), Some(&bad)).0.invalid.unwrap();
        assert!(msg.contains("spec.updateExclusions") && msg.contains("Christmas"), "{msg}");
    }

    #[test]
    fn walk_settings_are_checked_and_carried_to_the_grant() {
        use model::walk::{DrainSpec, HealthSpec};
        assert_eq!(resolve(&defaults(), None).0.walk, None);
        let health = HealthSpec { timeout: Some("10m".into()), minimum: Some("10s".into()), ..Default::default() };
        let drain = DrainSpec { grace_period_seconds: Some(30), ..Default::default() };
        let spec = UpdatePolicySpec { health: Some(health.clone()), drain: Some(drain.clone()), ..Default::default() };
        let (s, _) = resolve(&defaults(), Some(&spec));
        assert_eq!(s.invalid, None);
        assert_eq!(s.walk, Some(WalkSpec { health: Some(health), drain: Some(drain), hooks: None }));
        let bad = |spec: UpdatePolicySpec, field: &str| {
            let msg = resolve(&defaults(), Some(&spec)).0.invalid.unwrap_or_default();
            assert!(msg.contains(field), "{field}: {msg}");
        };
        let h = |h: HealthSpec| UpdatePolicySpec { health: Some(h), ..Default::default() };
        let d = |d: DrainSpec| UpdatePolicySpec { drain: Some(d), ..Default::default() };
        bad(h(HealthSpec { timeout: Some("soon".into()), ..Default::default() }), "spec.health.timeout");
        bad(h(HealthSpec { minimum: Some("-1s".into()), ..Default::default() }), "spec.health.minimum");
        bad(h(HealthSpec { ignore_pod_selector: Some("a in b".into()), ..Default::default() }), "ignorePodSelector");
        bad(
            h(HealthSpec { timeout: Some("1m".into()), minimum: Some("2m".into()), ..Default::default() }),
            "spec.health.minimum must not exceed",
        );
        bad(d(DrainSpec { skip_pod_selector: Some("Bad Key".into()), ..Default::default() }), "skipPodSelector");
        bad(d(DrainSpec { timeout: Some("46m".into()), ..Default::default() }), "raise spec.maxSlotHold");
        let waits = DrainSpec {
            timeout: Some("20m".into()),
            do_not_disrupt_timeout: Some("20m".into()),
            load_balancer_wait: Some("6m".into()),
            ..Default::default()
        };
        bad(d(waits), "add up to 2760s");
        bad(d(DrainSpec { load_balancer_wait: Some("a bit".into()), ..Default::default() }), "drain.loadBalancerWait");
        let late = DrainSpec {
            timeout: Some("10m".into()),
            delete_blocked_pods_after: Some("10m".into()),
            ..Default::default()
        };
        bad(d(late), "deleteBlockedPodsAfter must be shorter");
        let stored: UpdatePolicySpec = serde_json::from_str(r#"{"drain":{"gracePeriodSeconds":-5}}"#).unwrap();
        bad(stored, "spec.drain.gracePeriodSeconds");
        let stored: UpdatePolicySpec = serde_json::from_str(r#"{"health":{"timeout":5}}"#).unwrap();
        bad(stored, "spec.health");
        let hooks = |json: &str| serde_json::from_str::<UpdatePolicySpec>(json).unwrap();
        let ok = hooks(
            r#"{"hooks":{"beforeDrain":{"labels":{"ceph.example.com/maintenance":"true"},"waitForAnnotation":"ceph.example.com/noout","timeout":"5m"}}}"#,
        );
        let (s, _) = resolve(&defaults(), Some(&ok));
        assert_eq!(s.invalid, None);
        assert!(s.walk.and_then(|w| w.hooks).is_some_and(|h| h.before_drain.is_some()));
        bad(hooks(r#"{"hooks":{"beforeDrain":{"labels":{"Bad Key":"x"}}}}"#), "spec.hooks.beforeDrain.labels");
        bad(
            hooks(r#"{"hooks":{"afterReboot":{"annotations":{"brupop.bottlerocket.aws/cordoned":"x"}}}}"#),
            "the operator's own",
        );
        bad(hooks(r#"{"hooks":{"afterReboot":{"waitForValue":"x"}}}"#), "waitForValue needs waitForAnnotation");
        bad(
            hooks(r#"{"hooks":{"afterReboot":{"waitForAnnotation":"a/b","timeout":"50m"}}}"#),
            "raise spec.maxSlotHold",
        );
    }

    #[test]
    fn an_invalid_policy_value_stops_grants_and_names_the_field() {
        let spec =
            UpdatePolicySpec { max_concurrent_updates: Some(IntOrString::String("abc".into())), ..Default::default() };
        let (s, _) = resolve(&defaults(), Some(&spec));
        let msg = s.invalid.unwrap();
        assert!(msg.contains("spec.maxConcurrentUpdates") && msg.contains("abc"), "{msg}");
        let spec = UpdatePolicySpec { update_windows: vec!["Funday 01:00-02:00".into()], ..Default::default() };
        assert!(resolve(&defaults(), Some(&spec)).0.invalid.unwrap().contains("spec.updateWindows"));
    }

    fn gate(v: serde_json::Value) -> (Option<GateSettings>, Option<String>) {
        let spec: UpdatePolicySpec = serde_json::from_value(serde_json::json!({ "alertGate": v })).unwrap();
        let (s, _) = resolve(&defaults(), Some(&spec));
        (s.alert_gate, s.invalid)
    }

    #[test]
    fn the_alert_gate_is_read_with_its_defaults() {
        let (g, invalid) = gate(serde_json::json!({"prometheusUrl": "http://prom:9090/", "alerts": ["NodeDown"]}));
        assert_eq!(invalid, None);
        let g = g.unwrap();
        assert_eq!(g.url, "http://prom:9090");
        assert_eq!(g.target, GateTarget::Alerts(vec!["NodeDown".into()]));
        assert_eq!((g.poll_interval, g.timeout), (GATE_POLL_DEFAULT, GATE_TIMEOUT_DEFAULT));
        assert_eq!(g.on_unreachable, model::alert_gate::OnUnreachable::Block, "unreachable blocks by default");
        let (g, _) =
            gate(serde_json::json!({"prometheusUrl": "https://p", "query": " up == 0 ", "pollInterval": "200ms",
            "timeout": "1s", "onUnreachable": "Ignore"}));
        let g = g.unwrap();
        assert_eq!(g.target, GateTarget::Query("up == 0".into()));
        assert_eq!((g.poll_interval, g.timeout), (Duration::from_millis(200), Duration::from_secs(1)));
    }

    #[test]
    fn each_unusable_gate_field_stops_grants_and_is_named() {
        for (v, field) in [
            (serde_json::json!({"alerts": ["A"]}), "spec.alertGate.prometheusUrl"),
            (serde_json::json!({"prometheusUrl": "prom:9090", "alerts": ["A"]}), "spec.alertGate.prometheusUrl"),
            (serde_json::json!({"prometheusUrl": "ftp://prom", "alerts": ["A"]}), "spec.alertGate.prometheusUrl"),
            (serde_json::json!({"prometheusUrl": "http://u:p@prom", "alerts": ["A"]}), "spec.alertGate.prometheusUrl"),
            (serde_json::json!({"prometheusUrl": "http://prom"}), "spec.alertGate: set alerts"),
            (serde_json::json!({"prometheusUrl": "http://prom", "alerts": ["A"], "query": "up"}), "not both"),
            (serde_json::json!({"prometheusUrl": "http://prom", "alerts": [""]}), "spec.alertGate.alerts"),
            (serde_json::json!({"prometheusUrl": "http://prom", "query": " "}), "spec.alertGate.query"),
            (
                serde_json::json!({"prometheusUrl": "http://prom", "alerts": ["A"], "pollInterval": "1ms"}),
                "spec.alertGate.pollInterval",
            ),
            (
                serde_json::json!({"prometheusUrl": "http://prom", "alerts": ["A"], "pollInterval": "soon"}),
                "spec.alertGate.pollInterval",
            ),
            (
                serde_json::json!({"prometheusUrl": "http://prom", "alerts": ["A"], "timeout": "2m"}),
                "spec.alertGate.timeout",
            ),
            (
                serde_json::json!({"prometheusUrl": "http://prom", "alerts": ["A"], "onUnreachable": "Maybe"}),
                "spec.alertGate.onUnreachable",
            ),
            (serde_json::json!(["http://prom"]), "spec.alertGate: not an object"),
        ] {
            // No grants (InvalidSpec), and the message names the field.
            let (_, invalid) = gate(v.clone());
            let msg = invalid.unwrap_or_default();
            assert!(msg.contains(field), "{v}: {msg}");
        }
    }

    #[test]
    fn a_value_the_spec_could_not_read_stops_grants_and_names_the_field() {
        let spec: UpdatePolicySpec = serde_json::from_str(r#"{"maxConsecutiveFailures":5000000000}"#).unwrap();
        let (s, _) = resolve(&defaults(), Some(&spec));
        let msg = s.invalid.unwrap();
        assert!(msg.contains("spec.maxConsecutiveFailures") && msg.contains("5000000000"), "{msg}");
        assert_eq!(s.max_consecutive_failures, 3, "the flag's value stays in force meanwhile");
        let spec = UpdatePolicySpec {
            max_concurrent_updates: Some(IntOrString::String("999999".into())),
            ..Default::default()
        };
        assert!(resolve(&defaults(), Some(&spec)).0.invalid.unwrap().contains("spec.maxConcurrentUpdates"));
    }
}
