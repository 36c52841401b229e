//! Many simulated hosts in one temporary directory, sharing one repository.
//!
//! What this module does: starts a host per node name with its socket at
//! `<dir>/<name>.sock`, all refreshing from one [`Repository`], so a test can
//! publish a release to the whole fleet at once. The directory is removed
//! when the fleet is dropped.
//!
//! What it must not do: run agents or touch a cluster (the end-to-end
//! harness does).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::config::HostConfig;
use super::faults::Fault;
use super::host::HostSim;
use super::repo::Repository;

/// Hosts sharing a repository, in a directory of their own.
#[derive(Debug)]
pub struct HostFleet {
    dir: PathBuf,
    repository: Repository,
    hosts: Vec<HostSim>,
}

/// A fresh directory under the system's temporary directory.
fn fresh_dir() -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "hostsim-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl HostFleet {
    /// Starts one host per name, each configured from `template` with its
    /// name, all refreshing from one repository holding `template.available`
    /// (or `template.repository`).
    pub async fn start<I, S>(names: I, template: HostConfig) -> io::Result<HostFleet>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let repository = template.repository.clone().unwrap_or_else(|| Repository::new(template.available.clone()));
        let mut fleet = HostFleet { dir: fresh_dir()?, repository, hosts: Vec::new() };
        for name in names {
            fleet.add(template.clone().name(name.as_ref())).await?;
        }
        Ok(fleet)
    }

    /// Starts `count` hosts named `node-0` … `node-<count-1>`.
    pub async fn start_n(count: usize, template: HostConfig) -> io::Result<HostFleet> {
        HostFleet::start((0..count).map(|i| format!("node-{i}")), template).await
    }

    /// Adds a host named `config.name`, sharing the fleet's repository.
    pub async fn add(&mut self, config: HostConfig) -> io::Result<&HostSim> {
        let socket = self.dir.join(format!("{}.sock", config.name));
        let host = HostSim::start(socket, config.repository(self.repository.clone())).await?;
        self.hosts.push(host);
        Ok(&self.hosts[self.hosts.len() - 1])
    }

    /// The directory holding the sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every host, in start order.
    pub fn hosts(&self) -> &[HostSim] {
        &self.hosts
    }

    /// API requests answered by every host together.
    pub fn requests(&self) -> super::RequestCount {
        self.hosts.iter().map(HostSim::requests).fold(super::RequestCount::default(), |a, b| a + b)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&HostSim> {
        self.hosts.iter().find(|h| h.name() == name)
    }

    /// The shared repository.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// Publishes `version` to every host (seen at their next refresh).
    pub fn publish(&self, version: &str) {
        self.repository.publish(version);
    }

    /// Sets `fault` on every host.
    pub fn set_fault_all(&self, fault: &Fault) {
        for host in &self.hosts {
            host.set_fault(fault.clone());
        }
    }
}

impl Drop for HostFleet {
    fn drop(&mut self) {
        self.hosts.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
