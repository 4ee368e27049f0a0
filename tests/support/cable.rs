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
}

impl Cable {
    /// A proxy to `target` on loopback, passing traffic.
    pub async fn to(target: u16) -> Cable {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (is_up, current) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                // The generation first: a cut between the two reads then
                // still ends this connection.
                let born = current.load(Ordering::SeqCst);
                if !is_up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let current = current.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
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
        }
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
