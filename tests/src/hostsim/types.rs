//! The documents a simulated host serves, shaped exactly as a real host
//! sends them, and the version ordering a host's repository uses.
//!
//! What this module does: defines `/os` and `/updates/status` as the fact
//! sheet spells them (all six status keys and all five command keys always
//! present, `null` for empty values, compact JSON), the RFC 3339 timestamps
//! with 9 fraction digits, and a semver-like ordering of version strings.
//!
//! What it must not do: share types with the nodeagent's client. The
//! simulator judges the client's parsing independently.

use std::cmp::Ordering;

use serde::Serialize;

/// `update_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum UpdateState {
    /// No update chosen.
    Idle,
    /// `chosen_update` is set.
    Available,
    /// An image is on the staging partition.
    Staged,
    /// The staged image boots next.
    Ready,
}

/// `cmd_type`: the four update commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandKind {
    /// refresh-updates
    Refresh,
    /// prepare-update
    Prepare,
    /// activate-update
    Activate,
    /// deactivate-update
    Deactivate,
}

impl CommandKind {
    /// All four, in walk order.
    pub const ALL: [CommandKind; 4] =
        [CommandKind::Refresh, CommandKind::Prepare, CommandKind::Activate, CommandKind::Deactivate];

    /// The action path that starts it.
    pub fn path(self) -> &'static str {
        match self {
            CommandKind::Refresh => "/actions/refresh-updates",
            CommandKind::Prepare => "/actions/prepare-update",
            CommandKind::Activate => "/actions/activate-update",
            CommandKind::Deactivate => "/actions/deactivate-update",
        }
    }

    /// The command whose action is at `path`.
    pub fn from_path(path: &str) -> Option<CommandKind> {
        CommandKind::ALL.into_iter().find(|c| c.path() == path)
    }
}

/// `cmd_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum CmdStatus {
    /// The command did its work.
    Success,
    /// It failed; `exit_status` and `stderr` say why.
    Failed,
}

/// An image as a host names it (key order as a real host sends it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Image {
    /// e.g. `x86_64`
    pub arch: String,
    /// e.g. `1.21.0`
    pub version: String,
    /// e.g. `aws-k8s-1.29`
    pub variant: String,
}

/// `active_partition` / `staging_partition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    /// The image on the partition.
    pub image: Image,
    /// Whether it boots next.
    pub next_to_boot: bool,
}

/// `most_recent_command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandResult {
    /// Which command.
    pub cmd_type: CommandKind,
    /// How it ended.
    pub cmd_status: CmdStatus,
    /// When it finished: RFC 3339 UTC, 9 fraction digits.
    pub timestamp: String,
    /// The worker's exit status.
    pub exit_status: i32,
    /// The worker's stderr.
    pub stderr: String,
}

/// The status file (`/run/.../update_status`) and the body of `GET
/// /updates/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateStatus {
    /// Where the host is.
    pub update_state: UpdateState,
    /// Releases allowed, newest first.
    pub available_updates: Vec<String>,
    /// What `version-lock` selects.
    pub chosen_update: Option<Image>,
    /// The booted partition.
    pub active_partition: PartitionInfo,
    /// The other partition, once written.
    pub staging_partition: Option<PartitionInfo>,
    /// The last command that ran.
    pub most_recent_command: Option<CommandResult>,
}

/// `GET /os` (key order as a real host sends it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// `Bottlerocket OS <version> (<variant>)`
    pub pretty_name: String,
    /// The variant.
    pub variant_id: String,
    /// The running version.
    pub version_id: String,
    /// A short commit id (the simulator derives it from the version).
    pub build_id: String,
    /// The architecture.
    pub arch: String,
}

impl OsInfo {
    /// What a host running `image` reports.
    pub fn of(image: &Image) -> OsInfo {
        OsInfo {
            pretty_name: format!("Bottlerocket OS {} ({})", image.version, image.variant),
            variant_id: image.variant.clone(),
            version_id: image.version.clone(),
            build_id: build_id(&image.version),
            arch: image.arch.clone(),
        }
    }
}

/// A stable 7-hex-digit "commit" for a version (FNV-1a of its text).
fn build_id(version: &str) -> String {
    let hash =
        version.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{:07x}", hash & 0x0fff_ffff)
}

/// Formats `at` as a real host does: RFC 3339 UTC with exactly `digits`
/// fraction digits (9 on a real host; 0, 3 or 6 to test parsers).
pub fn format_timestamp(at: jiff::Timestamp, digits: u8) -> String {
    let base = at.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let digits = usize::from(digits.min(9));
    if digits == 0 {
        return format!("{base}Z");
    }
    let nanos = format!("{:09}", at.subsec_nanosecond().unsigned_abs());
    format!("{base}.{}Z", &nanos[..digits])
}

/// Orders version strings like semver: numeric dot-separated parts compare
/// as numbers; a part that is not a number compares as text after numbers.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = a.split(['.', '-', '+']);
    let mut right = b.split(['.', '-', '+']);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically_not_as_text() {
        assert_eq!(compare_versions("1.10.0", "1.9.5"), Ordering::Greater);
        assert_eq!(compare_versions("1.20.0", "1.20.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.20", "1.20.1"), Ordering::Less);
        assert_eq!(compare_versions("2.0.0", "10.0.0"), Ordering::Less);
    }

    #[test]
    fn timestamps_have_the_requested_fraction_digits() {
        let at: jiff::Timestamp = "2026-11-24T10:00:07.123456789Z".parse().unwrap();
        assert_eq!(format_timestamp(at, 9), "2026-11-24T10:00:07.123456789Z");
        assert_eq!(format_timestamp(at, 6), "2026-11-24T10:00:07.123456Z");
        assert_eq!(format_timestamp(at, 3), "2026-11-24T10:00:07.123Z");
        assert_eq!(format_timestamp(at, 0), "2026-11-24T10:00:07Z");
        let whole: jiff::Timestamp = "2026-11-24T10:00:07Z".parse().unwrap();
        assert_eq!(format_timestamp(whole, 9), "2026-11-24T10:00:07.000000000Z");
    }

    #[test]
    fn the_status_serializes_with_every_key_and_nulls() {
        let image = Image { arch: "x86_64".into(), version: "1.20.0".into(), variant: "aws-k8s-1.29".into() };
        let status = UpdateStatus {
            update_state: UpdateState::Idle,
            available_updates: vec![],
            chosen_update: None,
            active_partition: PartitionInfo { image: image.clone(), next_to_boot: true },
            staging_partition: None,
            most_recent_command: None,
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"update_state":"Idle","available_updates":[],"chosen_update":null,"active_partition":{"image":{"arch":"x86_64","version":"1.20.0","variant":"aws-k8s-1.29"},"next_to_boot":true},"staging_partition":null,"most_recent_command":null}"#
        );
        let os = serde_json::to_string(&OsInfo::of(&image)).unwrap();
        assert!(
            os.starts_with(r#"{"pretty_name":"Bottlerocket OS 1.20.0 (aws-k8s-1.29)","variant_id":"aws-k8s-1.29","version_id":"1.20.0","build_id":""#),
            "{os}"
        );
    }
}
