//! A fault-injecting TCP proxy between the browser and web: what a flaky
//! network looks like from the page. Bytes pass untouched; the test can cut
//! every open connection at once, refuse new ones (the network is down), or
//! refuse only WebSocket handshakes while pages still load (the chat socket
//! cannot get through, so messages wait in the outbox). [`FaultProxy::tcp`]
//! is the same proxy for any TCP service (Redis, in front of a backend):
//! bytes are not looked at, `cut` and `Network::Down` work alike.

use std::sync::{
    atomic::{AtomicU8, Ordering},
    Arc,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// What the proxy lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Everything.
    Up = 0,
    /// HTTP, but no WebSocket handshake (the socket cannot connect).
    NoSockets = 1,
    /// Nothing: new connections are closed at once.
    Down = 2,
}

struct Shared {
    upstream: String,
    /// Read the HTTP request head (to tell WebSocket handshakes apart).
    http: bool,
    network: AtomicU8,
    /// Bumped by `cut`: every connection opened before ends.
    cuts: watch::Sender<u64>,
}

#[derive(Clone)]
pub struct FaultProxy {
    /// The proxy's own origin (`http://127.0.0.1:<port>`): open pages here.
    pub url: String,
    /// Its address (`127.0.0.1:<port>`), for a non-HTTP client.
    pub addr: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        Self::start_with(upstream.trim_start_matches("http://"), true).await
    }

    /// Proxy raw TCP to `upstream` (`host:port`, or a `scheme://host:port`
    /// URL such as a Redis URL): connect clients to `addr`.
    pub async fn tcp(upstream: &str) -> Self {
        let host_port = upstream.split("://").last().unwrap_or(upstream);
        Self::start_with(host_port, false).await
    }

    async fn start_with(upstream: &str, http: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            http,
            upstream: upstream.trim_end_matches('/').to_string(),
            network: AtomicU8::new(Network::Up as u8),
            cuts: watch::channel(0).0,
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let _ = conn.set_nodelay(true);
                tokio::spawn(relay(conn, s.clone()));
            }
        });
        Self { url, addr, shared }
    }

    /// Let through what `network` says from now on (open connections stay).
    pub fn set(&self, network: Network) {
        self.shared.network.store(network as u8, Ordering::SeqCst);
    }

    /// Drop every open connection at once, mid-frame if need be.
    pub fn cut(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }
}

fn network(s: &Shared) -> Network {
    match s.network.load(Ordering::SeqCst) {
        0 => Network::Up,
        1 => Network::NoSockets,
        _ => Network::Down,
    }
}

async fn relay(mut browser: TcpStream, s: Arc<Shared>) {
    let mut cut = s.cuts.subscribe();
    if network(&s) == Network::Down {
        return;
    }
    // The request head says whether this is a WebSocket handshake.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while s.http && !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match browser.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let is_socket = String::from_utf8_lossy(&head)
        .to_ascii_lowercase()
        .contains("upgrade: websocket");
    match network(&s) {
        Network::Down => return,
        Network::NoSockets if is_socket => return,
        _ => {}
    }
    let Ok(mut web) = TcpStream::connect(&s.upstream).await else {
        return;
    };
    let _ = web.set_nodelay(true);
    if web.write_all(&head).await.is_err() {
        return;
    }
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut browser, &mut web) => {}
        _ = cut.changed() => {}
    }
}
