//! A small recording HTTP proxy for tests of proxy support (spec §2.3, §15.11): it tunnels
//! `CONNECT host:port` and forwards absolute-form plain-HTTP requests, remembering each request line
//! and its `Proxy-Authorization` header. Loopback only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// `CONNECT 127.0.0.1:443` or `GET http://127.0.0.1:80/path`.
    pub request_line: String,
    pub proxy_authorization: Option<String>,
}

/// A running proxy.
pub struct RecordingProxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<ProxiedRequest>>>,
    stop: CancellationToken,
}

impl RecordingProxy {
    /// Starts a proxy on 127.0.0.1. With `required_auth` (the full header value, e.g.
    /// `Basic dTpw`), requests without it get `407`.
    pub async fn start(required_auth: Option<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (s2, stop2) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop2.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((conn, _)) = accepted else { continue };
                        let (seen, auth) = (s2.clone(), required_auth.clone());
                        tokio::spawn(async move { let _ = handle(conn, seen, auth).await; });
                    }
                }
            }
        });
        Ok(Self { addr, seen, stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(
    conn: TcpStream,
    seen: Arc<Mutex<Vec<ProxiedRequest>>>,
    required: Option<String>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let request_line = request_line.trim_end().to_owned();
    let mut headers = Vec::new();
    let mut auth = None;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            match name.as_str() {
                "proxy-authorization" => {
                    auth = Some(value);
                    continue;
                }
                "content-length" => content_length = value.parse().unwrap_or(0),
                "proxy-connection" => continue,
                _ => {}
            }
        }
        headers.push(line);
    }
    if let Ok(mut s) = seen.lock() {
        s.push(ProxiedRequest {
            request_line: request_line.clone(),
            proxy_authorization: auth.clone(),
        });
    }
    let mut conn = reader;
    if required.is_some() && auth != required {
        conn.get_mut()
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"rarc\"\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if method.eq_ignore_ascii_case("CONNECT") {
        let mut upstream = TcpStream::connect(loopback_only(target)?).await?;
        conn.get_mut()
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        let buffered = conn.buffer().to_vec();
        upstream.write_all(&buffered).await?;
        let mut client = conn.into_inner();
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    // Absolute-form request: forward once, with `Connection: close`.
    let url = url::Url::parse(target).map_err(std::io::Error::other)?;
    let host = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    let mut upstream = TcpStream::connect(loopback_only(&host)?).await?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let version = parts.next().unwrap_or("HTTP/1.1");
    let mut head = format!("{method} {path} {version}\r\n");
    for h in headers
        .iter()
        .filter(|h| !h.to_ascii_lowercase().starts_with("connection:"))
    {
        head.push_str(h);
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes()).await?;
    let mut body = vec![0u8; content_length];
    conn.read_exact(&mut body).await?;
    upstream.write_all(&body).await?;
    let mut client = conn.into_inner();
    tokio::io::copy(&mut upstream, &mut client).await?;
    client.shutdown().await?;
    Ok(())
}

/// The proxy only ever connects to loopback: whatever host a request names (tests use names such as
/// `rarc-sim.test` so that clients do not bypass the proxy for loopback), it dials 127.0.0.1 at that port.
fn loopback_only(host_port: &str) -> std::io::Result<SocketAddr> {
    let port = host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("proxy target {host_port} has no port")))?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}
