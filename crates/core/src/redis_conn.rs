//! Redis connections, made one way for every service: each connection has a
//! connect timeout and a response timeout, so a Redis that is half-open
//! (accepts, never answers) fails callers quickly instead of hanging them.

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub},
    AsyncConnectionConfig, Client, RedisError,
};
use std::time::Duration;

/// Longest wait for a TCP/Unix connection to Redis to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the answer to one command. Nothing on the shared
/// connection blocks on the server side, so every answer is quick.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the first connection at start (with the manager's retries).
const START_TIMEOUT: Duration = Duration::from_secs(10);

fn timed_out(what: &'static str) -> RedisError {
    RedisError::from((redis::ErrorKind::IoError, what))
}

/// The shared, reconnecting connection of a service.
pub async fn connect(url: &str) -> Result<ConnectionManager, RedisError> {
    connect_within(url, START_TIMEOUT).await
}

async fn connect_within(url: &str, limit: Duration) -> Result<ConnectionManager, RedisError> {
    let client = Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    tokio::time::timeout(limit, client.get_connection_manager_with_config(config))
        .await
        .map_err(|_| timed_out("timed out connecting to Redis"))?
}

/// A connection of its own for blocking reads (`XREADGROUP … BLOCK`), which
/// would hold up every other command on the shared one. Its response timeout
/// is the longest block plus the usual bound.
pub async fn connect_blocking(
    url: &str,
    longest_block: Duration,
) -> Result<MultiplexedConnection, RedisError> {
    let client = Client::open(url)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(longest_block + RESPONSE_TIMEOUT);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// A pub/sub connection (subscriptions wait for messages by design, so only
/// opening it is bounded).
pub async fn pubsub(url: &str) -> Result<PubSub, RedisError> {
    let client = Client::open(url)?;
    tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| timed_out("timed out opening a Redis pub/sub connection"))?
}

/// `PING` for `/readyz`.
pub async fn ping(conn: &ConnectionManager) -> Result<(), String> {
    let mut conn = conn.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    match tokio::time::timeout(RESPONSE_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "Redis" that accepts connections and never answers (half-open).
    async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_silent_redis_fails_the_start_instead_of_hanging_it() {
        let (url, server) = silent_server().await;
        let limit = Duration::from_millis(300);
        let started = crate::clock::instant();
        let r = connect_within(&url, limit).await;
        assert!(r.is_err());
        assert!(started.elapsed() < limit + Duration::from_secs(1));
        server.abort();
    }

    #[tokio::test]
    async fn a_command_nobody_answers_times_out() {
        let (url, server) = silent_server().await;
        let started = crate::clock::instant();
        // Opening it may already wait for an answer (the client's hello).
        if let Ok(mut conn) = connect_blocking(&url, Duration::from_millis(100)).await {
            let r = redis::cmd("GET")
                .arg("k")
                .query_async::<Option<String>>(&mut conn)
                .await;
            assert!(r.is_err());
        }
        assert!(
            started.elapsed()
                < 2 * (RESPONSE_TIMEOUT + Duration::from_millis(100)) + Duration::from_secs(1)
        );
        server.abort();
    }
}
