//! A TCP relay in front of a server that can lose the server's answers: requests get through and are
//! acted on, but while answers are being lost the first byte back closes the client's connection, as
//! when an acknowledgement is lost on the network after the server has done the work.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct LossyRelay {
    pub addr: SocketAddr,
    lose: Arc<AtomicBool>,
    lost: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl LossyRelay {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (lose, lost) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (l, n) = (lose.clone(), lost.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, l.clone(), n.clone()));
            }
        });
        Ok(Self { addr, lose, lost, task })
    }

    /// From now on, answers are lost (true) or delivered (false).
    pub fn lose_answers(&self, on: bool) {
        self.lose.store(on, Ordering::SeqCst);
    }

    /// Connections whose answer was lost so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, lose: Arc<AtomicBool>, lost: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let forward = tokio::spawn(async move { tokio::io::copy(&mut client_rx, &mut server_tx).await });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match server_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if lose.load(Ordering::SeqCst) {
            lost.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if client_tx.write_all(buf.get(..n).unwrap_or_default()).await.is_err() {
            break;
        }
    }
    forward.abort();
    // Dropping both halves closes the client's connection.
}
