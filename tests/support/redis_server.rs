//! A real `redis-server` for the tests and benches that run against one: a
//! child process on a free loopback port, in its own temp dir, with no
//! persistence, stopped on drop. Included with `#[path]` (it is not a test
//! binary of its own).

#![allow(dead_code)] // each includer uses a different part

use std::io;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or killed, restartable) `redis-server`.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server with extra arguments (`{port}` in them becomes the
    /// port) and waits until it accepts connections.
    ///
    /// The port is only known to be free when it is chosen; another process
    /// can take it before the server binds it. A start whose server exits (or
    /// whose port answers as some other process) is retried on a new port.
    pub(crate) fn start(extra: &[&str]) -> io::Result<Self> {
        let mut last = None;
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut server = Self {
                child: None,
                port,
                extra: extra
                    .iter()
                    .map(|s| s.replace("{port}", &port.to_string()))
                    .collect(),
                dir: tempfile::tempdir()?,
            };
            match server.restart() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// (Re)starts the server on the same port, with the same arguments, and
    /// waits until this very process answers on the port.
    pub(crate) fn restart(&mut self) -> io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(io::Error::other(format!(
                    "redis-server exited ({status}) before listening on port {}",
                    self.port
                )));
            }
            if listens(pid, self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "redis-server did not listen on port {} within 10 s",
                        self.port
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`"-STOP"`, `"-CONT"`, ...) to the running server.
    pub(crate) fn signal(&self, sig: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("server running")
            .id()
            .to_string();
        let status = Command::new("kill").args([sig, &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {sig} {pid}");
    }

    /// The running server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A plain synchronous connection (through the `redis` crate).
    pub(crate) fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("a connection to the test redis-server")
    }
}

/// Whether process `pid` holds the socket listening on loopback `port`.
///
/// A bare connect can succeed against another process's listener (a port
/// taken between choosing and binding it) or as a loopback self-connect, so
/// on Linux the listener's socket inode is matched against the process's
/// open files. Elsewhere a successful connect is taken as the answer.
#[cfg(target_os = "linux")]
fn listens(pid: u32, port: u16) -> bool {
    let Some(inode) = listening_inode(port) else {
        return false;
    };
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want.as_str())
    })
}

#[cfg(not(target_os = "linux"))]
fn listens(_pid: u32, port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The inode of the IPv4 socket in state LISTEN on `port`, from
/// `/proc/net/tcp`.
#[cfg(target_os = "linux")]
fn listening_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        (cols.len() > 9 && cols[1].ends_with(&port) && cols[3] == "0A").then(|| cols[9].to_string())
    })
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // A stopped server must be continued to die promptly.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}
