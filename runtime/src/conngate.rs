//! Admission of TCP connections before any byte is read: a cap per peer
//! address, a cap in all, and the pause after a failed `accept` (so a
//! process out of file descriptors does not spin).
//!
//! A peer at its own cap is refused (the caller closes the connection at
//! once, so the kernel's accept queue never fills with refused peers). When
//! the server is at its total cap, a new peer is not refused: the oldest
//! connection of the peer holding the most is asked to close (gracefully: an
//! idle one closes now, one answering a request closes after the answer), so
//! many idle connections cannot lock out a scraper or a probe that arrives
//! later. Connections asked to close still count until they do; at twice the
//! total cap the gate refuses, which bounds what the server holds whatever
//! the peers do. The gate holds one entry per open connection and nothing
//! else; it does no I/O and keeps no time.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Caps on open connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once, all peers together, above which the oldest
    /// of the busiest peer is asked to close (at twice this, new ones are refused).
    pub max_total: usize,
    /// Most connections open at once from one peer address.
    pub max_per_peer: usize,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds twice `max_total` connections, all closing.
    Full,
    /// This peer holds `max_per_peer` connections.
    PeerFull,
}

impl Refusal {
    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Full => "server_full",
            Refusal::PeerFull => "peer_full",
        }
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    close: CancellationToken,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    next_id: u64,
    /// Open connections per peer, oldest first.
    per_peer: HashMap<IpAddr, VecDeque<Entry>>,
}

