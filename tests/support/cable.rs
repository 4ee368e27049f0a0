//! A TCP proxy on loopback for tests of what happens when a connection
//! goes away: between the host and its database, or between a browser and
//! the host.

/// A loopback TCP proxy that a test can cut and restore, as a network
/// partition, a database restart or a lost mobile connection would.
pub struct Cable {
    /// Where clients connect.
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bumped on every cut: copies of an older generation stop.
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Cleared while stalled: bytes are taken in and held, not passed on.
    #[allow(dead_code)]
    flowing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Pass what `from` sends on to `to`, holding each chunk while the cable
/// is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    flowing: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        while !flowing.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Cable {
    /// A proxy to `target` on loopback, passing traffic.
    pub async fn to(target: u16) -> Cable {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let flowing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (is_up, current, flows) = (up.clone(), generation.clone(), flowing.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                // The generation first: a cut between the two reads then
                // still ends this connection.
                let born = current.load(Ordering::SeqCst);
                if !is_up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let (current, flows) = (current.clone(), flows.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let (read_in, write_in) = inbound.into_split();
                    let (read_out, write_out) = outbound.into_split();
                    let copy = async {
                        tokio::join!(
                            pump(read_in, write_out, flows.clone()),
                            pump(read_out, write_in, flows),
                        )
                    };
                    let cut = async {
                        while current.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Cable {
            port,
            up,
            generation,
            flowing,
        }
    }

    /// Keep every connection open but pass nothing either way, as a
    /// database that hangs or a partition that drops packets silently
    /// would: what is sent waits.
    #[allow(dead_code)]
    pub fn stall(&self) {
        self.flowing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Pass what waited, and everything after it, again.
    #[allow(dead_code)]
    pub fn resume(&self) {
        self.flowing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Close every connection through it and refuse new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Pass new connections again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
