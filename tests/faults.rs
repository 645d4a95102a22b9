//! The fault suite (RELIABILITY.md): `aftersales serve` under a steady NATS feed of Taobao
//! refund messages while
//! - it is killed with SIGKILL at random moments (now and then stopped with SIGTERM, so
//!   later rounds resume the read models from a checkpoint),
//! - nats-server is killed and restarted under it,
//! - its disk fills up (a small tmpfs) and then gets space back.
//!
//! After every fault: every message the service acknowledged (the consumer's ack floor) is
//! in the store exactly once, nothing in the log is there twice, and the chain verifies. At
//! the end the read models the service saved equal those `aftersales replay` rebuilds from
//! the log, and the events stream (`AFTERSALES_EVENTS`) holds every record of the log once,
//! in order. Needs `nats-server`; the disk-full test needs to mount a tmpfs (root).
//!
//! Quick form (CI): 6 kill rounds. Long form: `FAULT_ROUNDS=50 cargo test --release -p
//! aftersales --test faults -- --nocapture`; `FAULT_SEED` replays a run's kill moments.

#[path = "../crates/ingest/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aftersales_clock::SystemClock;
use aftersales_ingest::bench::sample;
use aftersales_schema::decode_stored;
use aftersales_store::{Store, StoreConfig};
use aftersales_timers::{Calendar, RuleBook};
use aftersales_views::{catch_up, Loaded, Views};
use async_nats::jetstream::{self, consumer};
use support::{wait_until, NatsServer};

const WEBHOOKS: &str = "AFTERSALES_WEBHOOKS";
const CONSUMER: &str = "aftersales-ingest";

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from))
    }
}

fn seed() -> u64 {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fault seed {seed} (FAULT_SEED={seed} replays it)");
    seed
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Publishes Taobao refund-created messages (one new ticket each) at a steady rate until
/// stopped, through broker restarts: a message is retried until the broker acknowledges it,
/// under the same `Nats-Msg-Id`, so a retry is never a second message.
struct Feed {
    stop: Arc<AtomicBool>,
    /// Stream sequence → message number, for every message the broker took.
    published: Arc<Mutex<BTreeMap<u64, usize>>>,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    fn start(url: String, per_second: u32) -> Feed {
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(Mutex::new(BTreeMap::new()));
        let thread = {
            let (stop, published) = (stop.clone(), published.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let client = async_nats::ConnectOptions::new()
                        .retry_on_initial_connect()
                        .connect(url)
                        .await
                        .unwrap();
                    let js = jetstream::new(client);
                    let mut tick =
                        tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut n = 0usize;
                    while !stop.load(Ordering::Acquire) {
                        tick.tick().await;
                        let mut headers = async_nats::HeaderMap::new();
                        headers.insert("Nats-Msg-Id", format!("feed-{n}").as_str());
                        let sent = async {
                            js.publish_with_headers("aftersales.webhooks.tmall", headers, sample(n))
                                .await
                                .map_err(|e| e.to_string())?
                                .await
                                .map_err(|e| e.to_string())
                        };
                        match tokio::time::timeout(Duration::from_secs(2), sent).await {
                            Ok(Ok(ack)) => {
                                published.lock().unwrap().insert(ack.sequence, n);
                                n += 1;
                            }
                            // The broker is down or slow: the same message again.
                            _ => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                });
            })
        };
        Feed {
            stop,
            published,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.published.lock().unwrap().len()
    }

    /// The message numbers at stream sequences up to `floor`.
    fn up_to(&self, floor: u64) -> Vec<usize> {
        self.published
            .lock()
            .unwrap()
            .range(..=floor)
            .map(|(_, n)| *n)
            .collect()
    }

    /// Stops publishing; returns how many messages the broker took (numbers 0..n).
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.count()
    }
}

/// `aftersales serve` as a child process, its stderr kept in a file for diagnostics.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    fn start(data: &Path, config: &Path, nats: &str, port: u16, log: PathBuf) -> Serve {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_aftersales"))
            .args(["serve", "--nats", nats, "--http"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(data)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Serve { child, log }
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    /// SIGTERM; panics unless it stops cleanly (exit 0), showing its log.
    fn terminate(mut self, what: &str) {
        let status = support::sigterm(&mut self.child);
        assert!(status.success(), "{what}: {status:?}\n{}", self.tail());
    }

    /// The status once it exits by itself within `secs`.
    fn exits_within(mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit: {}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4_000);
        let start = (start..).find(|&i| text.is_char_boundary(i)).unwrap();
        text[start..].to_owned()
    }
}

/// Whether `GET /readyz` answers 200: the service is taking messages.
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut answer = String::new();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut answer))
        .is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("aftersales.toml");
    // A short ack wait brings back what a killed process held; a 1 s checkpoint lets the
    // kills land around checkpoint writes too.
    std::fs::write(
        &path,
        "[nats]\nack_wait_secs = 2\n[read_models]\ncheckpoint_every_secs = 1\n",
    )
    .unwrap();
    path
}

