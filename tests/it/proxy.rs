//! A TCP proxy the tests put between the service and a dependency, to cut
//! the connection (refuse new ones, reset open ones), to stall it (accept
//! and hold, forward nothing), and to restore it.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Cut,
    Stall,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, watching) = watch::channel(Mode::Pass);
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream.clone(), watching.clone()));
            }
        });
        Proxy { addr, mode, task }
    }

    /// Resets every open connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Keeps every connection open but forwards nothing, either way.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Forwards again; connections held by a stall are closed.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Pass);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow();
    match current {
        Mode::Cut => return reset(client),
        Mode::Stall => {
            let _ = mode.wait_for(|m| *m != Mode::Stall).await;
            return reset(client);
        }
        Mode::Pass => {}
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return reset(client);
    };
    let interrupted = tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => None,
        changed = mode.wait_for(|m| *m != Mode::Pass) => changed.ok().map(|m| *m),
    };
    if interrupted == Some(Mode::Stall) {
        // Hold both ends silent until the stall ends.
        let _ = mode.wait_for(|m| *m != Mode::Stall).await;
    }
    reset(client);
    reset(server);
}

/// Closes with a TCP reset rather than an orderly shutdown.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
