//! Opening a client's own connection to the passthrough backend: connect with a
//! deadline, then replay the session's state (credentials, protocol, database,
//! name) before the first forwarded command.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::session::HandshakeStep;
use crate::protocol::ReplyScanner;

/// Connects to `addr` within `timeout` and runs the handshake. The error is a
/// one-line reason for the client.
pub async fn connect(
    addr: String,
    timeout: Duration,
    handshake: BytesMut,
    steps: Vec<HandshakeStep>,
    max_depth: usize,
) -> Result<TcpStream, String> {
    let attempt = async {
        let mut stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        if steps.is_empty() {
            return Ok(stream);
        }
        stream
            .write_all(&handshake)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut scanner = ReplyScanner::new(max_depth);
        for step in &steps {
            let info = loop {
                match scanner.scan(&buf) {
                    Ok(Some(info)) => break info,
                    Ok(None) => {}
                    Err(e) => return Err(format!("{addr}: {e}")),
                }
                let n = stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| format!("{addr}: {e}"))?;
                if n == 0 {
                    return Err(format!("{addr} closed the connection during {}", step.what));
                }
            };
            let frame = buf.split_to(info.len);
            if step.fatal && frame.first() == Some(&b'-') {
                let text = String::from_utf8_lossy(&frame[1..]);
                return Err(format!(
                    "{} failed on {addr}: {}",
                    step.what,
                    text.trim_end()
                ));
            }
        }
        Ok(stream)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer from {addr} within {timeout:?}")),
    }
}