impl Counts {
    /// Asks the oldest connection of the peer with the most open (and not
    /// yet asked) to close. False when every connection is already closing.
    fn evict_one(&mut self) -> bool {
        let busiest = self
            .per_peer
            .values()
            .filter_map(|q| {
                let live = q.iter().filter(|e| !e.close.is_cancelled()).count();
                (live > 0).then_some((live, q))
            })
            .max_by_key(|(live, _)| *live);
        let Some((_, queue)) = busiest else { return false };
        match queue.iter().find(|e| !e.close.is_cancelled()) {
            Some(e) => {
                e.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// See the module documentation. Cheap to clone (shared counters).
#[derive(Clone, Debug)]
pub struct ConnGate {
    limits: ConnLimits,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    peer: IpAddr,
    id: u64,
    close: CancellationToken,
    counts: Arc<Mutex<Counts>>,
}

impl Permit {
    /// Cancelled when the gate asks this connection to close (make room for
    /// a newer peer): stop taking requests, finish the one in flight.
    pub fn close_requested(&self) -> &CancellationToken {
        &self.close
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(q) = c.per_peer.get_mut(&self.peer) {
            q.retain(|e| e.id != self.id);
            if q.is_empty() {
                c.per_peer.remove(&self.peer);
            }
        }
    }
}

impl ConnGate {
    pub fn new(limits: ConnLimits) -> Self {
        ConnGate { limits, counts: Arc::new(Mutex::new(Counts::default())) }
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Admits a connection from `peer` (asking an older one to close if the
    /// server is full), or says why not.
    pub fn admit(&self, peer: IpAddr) -> Result<Permit, Refusal> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.per_peer.get(&peer).is_some_and(|q| q.len() >= self.limits.max_per_peer) {
            return Err(Refusal::PeerFull);
        }
        if c.total >= self.limits.max_total.saturating_mul(2) {
            return Err(Refusal::Full);
        }
        let live = c.per_peer.values().flatten().filter(|e| !e.close.is_cancelled()).count();
        if live >= self.limits.max_total && !c.evict_one() {
            return Err(Refusal::Full);
        }
        let id = c.next_id;
        c.next_id += 1;
        let close = CancellationToken::new();
        c.per_peer.entry(peer).or_default().push_back(Entry { id, close: close.clone() });
        c.total += 1;
        Ok(Permit { peer, id, close, counts: self.counts.clone() })
    }

    /// Connections open now (those asked to close included, until they do).
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Peers with a connection open now.
    pub fn peers(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).per_peer.len()
    }
}

/// Accepts the next connection on `listener`, pausing after each failure
/// ([`accept_backoff`]); `None` once `shutdown` is cancelled. `server` names
/// the listener in the log.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    shutdown: &CancellationToken,
    server: &str,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    let mut failures = 0u32;
    loop {
        let error = tokio::select! {
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some((stream, crate::listen::canonical(peer))),
                Err(e) => e,
            },
        };
        failures = failures.saturating_add(1);
        let pause = accept_backoff(failures);
        tracing::warn!(server, error = %error, ?pause, "accept failed; pausing");
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// The pause after the `failures`-th consecutive failed `accept` (1-based):
/// 10 ms doubling to 1 s. Accept fails when the process is out of file
/// descriptors (or memory); retrying at once only burns a core and floods
/// the log, and the condition clears only when connections close.
pub fn accept_backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(7);
    Duration::from_millis(10 << exp).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn each_peer_is_capped_and_places_come_back_on_drop() {
        let g = ConnGate::new(ConnLimits { max_total: 10, max_per_peer: 2 });
        let a1 = g.admit(ip(1)).unwrap();
        let _a2 = g.admit(ip(1)).unwrap();
        assert_eq!(g.admit(ip(1)).unwrap_err(), Refusal::PeerFull);
        let _b = g.admit(ip(2)).expect("another peer is not held back by the first");
        drop(a1);
        let _a3 = g.admit(ip(1)).expect("a closed connection frees its place");
        assert_eq!((g.open(), g.peers()), (3, 2));
    }

    #[test]
    fn at_the_total_cap_the_busiest_peers_oldest_connection_is_asked_to_close() {
        let g = ConnGate::new(ConnLimits { max_total: 3, max_per_peer: 3 });
        let flood: Vec<_> = (0..2).map(|_| g.admit(ip(1)).unwrap()).collect();
        let scraper = g.admit(ip(2)).unwrap();
        let probe = g.admit(ip(3)).expect("a new peer gets in when the server is full");
        assert!(flood[0].close_requested().is_cancelled(), "the busiest peer's oldest is asked to close");
        assert!(!flood[1].close_requested().is_cancelled() && !scraper.close_requested().is_cancelled());
        assert_eq!(g.open(), 4, "the one asked to close counts until it closes");
        drop(flood);
        drop(probe);
        assert_eq!((g.open(), g.peers()), (1, 1), "no entry is kept for a peer with nothing open");
    }

    #[test]
    fn what_the_gate_holds_is_bounded_whatever_the_peers_do() {
        let g = ConnGate::new(ConnLimits { max_total: 4, max_per_peer: 2 });
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..200u8 {
            match g.admit(ip(i)) {
                Ok(p) => held.push(p),
                Err(r) => {
                    assert_eq!(r, Refusal::Full);
                    refused += 1;
                }
            }
        }
        assert_eq!(g.open(), 8, "at most twice the cap, while those asked to close have not");
        assert_eq!(refused, 192);
        let live = held.iter().filter(|p| !p.close_requested().is_cancelled()).count();
        assert_eq!(live, 4);
        held.retain(|p| !p.close_requested().is_cancelled());
        assert_eq!(g.open(), 4);
        assert!(g.admit(ip(250)).is_ok(), "room again once the closing ones closed");
    }

    #[test]
    fn accept_backoff_grows_and_is_capped() {
        assert_eq!(accept_backoff(1), Duration::from_millis(10));
        assert_eq!(accept_backoff(2), Duration::from_millis(20));
        assert_eq!(accept_backoff(8), Duration::from_secs(1));
        assert_eq!(accept_backoff(u32::MAX), Duration::from_secs(1));
        assert!((1..40).all(|n| accept_backoff(n) <= accept_backoff(n + 1)));
    }
}
