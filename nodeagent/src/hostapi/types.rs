//! The host update API's documents and their tolerant parsers.
//!
//! What this module does: turns the bytes of a `GET /os` or `GET
//! /updates/status` answer into typed values, accepting exactly what a
//! Bottlerocket host's API server may send: every
//! optional field may be absent or `null`, `exit_status` is a signed 32-bit
//! number, timestamps keep their text exactly (0, 3, 6 or 9 fraction digits),
//! unknown fields are ignored.
//!
//! What it must not do: panic on any input, guess at unknown enum values (an
//! unknown `update_state`, `cmd_type` or `cmd_status` is an error naming the
//! value), or do I/O.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// `GET /os`: what the host runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OsInfo {
    /// The running OS version, e.g. `1.20.0`.
    pub version_id: String,
    /// The variant, e.g. `aws-k8s-1.29`.
    pub variant_id: String,
    /// The architecture, e.g. `x86_64`.
    pub arch: String,
    /// e.g. `Bottlerocket OS 1.20.0 (aws-k8s-1.29)`; not needed by the agent.
    #[serde(default)]
    pub pretty_name: Option<String>,
    /// The build's commit id; not needed by the agent.
    #[serde(default)]
    pub build_id: Option<String>,
}

/// `update_state` of the host's update status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum UpdateState {
    /// No update chosen.
    Idle,
    /// An update is chosen (`chosen_update`) and may be prepared.
    Available,
    /// An image is written to the staging partition.
    Staged,
    /// The staged image is marked to boot next.
    Ready,
}

impl UpdateState {
    /// The name as the host spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Idle => "Idle",
            UpdateState::Available => "Available",
            UpdateState::Staged => "Staged",
            UpdateState::Ready => "Ready",
        }
    }
}

impl fmt::Display for UpdateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `cmd_type`: the update commands; each has an action endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandType {
    /// `POST /actions/refresh-updates`
    Refresh,
    /// `POST /actions/prepare-update`
    Prepare,
    /// `POST /actions/activate-update`
    Activate,
    /// `POST /actions/deactivate-update`
    Deactivate,
}

impl CommandType {
    /// The name as the host spells it in `cmd_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandType::Refresh => "refresh",
            CommandType::Prepare => "prepare",
            CommandType::Activate => "activate",
            CommandType::Deactivate => "deactivate",
        }
    }

    /// The path of the action that starts this command.
    pub fn action_path(self) -> &'static str {
        match self {
            CommandType::Refresh => "/actions/refresh-updates",
            CommandType::Prepare => "/actions/prepare-update",
            CommandType::Activate => "/actions/activate-update",
            CommandType::Deactivate => "/actions/deactivate-update",
        }
    }
}

impl fmt::Display for CommandType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `cmd_status` of a finished command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum CommandStatus {
    /// The command did its work.
    Success,
    /// The command failed; `exit_status` and `stderr` say why.
    Failed,
    /// Exists in the host's type but is never written; treated as not a success.
    Unknown,
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommandStatus::Success => "Success",
            CommandStatus::Failed => "Failed",
            CommandStatus::Unknown => "Unknown",
        })
    }
}

/// An OS image as the host names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UpdateImage {
    /// e.g. `x86_64`
    pub arch: String,
    /// e.g. `1.21.0`
    pub version: String,
    /// e.g. `aws-k8s-1.29`
    pub variant: String,
}

/// A partition's image and whether the bootloader will boot it next.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StagedImage {
    /// The image on the partition.
    pub image: UpdateImage,
    /// True when this partition boots next.
    pub next_to_boot: bool,
}

/// When a command finished, exactly as the host wrote it.
///
/// Equality is on the text: two commands are told apart by their timestamps,
/// so the fraction digits must not be rounded away. The text is checked to be
/// an RFC 3339 timestamp when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandTimestamp {
    text: String,
    at: jiff::Timestamp,
}

