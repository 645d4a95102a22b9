//! A real `nats-server -js` for tests: a free loopback port, a temporary store directory,
//! stopped on drop. CI installs the server (.ci/run); the tests fail with a clear message
//! without it rather than pass without a broker.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    args: Vec<String>,
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra server arguments (e.g. `--user u --pass p`).
    pub fn start_with(args: &[&str]) -> Self {
        let mut server = NatsServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn(true);
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Starts the server; `may_move`: on another port if this one turns out taken.
    fn spawn(&mut self, may_move: bool) {
        let mut child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (apt-get install -y nats-server)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The port was free when picked, but another test's server may have taken it since:
        // then ours exited, and the port answering is theirs.
        std::thread::sleep(Duration::from_millis(100));
        if child.try_wait().ok().flatten().is_some() {
            assert!(
                may_move,
                "nats-server could not start again on port {}",
                self.port
            );
            self.port = free_port();
            return self.spawn(true);
        }
        self.child = Some(child);
    }

    /// SIGKILL: the server gets no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(false);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `done` until it holds or `secs` pass.
pub fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to `child` and waits for it: how the service is stopped gracefully.
pub fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
    child.wait().unwrap()
}
