//! A per-agent loopback TCP proxy between an agent and what it talks to,
//! that a test can cut and restore: the harness's network partition. Cutting
//! closes every open connection and refuses new ones (accepted and closed at
//! once), so the agent sees exactly what a partitioned node sees.
//!
//! Each link can connect onwards from its own loopback address (any of
//! 127.0.0.0/8), so the server behind it sees one peer per node, as on a
//! real cluster where every agent pod has its own address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// See the module documentation.
#[derive(Debug)]
pub struct NetProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl NetProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<NetProxy> {
        NetProxy::start_from(target, None).await
    }

    /// Like [`NetProxy::start`], connecting to `target` from `source`.
    pub async fn start_from(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<NetProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, gen_rx) = watch::channel(0u64);
        let cut2 = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if cut2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut gen_rx = gen_rx.clone();
                let born = *gen_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(outbound) = connect_from(source, target).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    // Each direction's end (FIN) goes through, as on a
                    // network: a server that closes is seen closing.
                    let up = async {
                        let _ = tokio::io::copy(&mut ri, &mut wo).await;
                        let _ = wo.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut ro, &mut wi).await;
                        let _ = wi.shutdown().await;
                    };
                    tokio::select! {
                        _ = async { tokio::join!(up, down) } => {}
                        _ = gen_rx.wait_for(|g| *g != born) => {}
                    }
                });
            }
        });
        Ok(NetProxy { addr, cut, generation, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the link: open connections close, new ones are refused.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

async fn connect_from(source: Option<IpAddr>, target: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(source) = source else { return TcpStream::connect(target).await };
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// The loopback address standing for the `i`-th node (127.1.0.1 onwards;
/// distinct for the first 16 million).
pub fn node_address(i: usize) -> IpAddr {
    let n = u32::try_from(i).unwrap_or(u32::MAX).min(0x00fe_ffff) + 0x0001_0001;
    IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 | n))
}

impl Drop for NetProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
