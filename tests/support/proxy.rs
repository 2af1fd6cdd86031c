//! A loopback TCP proxy in front of a server, for fault injection: it can
//! blackhole the connections that subscribed (pub/sub) — bytes in both
//! directions are read and discarded while both sockets stay open, as a
//! partition or an idle-timeout firewall would leave them. Included with
//! `#[path]`.

#![allow(dead_code)] // each includer uses a different part

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One proxied connection's switches.
struct Conn {
    /// The client sent a `SUBSCRIBE`.
    subscriber: AtomicBool,
    /// Forward nothing (read and discard).
    blackholed: AtomicBool,
    client: TcpStream,
    server: TcpStream,
}

/// The proxy: listens on a free loopback port, forwards to `target`.
pub(crate) struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:target`.
    pub(crate) fn start(target: u16) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conns.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if let Ok(conn) = open(client, target) {
                            c.lock().expect("proxy lock").push(conn);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(Self { port, conns, stop })
    }

    /// The port to connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Blackholes every connection that has subscribed so far; returns how many.
    pub(crate) fn blackhole_subscribers(&self) -> usize {
        let conns = self.conns.lock().expect("proxy lock");
        let mut n = 0;
        for c in conns.iter() {
            if c.subscriber.load(Ordering::SeqCst) {
                c.blackholed.store(true, Ordering::SeqCst);
                n += 1;
            }
        }
        n
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.conns.lock().expect("proxy lock").iter() {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.server.shutdown(Shutdown::Both);
        }
    }
}

fn open(client: TcpStream, target: u16) -> io::Result<Arc<Conn>> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect(("127.0.0.1", target))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let conn = Arc::new(Conn {
        subscriber: AtomicBool::new(false),
        blackholed: AtomicBool::new(false),
        client: client.try_clone()?,
        server: server.try_clone()?,
    });
    let (up, down) = (conn.clone(), conn.clone());
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    thread::spawn(move || pump(&up, &mut c_read, &mut s_write, true));
    let (mut s_read, mut c_write) = (server, client);
    thread::spawn(move || pump(&down, &mut s_read, &mut c_write, false));
    Ok(conn)
}

/// Copies `from` to `to` until either closes; discards while blackholed.
fn pump(conn: &Conn, from: &mut TcpStream, to: &mut TcpStream, from_client: bool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if from_client && contains(&buf[..n], b"SUBSCRIBE") {
            conn.subscriber.store(true, Ordering::SeqCst);
        }
        if conn.blackholed.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !conn.blackholed.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
