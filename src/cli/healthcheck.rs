//! `healthcheck`: asks this host's HTTP API for `/health` and exits 0 only
//! on a 200, for container health checks (no curl in the image).

use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Settings;

pub async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let address = format!("127.0.0.1:{}", settings.http.port);
    let check = async {
        let mut stream = TcpStream::connect(&address).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(true)) => Ok(ExitCode::SUCCESS),
        Ok(Ok(false)) => {
            eprintln!("{address}/health did not answer 200");
            Ok(ExitCode::FAILURE)
        }
        Ok(Err(err)) => {
            eprintln!("{address}/health: {err}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            eprintln!("{address}/health did not answer within 3 s");
            Ok(ExitCode::FAILURE)
        }
    }
}
