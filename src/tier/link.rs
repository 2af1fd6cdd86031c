//! The link to Redis: the current connection, connecting, and the one
//! background task that reconnects with capped backoff, replays the queued
//! invalidations, listens for other instances' invalidations and pings an
//! idle Redis to notice an outage.

use super::cache::Shared;
use super::health::HealthState;
use super::invalidation::{self, PendingQueue, Push};
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, ErrorKind, RedisError};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// Keys per replay pipeline.
const REPLAY_BATCH: usize = 256;

/// A connection attempt's failure.
#[derive(Debug)]
pub(crate) struct ConnectError {
    /// Redis refused the credentials.
    pub(crate) auth: bool,
    /// A `rediss://` URL and the TLS handshake (or what followed it) failed.
    pub(crate) tls: bool,
    pub(crate) message: String,
}

/// A fresh connection and its subscription, not yet in use.
pub(crate) struct Connected {
    conn: MultiplexedConnection,
    stream: PubSubStream,
}

impl Connected {
    pub(crate) fn into_parts(self) -> (MultiplexedConnection, PubSubStream) {
        (self.conn, self.stream)
    }
}

/// What an operation needs to reach Redis, and what it calls when Redis fails.
pub(crate) struct Link {
    /// The connection in use and its epoch; `None` while down.
    conn: RwLock<Option<(u64, MultiplexedConnection)>>,
    pub(crate) health: HealthState,
    epoch: AtomicU64,
    /// Wakes the background task when an operation saw Redis fail.
    wake: Notify,
    pub(crate) pending: Mutex<PendingQueue>,
    task: Mutex<Option<AbortHandle>>,
}

impl Link {
    pub(crate) fn new(queue_capacity: usize) -> Self {
        Self {
            conn: RwLock::new(None),
            health: HealthState::new_down("not connected yet"),
            epoch: AtomicU64::new(0),
            wake: Notify::new(),
            pending: Mutex::new(PendingQueue::new(queue_capacity)),
            task: Mutex::new(None),
        }
    }

    /// The connection to use, or `None` while down (no connect attempt:
    /// callers never pay a connect timeout).
    pub(crate) fn conn(&self) -> Option<(u64, MultiplexedConnection)> {
        if !self.health.is_up() {
            return None;
        }
        self.conn.read().clone()
    }

    /// An operation on the connection of `epoch` failed: go down (once) and
    /// wake the background task to reconnect.
    pub(crate) fn fail(&self, epoch: u64, error: &str) {
        let mut conn = self.conn.write();
        if conn.as_ref().map(|(e, _)| *e) != Some(epoch) {
            return; // a stale connection; the current one is fine or already down
        }
        *conn = None;
        if self.health.set_down(error) {
            self.wake.notify_one();
        }
    }

    /// Queues `key` for deletion on reconnect; `None` if Redis came back up
    /// meanwhile (the caller should send it now).
    pub(crate) fn enqueue(&self, key: &str) -> Option<Push> {
        let mut q = self.pending.lock();
        if self.health.is_up() {
            return None;
        }
        Some(q.push(key))
    }

    pub(crate) fn set_task(&self, handle: AbortHandle) {
        *self.task.lock() = Some(handle);
    }

    /// Stops the background task (the last handle was dropped).
    pub(crate) fn shutdown(&self) {
        if let Some(h) = self.task.lock().take() {
            h.abort();
        }
    }
}

/// Whether `e` means the connection is unusable (as opposed to Redis
/// answering the command with an error).
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    if is_auth_error(e) {
        return true;
    }
    !matches!(
        e.kind(),
        ErrorKind::Server(_)
            | ErrorKind::Extension
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Parse
    )
}

fn is_auth_error(e: &RedisError) -> bool {
    if e.kind() == ErrorKind::AuthenticationFailed {
        return true;
    }
    let text = e.to_string();
    [
        "WRONGPASS",
        "NOAUTH",
        "invalid password",
        "invalid username-password",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// One connection attempt: a multiplexed connection (checked with `PING`)
/// and a subscription to the prefix's channel, all within the connect timeout.
pub(crate) async fn connect(shared: &Shared) -> Result<Connected, ConnectError> {
    let cfg = &shared.cfg;
    let attempt = async {
        let conn_cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.connect_timeout));
        let mut conn = cfg
            .client
            .get_multiplexed_async_connection_with_config(&conn_cfg)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        let mut pubsub = cfg.client.get_async_pubsub().await?;
        pubsub.subscribe(&cfg.channel).await?;
        Ok::<_, RedisError>(Connected {
            conn,
            stream: pubsub.into_on_message(),
        })
    };
    match timeout(cfg.connect_timeout, attempt).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            let auth = is_auth_error(&e);
            let tls = !auth && !e.is_connection_refusal() && tcp_but_not_tls(shared).await;
            Err(ConnectError {
                tls,
                auth,
                message: e.to_string(),
            })
        }
        Err(_) => Err(ConnectError {
            auth: false,
            tls: tcp_but_not_tls(shared).await,
            message: format!("connect timed out after {:?}", cfg.connect_timeout),
        }),
    }
}