/// A JetStream context on a connection that survives broker restarts; the webhook
/// streams made as the service makes them, so the feed can start before it.
fn broker(rt: &tokio::runtime::Runtime, url: &str) -> jetstream::Context {
    rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(url)
            .await
            .unwrap();
        let js = jetstream::new(client);
        let cfg = aftersales_ingest::IngestConfig::default();
        aftersales_ingest::deadletter::ensure_streams(&js, &cfg)
            .await
            .unwrap();
        js
    })
}

/// The consumer's ack floor (every message at or below it is acknowledged) and the
/// messages it has not settled yet; `None` while the broker does not answer.
fn consumer_state(rt: &tokio::runtime::Runtime, js: &jetstream::Context) -> Option<(u64, u64)> {
    rt.block_on(async {
        let ask = async {
            let stream = js.get_stream(WEBHOOKS).await.ok()?;
            let mut c = stream
                .get_consumer::<consumer::pull::Config>(CONSUMER)
                .await
                .ok()?;
            let info = c.info().await.ok()?;
            Some((
                info.ack_floor.stream_sequence,
                info.num_pending + info.num_ack_pending as u64,
            ))
        };
        tokio::time::timeout(Duration::from_secs(3), ask)
            .await
            .ok()
            .flatten()
    })
}

fn dead_letters(rt: &tokio::runtime::Runtime, js: &jetstream::Context) -> u64 {
    rt.block_on(async {
        match js.get_stream("AFTERSALES_DEADLETTER").await {
            Ok(mut s) => s.info().await.unwrap().state.messages,
            Err(_) => 0,
        }
    })
}

/// What the log holds: the message numbers of the tickets opened (with how often), the
/// head position; panics if the chain does not verify or a fact is stored twice.
fn check_log(data: &Path, what: &str) -> (HashMap<usize, usize>, u64) {
    let store = Store::open(data, StoreConfig::new(Arc::new(SystemClock)))
        .unwrap_or_else(|e| panic!("{what}: the store does not open: {e}"));
    let report = store.verify().unwrap();
    assert!(
        report.is_ok(),
        "{what}: the chain does not verify: {report:?}"
    );
    let mut opened: HashMap<usize, usize> = HashMap::new();
    let mut facts = HashSet::new();
    for record in store.iter_all(1) {
        let record = record.unwrap();
        let envelope = decode_stored(&record.payload, record.recorded_at).unwrap();
        let name = envelope.event.name();
        // One message or one firing is one fact of its ticket: the same key and kind twice
        // on one ticket is a duplicate.
        if let Some(key) = &envelope.source_message_id {
            let ticket = envelope.ticket_id.to_string();
            assert!(
                facts.insert((ticket, key.clone(), name)),
                "{what}: {name} of {key} is stored twice on {} (position {})",
                envelope.ticket_id,
                record.position
            );
        }
        if name == "opened" {
            let n: usize = envelope
                .ticket_id
                .as_str()
                .strip_prefix("tmall:")
                .and_then(|id| id.parse().ok())
                .map(|id: usize| id - 100_000_000)
                .unwrap();
            *opened.entry(n).or_default() += 1;
        }
    }
    let head = store.head_position();
    store.close().unwrap();
    (opened, head)
}

fn assert_stored_once(opened: &HashMap<usize, usize>, messages: &[usize], what: &str) {
    for n in messages {
        assert_eq!(
            opened.get(n),
            Some(&1),
            "{what}: acknowledged message {n} is not in the store exactly once"
        );
    }
}

