//! The one background task: connects to Redis, activates a connection
//! (replays the queued invalidations, then clears, then marks the tier up),
//! listens for other instances' invalidations, proves the subscription live
//! by publishing a heartbeat on its own channel that must come back within
//! the liveness bound, and reconnects with capped backoff. It stops when the
//! last handle goes.

use super::health::{DownReason, Verdict};
use super::invalidation;
use super::link::{self, is_auth_error, ClientId};
use super::shared::Shared;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, RedisError};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
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

/// A fresh data connection, its Redis client id (see [`fence`]) and its
/// subscription, not yet in use.
pub(crate) struct Connected {
    conn: MultiplexedConnection,
    client: Option<ClientId>,
    stream: PubSubStream,
}

impl Connected {
    pub(crate) fn into_parts(self) -> (MultiplexedConnection, Option<ClientId>, PubSubStream) {
        (self.conn, self.client, self.stream)
    }
}

/// Stops the background task when the last `TieredCache` handle goes.
pub(crate) struct TaskGuard(pub(crate) Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.link.shutdown();
    }
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
        // A server without `CLIENT ID` or `INFO` (or an ACL without them)
        // leaves the connection unfenced: see `fence`.
        let client = client_id(&mut conn).await;
        let mut pubsub = cfg.client.get_async_pubsub().await?;
        pubsub.subscribe(&cfg.channel).await?;
        Ok::<_, RedisError>(Connected {
            conn,
            client,
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

/// Sends one batch of queued keys (a `DEL` and an invalidation each) on
/// `conn` within `bound`; on success removes them from the queue and drops
/// their local copies (the write that queued them is superseded by the
/// delete). `Ok(false)` when the queue was empty.
async fn replay_batch(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    bound: Duration,
) -> Result<bool, RedisFailure> {
    let batch = shared.link.pending.lock().peek(REPLAY_BATCH);
    if batch.is_empty() {
        return Ok(false);
    }
    let mut pipe = redis::pipe();
    for key in &batch {
        pipe.cmd("DEL").arg(shared.remote_key(key)).ignore();
        pipe.cmd("PUBLISH")
            .arg(&shared.cfg.channel)
            .arg(invalidation::encode(shared.instance_id, key))
            .ignore();
    }
    match timeout(bound, pipe.query_async::<()>(conn)).await {
        Ok(Err(e)) if e.is_timeout() => Err(RedisFailure::TimedOut),
        Ok(Ok(())) => {
            shared.link.pending.lock().ack(batch.len());
            for key in &batch {
                shared.drop_local(key);
            }
            shared
                .stats
                .replayed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            Ok(true)
        }
        Ok(Err(e)) => Err(RedisFailure::Error(format!(
            "replaying queued deletes: {e}"
        ))),
        Err(_) => Err(RedisFailure::TimedOut),
    }
}

/// A round trip that did not work.
pub(crate) enum RedisFailure {
    /// An error (connection or reply).
    Error(String),
    /// No answer within the bound.
    TimedOut,
}

/// Replays the queued invalidations on `conn`, then (under the queue's
/// lock, so no write can slip in between) clears the local tier unless
/// `fresh_start`, puts `conn` in use and marks the tier up. A write queued
/// during the replay is replayed too; one that raced the clear is dropped
/// from the local tier by its generation check. So no value deleted in
/// Redis by the replay stays in the local tier.
pub(crate) async fn activate(
    shared: &Shared,
    mut conn: MultiplexedConnection,
    client: Option<ClientId>,
    fresh_start: bool,
) -> Result<u64, String> {
    let link = &shared.link;
    fence(shared, &mut conn, client.as_ref()).await?;
    loop {
        {
            let q = link.pending.lock();
            if q.is_empty() {
                link.fresh_as_of.store(link.now_ns(), Ordering::Release);
                if !fresh_start {
                    shared.clear_local();
                }
                link.trust();
                *link.data_client.lock() = client;
                let epoch = link.epoch.fetch_add(1, Ordering::AcqRel) + 1;
                *link.conn.write() = Some((epoch, conn));
                link.health.set_up();
                return Ok(epoch);
            }
        }
        match replay_batch(shared, &mut conn, shared.cfg.connect_timeout).await {
            Ok(_) => {}
            Err(RedisFailure::Error(e)) => return Err(e),
            Err(RedisFailure::TimedOut) => return Err("replaying queued deletes timed out".into()),
        }
    }
}

/// Closes the data connection used before this one, in Redis, before
/// anything is replayed (only on the same run of the server: a restarted
/// server hands the same ids out again, to other clients): a write sent on it that timed out (refused to its
/// caller, its key queued as a delete) may still be on its way, held by a
/// partition that then heals, and would land after the replayed delete
/// and overwrite later writes. Redis runs `CLIENT KILL` in order with
/// every command it has read, and drops the killed client's unread input
/// and whatever arrives on its socket after. Not fenced: a server (or an
/// ACL) without `CLIENT ID` or `CLIENT KILL`; a connection the server
/// already closed needs none.
async fn fence(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    current: Option<&ClientId>,
) -> Result<(), String> {
    let Some(old) = shared.link.data_client.lock().clone() else {
        return Ok(());
    };
    // The server restarted (or will not say): the old connection died with
    // the old server, and its id may now be another client's.
    let fenced = if current.is_none_or(|c| c.run != old.run) {
        Ok(())
    } else {
        let mut kill = redis::cmd("CLIENT");
        kill.arg("KILL").arg("ID").arg(old.id);
        match timeout(shared.cfg.connect_timeout, kill.query_async::<i64>(conn)).await {
            Ok(Ok(_)) => Ok(()),
            // No such client (closed already), or not allowed: nothing to do.
            Ok(Err(e)) if !link::is_connection_error(&e) => Ok(()),
            Ok(Err(e)) => Err(format!("closing the previous connection: {e}")),
            Err(_) => Err("closing the previous connection timed out".into()),
        }
    };
    // Kept for the next attempt only if this one could not reach Redis.
    if fenced.is_ok() {
        *shared.link.data_client.lock() = None;
    }
    fenced
}

/// The connection's [`ClientId`], if the server tells it.
async fn client_id(conn: &mut MultiplexedConnection) -> Option<ClientId> {
    let id = redis::cmd("CLIENT")
        .arg("ID")
        .query_async::<i64>(conn)
        .await
        .ok()?;
    let info = redis::cmd("INFO")
        .arg("server")
        .query_async::<String>(conn)
        .await
        .ok()?;
    let run = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))?
        .trim()
        .to_owned();
    Some(ClientId { run, id })
}

