//! `TCP_NODELAY` on the connections to Postgres.
//!
//! sqlx 0.9.0 no longer sets `TCP_NODELAY` on its sockets (sqlx issue
//! #4335; fixed upstream by pull request #4336, in no release yet). A
//! statement larger than the socket's send buffer then leaves in two
//! writes; the second waits (Nagle's algorithm) for the server to ACK the
//! first, and the server, holding half a message, delays that ACK: about
//! 40 ms on Linux. Measured here with `bench --rate 10000 --chunk 50`
//! (batches of ~45 orders): p50 / p99 50 / 87 ms over TCP, 4.4 / 14.7 ms
//! over a Unix socket.
//!
//! sqlx does not hand out its socket, so each new pooled connection sets
//! the option on this process's TCP sockets whose peer is Postgres' port
//! and that lack it (the one just made among them).

use std::os::fd::{BorrowedFd, RawFd};

use socket2::{SockRef, Type};

/// Sets `TCP_NODELAY` on every TCP socket of this process connected to
/// `port` that does not have it yet; returns how many it set.
pub fn set_on_sockets_to(port: u16) -> usize {
    let descriptors = match std::fs::read_dir("/proc/self/fd") {
        Ok(descriptors) => descriptors,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list this process's sockets; Postgres connections keep Nagle's algorithm (up to ~40 ms per large statement)");
            return 0;
        }
    };
    descriptors
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .filter_map(|entry| entry.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|fd| set_if_peer(*fd, port))
        .count()
}

/// Sets `TCP_NODELAY` on descriptor `fd` if it is a TCP socket connected
/// to `port` without it.
#[allow(unsafe_code)]
fn set_if_peer(fd: RawFd, port: u16) -> bool {
    // SAFETY: the descriptor is borrowed only for the socket option calls
    // below, which the kernel refuses (ENOTSOCK, EBADF) on anything but a
    // socket. Were it closed and its number reused by another thread in
    // between, they would at most set TCP_NODELAY on another TCP socket of
    // this process connected to Postgres' port, which is what is wanted.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = SockRef::from(&fd);
    let to_postgres = matches!(socket.r#type(), Ok(Type::STREAM))
        && socket
            .peer_addr()
            .ok()
            .and_then(|peer| peer.as_socket())
            .is_some_and(|peer| peer.port() == port);
    to_postgres && socket.tcp_nodelay().is_ok_and(|on| !on) && socket.set_tcp_nodelay(true).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_to_the_port_gets_tcp_nodelay_and_others_do_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let to_port = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let elsewhere = tokio::net::TcpStream::connect(other.local_addr().unwrap())
            .await
            .unwrap();
        assert!(!to_port.nodelay().unwrap());

        assert!(set_on_sockets_to(port) >= 1);
        assert!(to_port.nodelay().unwrap());
        assert!(!elsewhere.nodelay().unwrap());
        assert_eq!(set_on_sockets_to(port), 0, "set once");
    }
}
