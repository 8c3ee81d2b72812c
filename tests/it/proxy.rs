//! A TCP proxy the tests put between the service and a dependency, to cut
//! the connection (refuse new ones, reset open ones), to stall it (accept
//! and hold, forward nothing), to black-hole it (a partition: nothing is
//! forwarded or closed, and the connections it caught stay dead after it
//! heals, as behind a firewall that lost their state), to sever it (reset
//! the clients while the server sides stay open), and to restore it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Cut,
    Stall,
    Blackhole,
    Sever,
}

pub struct Proxy {
    pub addr: SocketAddr,
    /// Where new connections go.
    upstream: Arc<Mutex<String>>,
    mode: watch::Sender<Mode>,
    /// Fires to close the server sides a sever left open.
    release: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, watching) = watch::channel(Mode::Pass);
        let (release, released) = watch::channel(0);
        let upstream = Arc::new(Mutex::new(upstream.to_owned()));
        let target = upstream.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = target.lock().expect("the upstream").clone();
                let link = Link {
                    upstream,
                    mode: watching.clone(),
                    released: released.clone(),
                };
                tokio::spawn(link.serve(client));
            }
        });
        Proxy {
            addr,
            upstream,
            mode,
            release,
            task,
        }
    }

    /// Sends new connections to `upstream` from now on (a switchover
    /// behind one address); open ones stay where they are.
    pub fn retarget(&self, upstream: &str) {
        *self.upstream.lock().expect("the upstream") = upstream.to_owned();
    }

    /// Resets every open connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Keeps every connection open but forwards nothing, either way.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Forwards nothing, either way, and closes nothing: every connection
    /// open now or opened until [`restore`](Self::restore) stays silent
    /// until [`release_held`](Self::release_held); only new connections
    /// work after the restore.
    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    /// Resets the client side of every open connection and refuses new
    /// ones; the server sides stay open and silent until
    /// [`release_held`](Self::release_held), or two minutes.
    pub fn sever(&self) {
        self.mode.send_replace(Mode::Sever);
    }

    /// Resets the connections that severs and black holes hold.
    pub fn release_held(&self) {
        self.release.send_modify(|n| *n += 1);
    }

    /// Forwards new connections again; those held by a stall are closed.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Pass);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.release_held();
        self.task.abort();
    }
}

/// The longest a connection is held, whatever the test does.
const LINGER_LIMIT: Duration = Duration::from_secs(120);

/// One proxied connection.
struct Link {
    upstream: String,
    mode: watch::Receiver<Mode>,
    released: watch::Receiver<u64>,
}

impl Link {
    async fn serve(mut self, client: TcpStream) {
        let current = *self.mode.borrow_and_update();
        match current {
            Mode::Pass => {}
            Mode::Cut | Mode::Sever => return reset(client),
            Mode::Stall => {
                let _ = self.mode.wait_for(|m| *m != Mode::Stall).await;
                return reset(client);
            }
            Mode::Blackhole => {
                self.held().await;
                return reset(client);
            }
        }
        let Ok(server) = TcpStream::connect(&self.upstream).await else {
            return reset(client);
        };
        self.forward(client, server).await;
    }

    /// Copies both ways, obeying the mode, until either side is done.
    async fn forward(&mut self, mut client: TcpStream, mut server: TcpStream) {
        let (mut up, mut down) = ([0_u8; 16 * 1024], [0_u8; 16 * 1024]);
        loop {
            let current = *self.mode.borrow_and_update();
            match current {
                Mode::Pass => {}
                Mode::Cut => break,
                Mode::Stall => {
                    let _ = self.mode.wait_for(|m| *m != Mode::Stall).await;
                    break;
                }
                Mode::Blackhole => {
                    self.held().await;
                    break;
                }
                Mode::Sever => {
                    reset(client);
                    // The server never hears of it, as behind a middlebox.
                    self.held().await;
                    return reset(server);
                }
            }
            tokio::select! {
                read = client.read(&mut up) => match read {
                    Ok(n) if n > 0 => {
                        if server.write_all(&up[..n]).await.is_err() { break; }
                    }
                    _ => break,
                },
                read = server.read(&mut down) => match read {
                    Ok(n) if n > 0 => {
                        if client.write_all(&down[..n]).await.is_err() { break; }
                    }
                    _ => break,
                },
                _ = self.mode.changed() => {}
            }
        }
        reset(client);
        reset(server);
    }
}

impl Link {
    /// Waits until held connections are let go.
    async fn held(&mut self) {
        let _ = tokio::time::timeout(LINGER_LIMIT, self.released.changed()).await;
    }
}

/// Closes with a TCP reset rather than an orderly shutdown.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
