//! Async wrappers of the blocking client for the agent's tokio runtime.
//!
//! What this module does: runs each call of [`HostApi`] on tokio's blocking
//! thread pool (`spawn_blocking`), so waiting for a host command (seconds to
//! minutes of polling and sleeping) never occupies a runtime worker thread.
//!
//! What it must not do: add behaviour of its own. Dropping a returned future
//! does not stop the call: it finishes in the background within its own
//! deadline (requests and commands are bounded by [`HostApiConfig`]).

use std::sync::Arc;
use std::time::Instant;

use super::client::{HostApi, HostApiConfig};
use super::error::{Action, Error, Failure};
use super::types::{Command, CommandTimestamp, CommandType, HostStatus, OsInfo, UpdateStatus};

/// A cheaply cloned async handle on one host's API.
#[derive(Debug, Clone)]
pub struct AsyncHostApi {
    inner: Arc<HostApi>,
}

impl AsyncHostApi {
    /// An async client of the host API described by `config`.
    pub fn new(config: HostApiConfig) -> Self {
        AsyncHostApi { inner: Arc::new(HostApi::new(config)) }
    }

    /// The blocking client inside, for code already on a blocking thread.
    pub fn blocking(&self) -> &HostApi {
        &self.inner
    }

    async fn call<T: Send + 'static>(
        &self,
        action: Action,
        f: impl FnOnce(&HostApi) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let api = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&api))
            .await
            .unwrap_or_else(|join| Err(Error::new(action, Failure::Interrupted(join.to_string()))))
    }

    /// See [`HostApi::os`].
    pub async fn os(&self) -> Result<OsInfo, Error> {
        self.call(Action::ReadOs, HostApi::os).await
    }

    /// See [`HostApi::status`].
    pub async fn status(&self) -> Result<HostStatus, Error> {
        self.call(Action::ReadStatus, HostApi::status).await
    }

    /// See [`HostApi::start`].
    pub async fn start(&self, cmd: CommandType) -> Result<(), Error> {
        self.call(Action::of(cmd), move |api| api.start(cmd)).await
    }

    /// See [`HostApi::run`].
    pub async fn run(&self, cmd: CommandType) -> Result<Command, Error> {
        self.call(Action::of(cmd), move |api| api.run(cmd)).await
    }

    /// See [`HostApi::wait_for`].
    pub async fn wait_for(
        &self,
        cmd: CommandType,
        previous: Option<CommandTimestamp>,
        deadline: Instant,
    ) -> Result<Command, Error> {
        self.call(Action::of(cmd), move |api| api.wait_for(cmd, previous.as_ref(), deadline)).await
    }

    /// See [`HostApi::refresh`].
    /// [`HostApi::run_after`]: the command started without a read first;
    /// the status it finished with.
    pub async fn run_after(&self, cmd: CommandType, previous: Option<CommandTimestamp>) -> Result<UpdateStatus, Error> {
        self.call(Action::of(cmd), move |api| api.run_after(cmd, previous.as_ref())).await
    }

    pub async fn refresh(&self) -> Result<Command, Error> {
        self.run(CommandType::Refresh).await
    }

    /// See [`HostApi::prepare`].
    pub async fn prepare(&self) -> Result<Command, Error> {
        self.run(CommandType::Prepare).await
    }

    /// See [`HostApi::activate`].
    pub async fn activate(&self) -> Result<Command, Error> {
        self.run(CommandType::Activate).await
    }

    /// See [`HostApi::deactivate`].
    pub async fn deactivate(&self) -> Result<Command, Error> {
        self.run(CommandType::Deactivate).await
    }

    /// See [`HostApi::reboot`].
    pub async fn reboot(&self) -> Result<(), Error> {
        self.call(Action::Reboot, HostApi::reboot).await
    }
}
