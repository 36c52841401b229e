//! Waiting for a condition with a deadline, never a fixed sleep: the check is
//! repeated (every 20 ms at first, backing off to 250 ms) until it holds or
//! the deadline passes; the failure shows the last state observed.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Ok(value)`; `Err(state)` describes what
/// was seen. Panics after `timeout` with `what` and the last state.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match try_wait_for(timeout, &mut check).await {
        Ok(v) => v,
        Err(last) => panic!("timed out after {timeout:?} waiting for {what}; last observed: {last}"),
    }
}

/// Like [`wait_for`] but returns the last state instead of panicking.
pub async fn try_wait_for<T, F, Fut>(timeout: Duration, check: &mut F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(state) => {
                if Instant::now() >= deadline {
                    return Err(state);
                }
            }
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