/// The read models `serve` saved at its clean stop, and those `aftersales replay` rebuilds
/// from the log: the same digest.
fn assert_read_models_equal_a_replay(data: &Path) {
    let checkpoint = data.join("views.checkpoint.json");
    let digest_of_checkpoint = || {
        let store = Store::open(data, StoreConfig::new(Arc::new(SystemClock))).unwrap();
        let (mut views, loaded) = aftersales_views::load(
            &store,
            &checkpoint,
            RuleBook::builtin(),
            Calendar::builtin(),
        )
        .unwrap();
        assert!(
            matches!(loaded, Loaded::Resumed(at) if at == store.head_position()),
            "the checkpoint is not of the whole log: {loaded:?}"
        );
        assert_eq!(catch_up(&mut views, &store).unwrap(), 0);
        let mut fresh = Views::new(RuleBook::builtin(), Calendar::builtin());
        catch_up(&mut fresh, &store).unwrap();
        store.close().unwrap();
        (views.digest(), fresh.digest(), views.ticket_count())
    };
    let (served, folded, tickets) = digest_of_checkpoint();
    assert!(tickets > 0);
    assert_eq!(
        served, folded,
        "the served read models differ from a fresh fold"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_aftersales"))
        .args(["replay", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (replayed, _, _) = digest_of_checkpoint();
    assert_eq!(
        served, replayed,
        "the served read models differ from `replay`'s"
    );
}

/// `GET /metrics` value of `name`, if serve answers.
fn metric(port: u16, name: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{name} ")))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// One more run of `serve` until its outbox has published the whole log and the log stops
/// growing (the last firings), then a clean stop; then `AFTERSALES_EVENTS` must be the log:
/// message n is record n (its id, position, payload), nothing missing, nothing twice.
fn assert_events_stream_is_the_log(
    rt: &tokio::runtime::Runtime,
    js: &jetstream::Context,
    serve: Serve,
    port: u16,
    data: &Path,
) {
    let mut quiet = 0;
    let mut last = None;
    wait_until(120, "the events outbox to publish the whole log", || {
        let lag = metric(port, "aftersales_events_lag_events");
        let published = metric(port, "aftersales_events_published_total");
        quiet = if lag == Some(0) && published == last {
            quiet + 1
        } else {
            0
        };
        last = published;
        std::thread::sleep(Duration::from_millis(100));
        quiet >= 5
    });
    serve.terminate("the events run");
    let store = Store::open(data, StoreConfig::new(Arc::new(SystemClock))).unwrap();
    let head = store.head_position();
    rt.block_on(async {
        let mut stream = js.get_stream("AFTERSALES_EVENTS").await.unwrap();
        let held = stream.info().await.unwrap().state.messages;
        assert_eq!(
            held, head,
            "the events stream holds {held} of {head} events"
        );
        for record in store.iter_all(1) {
            let record = record.unwrap();
            let message = stream.get_raw_message(record.position).await.unwrap();
            let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
            assert_eq!(header("Nats-Msg-Id"), Some(record.id.to_string()));
            assert_eq!(
                header("Aftersales-Position"),
                Some(record.position.to_string())
            );
            assert_eq!(message.payload.as_ref(), record.payload.as_slice());
        }
    });
    store.close().unwrap();
}

fn wait_for_drain(rt: &tokio::runtime::Runtime, js: &jetstream::Context, published: u64) {
    wait_until(120, "every published message to be acknowledged", || {
        consumer_state(rt, js).is_some_and(|(floor, left)| floor >= published && left == 0)
    });
}

/// One test's broker, runtime, directories and port; the store in `store_in` if given.
struct Rig {
    server: NatsServer,
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    /// Holds the config and log until the test ends.
    _dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Rig {
    fn serve(&self) -> Serve {
        Serve::start(
            &self.data,
            &self.config,
            &self.server.url(),
            self.port,
            self.log.clone(),
        )
    }
}

fn rig(store_in: Option<&Path>) -> Rig {
    let server = NatsServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let js = broker(&rt, &server.url());
    let dir = tempfile::tempdir().unwrap();
    Rig {
        data: store_in.unwrap_or(dir.path()).join("store"),
        config: config(dir.path()),
        log: dir.path().join("serve.log"),
        port: free_port(),
        server,
        rt,
        js,
        _dir: dir,
    }
}

#[test]
fn serve_killed_at_random_moments_under_a_feed_keeps_every_acknowledged_message_once() {
    let rounds: usize = std::env::var("FAULT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let mut rng = XorShift(seed());
    let rig = rig(None);
    let (rt, js, data, port) = (&rig.rt, &rig.js, &rig.data, rig.port);
    let feed = Feed::start(rig.server.url(), 300);
    let started = Instant::now();
    let (mut kills, mut stops) = (0, 0);
    for round in 1..=rounds {
        let serve = rig.serve();
        // Any moment: one round in three while it opens the store and rebuilds its models,
        // the others once it is ready, while it catches up or runs at the feed's pace.
        if !rng.next().is_multiple_of(3) {
            wait_until(120, "serve to be ready", || ready(port));
        }
        std::thread::sleep(rng.millis(0, 2_500));
        // Every fourth round a clean stop, so the next ones resume from a checkpoint.
        if round % 4 == 0 {
            serve.terminate(&format!("round {round}"));
            stops += 1;
        } else {
            serve.kill();
            kills += 1;
        }
        let (floor, _) = consumer_state(rt, js).unwrap();
        let what = format!("round {round}");
        let (opened, head) = check_log(data, &what);
        assert_stored_once(&opened, &feed.up_to(floor), &what);
        eprintln!(
            "round {round}: ack floor {floor}, {} published, {} tickets, {head} events",
            feed.count(),
            opened.len()
        );
    }
    // A last run takes everything; then a clean stop saves the read models.
    let serve = rig.serve();
    std::thread::sleep(Duration::from_secs(1));
    let published = feed.stop();
    wait_for_drain(rt, js, published as u64);
    serve.terminate("the last run");
    let (opened, head) = check_log(data, "at the end");
    assert_stored_once(&opened, &(0..published).collect::<Vec<_>>(), "at the end");
    assert_eq!(opened.len(), published, "a ticket nobody published");
    assert_eq!(dead_letters(rt, js), 0);
    assert_read_models_equal_a_replay(data);
    let serve = rig.serve();
    assert_events_stream_is_the_log(rt, js, serve, port, data);
    eprintln!(
        "{kills} SIGKILLs and {stops} clean stops under a feed of {published} messages \
         ({head} events) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn nats_server_killed_and_restarted_under_the_feed_loses_and_duplicates_nothing() {
    let mut rig = rig(None);
    let (rt, js, data, port) = (&rig.rt, &rig.js, &rig.data, rig.port);
    let feed = Feed::start(rig.server.url(), 300);
    let serve = rig.serve();
    let mut floor = 0;
    for outage in 1..=3 {
        // The service is taking messages before the broker goes.
        wait_until(60, "the service to acknowledge more messages", || {
            consumer_state(rt, js).is_some_and(|(f, _)| f > floor + 100)
        });
        rig.server.kill(); // SIGKILL
        std::thread::sleep(Duration::from_millis(500 * outage));
        rig.server.restart();
        // Ingest resumes by itself on the same connection.
        let before = consumer_state(rt, js);
        wait_until(60, "the ingest to resume after the broker restart", || {
            consumer_state(rt, js)
                .zip(before)
                .is_some_and(|((now, _), (then, _))| now > then + 100)
        });
        floor = consumer_state(rt, js).unwrap().0;
        eprintln!(
            "outage {outage}: ack floor {floor}, {} published",
            feed.count()
        );
    }
    let published = feed.stop();
    wait_for_drain(rt, js, published as u64);
    serve.terminate("the last run");
    let (opened, _) = check_log(data, "after three broker outages");
    assert_stored_once(
        &opened,
        &(0..published).collect::<Vec<_>>(),
        "after the outages",
    );
    assert_eq!(opened.len(), published);
    assert_eq!(dead_letters(rt, js), 0);
    // The events outbox went through the same outages.
    let serve = rig.serve();
    assert_events_stream_is_the_log(rt, js, serve, port, data);
}

/// A tmpfs mounted at a temporary directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(bytes: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(dir))
    }

    fn resize(&self, bytes: u64) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(self.0.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "remounting the tmpfs failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_stops_appends_with_a_clear_error_loses_nothing_and_recovers_with_space() {
    let disk = match Tmpfs::mount(3 << 20) {
        Ok(disk) => disk,
        Err(why) => {
            // Only where the machine allows a mount (CI runs as root and does).
            eprintln!("SKIPPED: a tmpfs cannot be mounted here: {why}");
            return;
        }
    };
    let rig = rig(Some(disk.0.path()));
    let (rt, js, data, log, port) = (&rig.rt, &rig.js, &rig.data, &rig.log, rig.port);
    let feed = Feed::start(rig.server.url(), 500);
    // The disk fills: the store refuses appends and the service stops by itself, saying so.
    let serve = rig.serve();
    let tail = || std::fs::read_to_string(log).unwrap_or_default();
    let status = serve.exits_within(120);
    assert_eq!(status.code(), Some(75), "{}", tail());
    assert!(tail().contains("No space left on device"), "{}", tail());
    assert!(
        tail().contains("the event store could not write"),
        "{}",
        tail()
    );
    let (floor, left) = consumer_state(rt, js).unwrap();
    assert!(left > 0, "the disk filled after everything was taken");

    // Still full: starting again fails at once, with the reason.
    let serve = rig.serve();
    let status = serve.exits_within(60);
    assert!(!status.success());
    assert!(
        tail().matches("No space left on device").count() >= 2,
        "{}",
        tail()
    );

    // Space comes back: what was acknowledged is there once, and the service takes the rest.
    disk.resize(256 << 20);
    let (opened, _) = check_log(data, "after the disk filled");
    assert_stored_once(&opened, &feed.up_to(floor), "after the disk filled");
    let serve = rig.serve();
    std::thread::sleep(Duration::from_secs(1));
    let published = feed.stop();
    wait_for_drain(rt, js, published as u64);
    serve.terminate("after space came back");
    let (opened, _) = check_log(data, "after space came back");
    assert_stored_once(&opened, &(0..published).collect::<Vec<_>>(), "at the end");
    assert_eq!(
        dead_letters(rt, js),
        0,
        "a message was blamed for the full disk"
    );
    assert_read_models_equal_a_replay(data);
    let serve = rig.serve();
    assert_events_stream_is_the_log(rt, js, serve, port, data);
    eprintln!("disk full after ack floor {floor}; {published} messages in the end");
}
