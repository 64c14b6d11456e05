//! A fault-injecting TCP proxy. Bytes pass untouched; the test can cut every
//! open connection at once, refuse new ones (the network is down), stall
//! every connection (bytes are held, nothing is closed: a half-open peer),
//! or — in front of web — refuse only WebSocket handshakes while pages still
//! load (the chat socket cannot get through, so messages wait in the
//! outbox). [`FaultProxy::start`] sits between a browser and web (an HTTP
//! origin); [`FaultProxy::tcp`] in front of any TCP server, such as Redis.

use std::sync::Arc;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// What the proxy lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Everything.
    Up,
    /// HTTP, but no WebSocket handshake (the socket cannot connect).
    NoSockets,
    /// Nothing: new connections are closed at once.
    Down,
    /// Connections open and stay open, but no byte moves either way until
    /// the network is `Up` again (held bytes are delivered then).
    Stalled,
}

struct Shared {
    upstream: String,
    /// Parse the HTTP request head (to tell WebSocket handshakes apart).
    http: bool,
    network: watch::Sender<Network>,
    /// Bumped by `cut`: every connection opened before ends.
    cuts: watch::Sender<u64>,
}

#[derive(Clone)]
pub struct FaultProxy {
    /// The proxy's own origin (`http://127.0.0.1:<port>`): open pages here.
    pub url: String,
    /// The proxy's address (`127.0.0.1:<port>`).
    pub addr: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        Self::listen(upstream.trim_start_matches("http://"), true).await
    }

    /// Proxy raw TCP to `upstream` (`host:port`, or a `scheme://host:port`
    /// URL such as a Redis URL): connect clients to `addr`.
    pub async fn tcp(upstream: &str) -> Self {
        let host_port = upstream.split("://").last().unwrap_or(upstream);
        Self::listen(host_port, false).await
    }

    async fn listen(upstream: &str, http: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http,
            network: watch::channel(Network::Up).0,
            cuts: watch::channel(0).0,
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let _ = conn.set_nodelay(true);
                tokio::spawn(relay(conn, s.clone()));
            }
        });
        Self {
            url: format!("http://{addr}"),
            addr,
            shared,
        }
    }

    /// Let through what `network` says from now on (open connections stay).
    pub fn set(&self, network: Network) {
        self.shared.network.send_replace(network);
    }

    /// Drop every open connection at once, mid-frame if need be.
    pub fn cut(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }
}

fn network(s: &Shared) -> Network {
    *s.network.borrow()
}

async fn relay(mut client: TcpStream, s: Arc<Shared>) {
    let mut cut = s.cuts.subscribe();
    if network(&s) == Network::Down {
        return;
    }
    let mut head = Vec::new();
    if s.http {
        // The request head says whether this is a WebSocket handshake.
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match client.read(&mut buf).await {
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
    }
    let Ok(mut server) = TcpStream::connect(&s.upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    if server.write_all(&head).await.is_err() {
        return;
    }
    let (cr, cw) = client.split();
    let (sr, sw) = server.split();
    tokio::select! {
        _ = pump(cr, sw, s.network.subscribe()) => {}
        _ = pump(sr, cw, s.network.subscribe()) => {}
        _ = cut.changed() => {}
    }
}

/// Copy `from` to `to`, holding the bytes while the network is stalled.
async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut network: watch::Receiver<Network>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if network.wait_for(|n| *n != Network::Stalled).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