impl CommandTimestamp {
    /// Parses an RFC 3339 timestamp, keeping its text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let at = text.parse::<jiff::Timestamp>().map_err(|e| format!("timestamp {text:?} is not RFC 3339: {e}"))?;
        Ok(CommandTimestamp { text: text.to_owned(), at })
    }

    /// The text as the host sent it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The instant it names.
    pub fn at(&self) -> jiff::Timestamp {
        self.at
    }
}

impl fmt::Display for CommandTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for CommandTimestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        CommandTimestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `most_recent_command`: the last command that ran, failed or not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Command {
    /// Which command.
    pub cmd_type: CommandType,
    /// How it ended.
    pub cmd_status: CommandStatus,
    /// When it finished.
    pub timestamp: CommandTimestamp,
    /// The worker's exit status (a signal number if it was killed); always
    /// set on a real host, tolerated absent.
    #[serde(default)]
    pub exit_status: Option<i32>,
    /// The worker's stderr; not always empty on success.
    #[serde(default)]
    pub stderr: Option<String>,
}

/// `GET /updates/status` (200).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UpdateStatus {
    /// Where the host is in its update.
    pub update_state: UpdateState,
    /// Every release the host may install, newest first, including the
    /// running one and older ones. Absent or `null` reads as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub available_updates: Vec<String>,
    /// What the host's `version-lock` selects; `None` when nothing.
    #[serde(default)]
    pub chosen_update: Option<UpdateImage>,
    /// The partition the host booted from. Always set on a real host.
    #[serde(default)]
    pub active_partition: Option<StagedImage>,
    /// The other partition, once an image was written there.
    #[serde(default)]
    pub staging_partition: Option<StagedImage>,
    /// The last command that ran, `None` in a fresh status.
    #[serde(default)]
    pub most_recent_command: Option<Command>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}

impl UpdateStatus {
    /// The version the host would update to.
    pub fn chosen_version(&self) -> Option<&str> {
        self.chosen_update.as_ref().map(|i| i.version.as_str())
    }

    /// The version written to the staging partition, if any.
    pub fn staged_version(&self) -> Option<&str> {
        self.staging_partition.as_ref().map(|p| p.image.version.as_str())
    }

    /// The version of the partition that boots next, if the host says.
    pub fn next_to_boot_version(&self) -> Option<&str> {
        [&self.staging_partition, &self.active_partition]
            .into_iter()
            .flatten()
            .find(|p| p.next_to_boot)
            .map(|p| p.image.version.as_str())
    }

    /// The timestamp of `most_recent_command`, to note before sending a command.
    pub fn last_command_timestamp(&self) -> Option<&CommandTimestamp> {
        self.most_recent_command.as_ref().map(|c| &c.timestamp)
    }
}

/// What `GET /updates/status` says: after a boot the host has no status
/// until the first update action (404), which is not an error.
// Read once per decision, never stored in bulk: boxing would only make
// matching on it clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostStatus {
    /// 404 `Update status is uninitialized, ...`: no update action since boot.
    Uninitialized,
    /// 200 with a status.
    Initialized(UpdateStatus),
}

impl HostStatus {
    /// The status, if there is one.
    pub fn status(&self) -> Option<&UpdateStatus> {
        match self {
            HostStatus::Uninitialized => None,
            HostStatus::Initialized(s) => Some(s),
        }
    }

    /// The timestamp of the last command, if any.
    pub fn last_command_timestamp(&self) -> Option<&CommandTimestamp> {
        self.status().and_then(UpdateStatus::last_command_timestamp)
    }
}

/// Parses a `GET /os` body. The error says what is wrong, in lower case.
pub fn parse_os(body: &[u8]) -> Result<OsInfo, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid /os answer: {e}"))
}

/// Parses a `GET /updates/status` body. The error says what is wrong, in
/// lower case, naming an unknown enum value when there is one.
pub fn parse_update_status(body: &[u8]) -> Result<UpdateStatus, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid update status: {e}"))
}

#[cfg(test)]
#[path = "types_tests.rs"]
mod tests;