/// The background task: watch while up; reconnect (capped backoff),
/// replay and resubscribe while down. Runs until aborted.
pub(crate) async fn run(shared: Arc<Shared>, first: Option<(u64, PubSubStream)>) {
    let mut current = first;
    loop {
        if let Some((epoch, stream)) = current.take() {
            watch(&shared, epoch, stream).await;
            if shared.link.distrusted() {
                // Down while the channel was unproven past the bound (the
                // give-up below, or a call's timeouts that beat it to it):
                // the entries, refused since, go; what degraded-mode writes
                // put in the local tier from now on may be served.
                shared.clear_local();
                shared.link.trust();
            }
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
            Ok(Connected {
                conn,
                client,
                stream,
            }) => match activate(shared, conn, client, false).await {
                Ok(epoch) => {
                    shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    return (epoch, stream);
                }
                Err(e) => e,
            },
            Err(e) => e.message,
        };
        shared
            .link
            .health
            .set_down(DownReason::ReconnectFailed, &error);
        sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

/// While up: applies invalidations, publishes a heartbeat every
/// `heartbeat` (at once after a timed-out call), replays writes whose
/// outcome was unknown, and returns when the subscription ends or goes
/// silent past the liveness bound, or the tier went down.
async fn watch(shared: &Shared, epoch: u64, mut stream: PubSubStream) {
    let link = &shared.link;
    let cfg = &shared.cfg;
    let mut next_beat = Instant::now();
    loop {
        let give_up = cfg.liveness_bound * 2;
        let lapse_in = give_up.saturating_sub(link.unproven_for());
        let wake_at = next_beat.min(Instant::now() + lapse_in);
        let message = stream.next();
        let woken = pin!(link.wake.notified());
        let tick = pin!(sleep_until(wake_at));
        match select(message, select(woken, tick)).await {
            Either::Left((Some(msg), _)) => shared.apply_message(msg.get_payload_bytes()),
            Either::Left((None, _)) => {
                subscription_closed(shared, epoch).await;
                return;
            }
            Either::Right((Either::Left(_), _)) => next_beat = Instant::now(),
            Either::Right((Either::Right(_), _)) => {}
        }
        if !link.health.is_up() {
            return;
        }
        // Past the bound, local hits are already refused (reads go to
        // Redis); a heartbeat that still comes back proves every earlier
        // invalidation applied, so serving resumes. Past twice the bound
        // the subscription is given up for dead.
        let unproven = link.unproven_for();
        if unproven > give_up {
            // Invalidations may have been missed: drop what they could
            // have reached before anything else can read it.
            shared.clear_local();
            let error = format!(
                "own heartbeat not received back on the invalidation channel for {unproven:?} (liveness bound {:?})",
                cfg.liveness_bound
            );
            link.fail(epoch, DownReason::ChannelSilent, &error);
            return;
        }
        if Instant::now() >= next_beat {
            next_beat = Instant::now() + cfg.heartbeat;
            if !beat(shared, epoch, &mut next_beat).await {
                return;
            }
        }
    }
}

/// The subscription ended. If Redis still answers on the data connection,
/// only the subscription was lost and invalidations may be flowing past us:
/// drop the local tier before going down. If Redis does not answer, it is
/// an outage: keep the local tier for degraded mode.
async fn subscription_closed(shared: &Shared, epoch: u64) {
    let link = &shared.link;
    let mut redis_answers = false;
    if let Some((_, mut conn)) = link.conn() {
        let ping = redis::cmd("PING");
        redis_answers = matches!(
            timeout(shared.cfg.op_timeout, ping.query_async::<()>(&mut conn)).await,
            Ok(Ok(()))
        );
    }
    if redis_answers {
        shared.clear_local();
    }
    link.fail(
        epoch,
        DownReason::ConnectionLost,
        "subscription connection closed",
    );
}

/// Publishes a heartbeat on the data connection, then replays queued
/// writes. False if the tier went down.
async fn beat(shared: &Shared, epoch: u64, next_beat: &mut Instant) -> bool {
    let link = &shared.link;
    let Some((e, mut conn)) = link.conn() else {
        return false;
    };
    let mut pipe = redis::pipe();
    pipe.cmd("PUBLISH")
        .arg(&shared.cfg.channel)
        .arg(invalidation::encode_heartbeat(
            shared.instance_id,
            link.now_ns(),
        ))
        .ignore();
    let mut result = match timeout(shared.cfg.op_timeout, pipe.query_async::<()>(&mut conn)).await {
        Ok(Ok(())) => Ok(true),
        Ok(Err(err)) if !err.is_timeout() => Err(RedisFailure::Error(err.to_string())),
        Ok(Err(_)) | Err(_) => Err(RedisFailure::TimedOut),
    };
    while let Ok(true) = result {
        link.health.record_success();
        result = replay_batch(shared, &mut conn, shared.cfg.op_timeout).await;
    }
    match result {
        Ok(_) => true,
        Err(RedisFailure::Error(err)) => {
            link.fail(e, DownReason::ConnectionLost, &err);
            false
        }
        Err(RedisFailure::TimedOut) => {
            *next_beat = Instant::now(); // probe again at once
            link.timed_out(&shared.cfg, epoch) == Verdict::StayUp
        }
    }
}
