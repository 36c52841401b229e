//! Binding the TCP listeners every component serves on (the admin port, the
//! authproxy's HTTPS port).
//!
//! The shipped address is `[::]:PORT`: one socket that takes IPv6 and IPv4
//! connections (IPv4 ones arrive as IPv4-mapped IPv6 addresses, which
//! [`canonical`] turns back into plain IPv4, so logs and per-peer limits see
//! `10.0.0.7`, never `::ffff:10.0.0.7`). The socket says so itself
//! (`IPV6_V6ONLY` off), whatever the host's `net.ipv6.bindv6only` default.
//! On a host whose kernel has IPv6 switched off, `[::]` falls back to
//! `0.0.0.0` with a warning, so the same manifest runs on IPv4-only,
//! dual-stack and IPv6-only clusters.
//!
//! This module does not choose addresses (flags do) and does not accept
//! connections ([`crate::conngate::accept`] does).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Pending connections the kernel queues before `accept` (as tokio's default).
const BACKLOG: i32 = 1024;

/// Binds `addr` for serving; the IPv6 unspecified address (`[::]`) binds
/// both stacks. Must run inside a tokio runtime.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = match addr {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => match bind_socket(addr, Some(false)) {
            Ok(l) => l,
            Err(e) if !matches!(e.kind(), io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied) => {
                let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
                tracing::warn!(%addr, error = %e, fallback = %v4, "IPv6 is not available here; serving on IPv4 only");
                bind_socket(v4, None).map_err(|e4| {
                    io::Error::new(e4.kind(), format!("binding {addr}: {e}; binding {v4} instead: {e4}"))
                })?
            }
            Err(e) => return Err(e),
        },
        _ => bind_socket(addr, None)?,
    };
    TcpListener::from_std(listener)
}

fn bind_socket(addr: SocketAddr, only_v6: Option<bool>) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(only) = only_v6 {
        socket.set_only_v6(only)?;
    }
    // A restarted process rebinds at once, whatever its last connections' TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// `peer` as the address it really is: an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, how a dual-stack socket reports an IPv4 peer) becomes
/// the IPv4 address; anything else is unchanged.
pub fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// `[::]:port`: what the shipped defaults bind.
pub const fn any(port: u16) -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    #[test]
    fn an_ipv4_mapped_peer_reads_as_ipv4_and_others_are_unchanged() {
        let mapped: SocketAddr = "[::ffff:127.0.0.9]:4000".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.9:4000".parse::<SocketAddr>().unwrap());
        for same in ["[::1]:4000", "[fd00::2]:1", "10.0.0.7:8080"] {
            let a: SocketAddr = same.parse().unwrap();
            assert_eq!(canonical(a), a, "{same}");
        }
    }

    /// One socket on `[::]` takes connections to `[::1]` and to `127.0.0.1`,
    /// and reports the IPv4 peer as IPv4.
    #[tokio::test]
    async fn the_unspecified_ipv6_address_serves_both_stacks() {
        let listener = bind(any(0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        for (dial, seen) in [
            (SocketAddr::from((Ipv6Addr::LOCALHOST, port)), IpAddr::V6(Ipv6Addr::LOCALHOST)),
            (SocketAddr::from((Ipv4Addr::LOCALHOST, port)), IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ] {
            let mut client = TcpStream::connect(dial).await.unwrap_or_else(|e| panic!("connect {dial}: {e}"));
            let (mut served, peer) = listener.accept().await.unwrap();
            assert_eq!(canonical(peer).ip(), seen, "{dial}");
            client.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            served.read_exact(&mut b).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error_not_a_fallback() {
        let held = bind(any(0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let err = bind(any(port)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }
}