/// For a `rediss://` URL whose connection failed: true if the port accepts
/// plain TCP, so the failure was the TLS handshake (a plain-text port, a
/// rejected certificate) rather than an unreachable server.
async fn tcp_but_not_tls(shared: &Shared) -> bool {
    if !shared.cfg.tls {
        return false;
    }
    let redis::ConnectionAddr::TcpTls { host, port, .. } =
        shared.cfg.client.get_connection_info().addr()
    else {
        return false;
    };
    let probe = tokio::net::TcpStream::connect((host.as_str(), *port));
    matches!(timeout(shared.cfg.connect_timeout, probe).await, Ok(Ok(_)))
}

/// Replays the queued invalidations on `conn`, then puts it in use and
/// marks the tier up. `fresh_start`: nothing can have been missed, keep the
/// local tier; otherwise it is cleared, as it may have missed invalidations.
pub(crate) async fn activate(
    shared: &Shared,
    mut conn: MultiplexedConnection,
    fresh_start: bool,
) -> Result<u64, String> {
    let link = &shared.link;
    if !fresh_start {
        shared.local.clear();
    }
    loop {
        let batch = {
            let q = link.pending.lock();
            if q.is_empty() {
                let epoch = link.epoch.fetch_add(1, Ordering::AcqRel) + 1;
                *link.conn.write() = Some((epoch, conn));
                link.health.set_up();
                return Ok(epoch);
            }
            q.peek(REPLAY_BATCH)
        };
        let mut pipe = redis::pipe();
        for key in &batch {
            pipe.cmd("DEL").arg(shared.remote_key(key)).ignore();
            pipe.cmd("PUBLISH")
                .arg(&shared.cfg.channel)
                .arg(invalidation::encode(shared.instance_id, key))
                .ignore();
        }
        match timeout(
            shared.cfg.connect_timeout,
            pipe.query_async::<()>(&mut conn),
        )
        .await
        {
            Ok(Ok(())) => {
                link.pending.lock().ack(batch.len());
                shared
                    .stats
                    .replayed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => return Err(format!("replaying queued deletes: {e}")),
            Err(_) => return Err("replaying queued deletes timed out".to_string()),
        }
    }
}

/// The background task: watch while up; reconnect (capped backoff),
/// replay and resubscribe while down. Runs until aborted.
pub(crate) async fn run(shared: Arc<Shared>, first: Option<(u64, PubSubStream)>) {
    let mut current = first;
    loop {
        if let Some((epoch, stream)) = current.take() {
            watch(&shared, epoch, stream).await;
        }
        current = Some(reconnect(&shared).await);
    }
}

/// Connects, retrying with capped exponential backoff until it works.
async fn reconnect(shared: &Shared) -> (u64, PubSubStream) {
    let cfg = &shared.cfg;
    let mut backoff = cfg.backoff_min;
    loop {
        let error = match connect(shared).await {
            Ok(Connected { conn, stream }) => match activate(shared, conn, false).await {
                Ok(epoch) => {
                    shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    return (epoch, stream);
                }
                Err(e) => e,
            },
            Err(e) => e.message,
        };
        shared.link.health.set_down(&error);
        sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

/// While up: applies other instances' invalidations, pings Redis when idle,
/// and returns when the subscription ends, a ping fails or an operation
/// reported a failure.
async fn watch(shared: &Shared, epoch: u64, mut stream: PubSubStream) {
    let link = &shared.link;
    let heartbeat = shared.cfg.heartbeat;
    let mut next_ping = Instant::now() + heartbeat;
    loop {
        let message = stream.next();
        let woken = pin!(link.wake.notified());
        let tick = pin!(sleep_until(next_ping));
        match select(message, select(woken, tick)).await {
            Either::Left((Some(msg), _)) => shared.apply_invalidation(msg.get_payload_bytes()),
            Either::Left((None, _)) => {
                link.fail(epoch, "subscription connection closed");
                return;
            }
            Either::Right((Either::Left(_), _)) => {
                if !link.health.is_up() {
                    return;
                }
            }
            Either::Right((Either::Right(_), _)) => {
                next_ping = Instant::now() + heartbeat;
                let Some((e, mut conn)) = link.conn() else {
                    return;
                };
                let ping = redis::cmd("PING");
                match timeout(shared.cfg.op_timeout, ping.query_async::<()>(&mut conn)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        link.fail(e, &err.to_string());
                        return;
                    }
                    Err(_) => {
                        link.fail(e, &timeout_message(shared.cfg.op_timeout));
                        return;
                    }
                }
            }
        }
        if !link.health.is_up() {
            return;
        }
    }
}

pub(crate) fn timeout_message(d: Duration) -> String {
    format!("Redis did not answer within {d:?}")
}
