//! A loopback fault proxy for the tier's partition tests. Per connection
//! (data or subscriber, told apart by the `SUBSCRIBE` it sends) and per
//! direction: `discard` (read and drop, the sockets stay open, no EOF
//! passed on) and `pause` (bytes held in order and delivered on resume: a
//! TCP partition that heals). New connections can be held: accepted and
//! never forwarded, a partition for reconnects too.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Knobs {
    pub(crate) discard: AtomicBool,
    pub(crate) pause: AtomicBool,
}

pub(crate) struct Conn {
    pub(crate) subscriber: AtomicBool,
    pub(crate) up: Knobs,   // client -> server
    pub(crate) down: Knobs, // server -> client
    client: TcpStream,
    server: TcpStream,
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Sel {
    All,
    Subs,
    Data,
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Dir {
    Up,
    Down,
    Both,
}

pub(crate) struct Proxy {
    pub(crate) port: u16,
    pub(crate) conns: Arc<Mutex<Vec<Arc<Conn>>>>,
    stop: Arc<AtomicBool>,
    /// New connections are accepted and held, nothing forwarded.
    pub(crate) hold_new: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub(crate) fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            conns: Arc::default(),
            stop: Arc::default(),
            hold_new: Arc::default(),
            held: Arc::default(),
        };
        let (conns, stop, hold, held) = (
            p.conns.clone(),
            p.stop.clone(),
            p.hold_new.clone(),
            p.held.clone(),
        );
        thread::spawn(move || {
            while !stop.load(SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        if hold.load(SeqCst) {
                            held.lock().unwrap().push(client);
                            continue;
                        }
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let c = open(client, server);
                        conns.lock().unwrap().push(c);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        p
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Applies `f` to the chosen directions of the chosen live connections.
    pub(crate) fn set(&self, sel: Sel, dir: Dir, f: impl Fn(&Knobs)) -> usize {
        let mut n = 0;
        for c in self.conns.lock().unwrap().iter() {
            let sub = c.subscriber.load(SeqCst);
            if sel == Sel::Subs && !sub || sel == Sel::Data && sub {
                continue;
            }
            n += 1;
            if dir != Dir::Down {
                f(&c.up);
            }
            if dir != Dir::Up {
                f(&c.down);
            }
        }
        n
    }

    pub(crate) fn pause(&self, sel: Sel, dir: Dir, on: bool) -> usize {
        self.set(sel, dir, |k| k.pause.store(on, SeqCst))
    }
    pub(crate) fn discard(&self, sel: Sel, dir: Dir, on: bool) -> usize {
        self.set(sel, dir, |k| k.discard.store(on, SeqCst))
    }
    pub(crate) fn release_held(&self) {
        self.held.lock().unwrap().clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        for c in self.conns.lock().unwrap().iter() {
            c.up.pause.store(false, SeqCst);
            c.down.pause.store(false, SeqCst);
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.server.shutdown(Shutdown::Both);
        }
    }
}

fn open(client: TcpStream, server: TcpStream) -> Arc<Conn> {
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    let c = Arc::new(Conn {
        subscriber: AtomicBool::new(false),
        up: Knobs::default(),
        down: Knobs::default(),
        client: client.try_clone().unwrap(),
        server: server.try_clone().unwrap(),
    });
    for up in [true, false] {
        let (mut from, to) = if up {
            (client.try_clone().unwrap(), server.try_clone().unwrap())
        } else {
            (server.try_clone().unwrap(), client.try_clone().unwrap())
        };
        let (tx, rx) = mpsc::channel::<Option<Vec<u8>>>();
        let c1 = c.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                let k = if up { &c1.up } else { &c1.down };
                if up && contains(chunk, b"SUBSCRIBE") {
                    c1.subscriber.store(true, SeqCst);
                }
                if k.discard.load(SeqCst) {
                    continue;
                }
                if tx.send(Some(chunk.to_vec())).is_err() {
                    break;
                }
            }
            let _ = tx.send(None);
        });
        let c2 = c.clone();
        let mut to = to;
        thread::spawn(move || {
            while let Ok(item) = rx.recv() {
                let k = if up { &c2.up } else { &c2.down };
                let Some(bytes) = item else {
                    if !k.discard.load(SeqCst) {
                        let _ = to.shutdown(Shutdown::Write);
                    }
                    break;
                };
                while k.pause.load(SeqCst) {
                    thread::sleep(Duration::from_micros(200));
                }
                if k.discard.load(SeqCst) {
                    continue;
                }
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
        });
    }
    c
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
