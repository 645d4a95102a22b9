//! `bench load`: the real service (`aftersales serve`, a child process) fed from NATS
//! JetStream on loopback at a fixed rate for a bounded time, measured from outside: the
//! latency from publish to the service's ack (it acks only after the durable append), its
//! resident memory over time, and whether every message ended acked and none dead-lettered.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aftersales_ingest::{bench, deadletter, IngestConfig};
use anyhow::{bail, ensure, Context, Result};
use async_nats::jetstream;

use crate::ingest::{own_server, publish_confirmed, raw_consume_ack, runtime};

/// What `bench load` was asked for; `None` takes the default of the form (quick or full).
pub struct LoadOptions {
    pub quick: bool,
    pub seconds: Option<u64>,
    pub rate: Option<f64>,
    pub tickets: Option<usize>,
    pub nats: Option<String>,
    pub dir: Option<PathBuf>,
    pub warmup: Option<u64>,
    /// `[store] cache_mib` of the service (default: the service's default).
    pub cache_mib: Option<u64>,
}

/// The rate the 2-core machine holds with p99 under 100 ms (RELIABILITY.md, "Load test").
const DEFAULT_RATE: f64 = 1000.0;
/// Messages of the raw JetStream consume + ack measure, the ceiling of any consumer.
const RAW_MESSAGES: usize = 20_000;
/// The latency the service must hold at p99 after warm-up.
const P99_LIMIT_MS: f64 = 100.0;
const POLL: Duration = Duration::from_millis(10);
const RSS_EVERY: Duration = Duration::from_secs(5);

struct Settings {
    seconds: u64,
    warmup: u64,
    rate: f64,
    tickets: u64,
    /// Progress lines and the report's rows are per this many seconds.
    interval: u64,
}

/// A published message: its stream sequence and when it was published and confirmed (µs
/// since the feed started).
#[derive(Clone, Copy)]
struct Published {
    seq: u64,
    at_us: u64,
    confirmed_us: u64,
}

/// What the feed and the poller share.
#[derive(Default)]
struct Shared {
    published: Mutex<Vec<Published>>,
    /// (µs since the feed started, ack floor) each time a poll saw the floor move.
    floors: Mutex<Vec<(u64, u64)>>,
    failures: AtomicU64,
    confirmed: AtomicU64,
    stop: AtomicBool,
}

/// The `serve` child; killed if the run ends before it was stopped cleanly.
struct Service {
    child: std::process::Child,
    log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn run(opts: LoadOptions) -> Result<ExitCode> {
    let mut s = Settings {
        // The full form: ten minutes measured after a three-minute warm-up, the time the
        // store's 64 MiB page cache takes to fill at 1000 messages/s (RELIABILITY.md).
        seconds: opts
            .seconds
            .unwrap_or(if opts.quick { 25 } else { 780 })
            .max(1),
        warmup: opts.warmup.unwrap_or(if opts.quick { 5 } else { 180 }),
        rate: opts.rate.unwrap_or(DEFAULT_RATE),
        tickets: opts.tickets.unwrap_or(10_000).max(1) as u64,
        interval: 0,
    };
    // Rows of a minute, or of 5 s in a short run.
    s.interval = if s.seconds <= 120 { 5 } else { 60 };
    ensure!(
        s.rate.is_finite() && s.rate > 0.0,
        "--rate must be a positive number of messages per second"
    );
    ensure!(
        s.warmup < s.seconds,
        "--warmup ({} s) must be shorter than --seconds ({} s)",
        s.warmup,
        s.seconds
    );
    let own_names = opts.nats.is_none();
    let (_server, url) = match opts.nats {
        Some(url) => (None, url),
        None => {
            let (server, url) = own_server()?;
            (Some(server), url)
        }
    };
    let tmp = tempfile::tempdir()?;
    let base = opts.dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let data = base.join("load-data");
    ensure!(
        !data.exists(),
        "{} exists; the load test needs a fresh store",
        data.display()
    );
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let run_id = std::process::id();
    let cfg = if own_names {
        // Its own server: the production names, so the run is the service as deployed.
        IngestConfig {
            url,
            ..IngestConfig::default()
        }
    } else {
        // A shared broker: names of its own, so real streams are never touched.
        IngestConfig {
            url,
            stream: format!("LOAD_WEBHOOKS_{run_id}"),
            subject_prefix: format!("load{run_id}.webhooks"),
            deadletter_stream: format!("LOAD_DEADLETTER_{run_id}"),
            deadletter_prefix: format!("load{run_id}.deadletter"),
            ..IngestConfig::default()
        }
    };
    let alerts_stream = if own_names {
        "AFTERSALES_ALERTS".to_owned()
    } else {
        format!("LOAD_ALERTS_{run_id}")
    };
    let (events_stream, events_prefix) = if own_names {
        (
            "AFTERSALES_EVENTS".to_owned(),
            "aftersales.events".to_owned(),
        )
    } else {
        (
            format!("LOAD_EVENTS_{run_id}"),
            format!("load{run_id}.events"),
        )
    };
    let config_file = base.join("load.toml");
    std::fs::write(
        &config_file,
        format!(
            "[nats]\nurl = {:?}\nstream = {:?}\nsubject_prefix = {:?}\n\
             deadletter_stream = {:?}\ndeadletter_prefix = {:?}\nconsumer = {:?}\n\n\
             [alerts.publish]\nstream = {:?}\nsubject_prefix = {:?}\n\n\
             [events]\nstream = {:?}\nsubject_prefix = {:?}\n\n\
             [store]\ncache_mib = {}\n",
            cfg.url,
            cfg.stream,
            cfg.subject_prefix,
            cfg.deadletter_stream,
            cfg.deadletter_prefix,
            cfg.consumer,
            alerts_stream,
            if own_names {
                "aftersales.alerts".to_owned()
            } else {
                format!("load{run_id}.alerts")
            },
            events_stream,
            events_prefix,
            opts.cache_mib
                .unwrap_or(aftersales_store::DEFAULT_CACHE_CAPACITY >> 20),
        ),
    )
    .with_context(|| format!("writing {}", config_file.display()))?;

    let rt = runtime()?;
    eprintln!("… raw JetStream consume + ack of {RAW_MESSAGES} messages (a stream of its own)");
    let raw_per_s = rt.block_on(raw_limit(&cfg, run_id))?;
    let js = rt.block_on(async {
        let js = jetstream::new(cfg.connect().await?);
        // Created before the service starts so the first publish has a stream to land in.
        deadletter::ensure_streams(&js, &cfg).await?;
        Ok::<_, anyhow::Error>(js)
    })?;

    let http: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let log = base.join("serve.log");
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let exe = std::env::current_exe().context("finding the aftersales binary")?;
    let child = Command::new(&exe)
        .arg("serve")
        .args(["--nats", &cfg.url, "--http", &http.to_string()])
        .arg("--data")
        .arg(&data)
        .arg("--config")
        .arg(&config_file)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {} serve", exe.display()))?;
    let mut service = Service { child, log };
    let pid = service.child.id();
    wait_healthy(&mut service, http)?;
    eprintln!(
        "… service pid {pid} healthy on http://{http}; feeding {} msg/s for {} s \
         ({} s warm-up, {} tickets)",
        s.rate, s.seconds, s.warmup, s.tickets
    );

    let shared = Arc::new(Shared::default());
    let fed = rt.block_on(feed(&js, &cfg, &s, &shared, pid, &mut service))?;

    // Stop it as systemd would, and expect a clean exit.
    let stop_started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .context("sending SIGTERM to the service")?;
    ensure!(status.success(), "kill -TERM {pid} failed");
    let exit = loop {
        if let Some(status) = service.child.try_wait()? {
            break Some(status);
        }
        if stop_started.elapsed() > Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stop_secs = stop_started.elapsed().as_secs_f64();

    if !own_names {
        rt.block_on(async {
            for name in [
                &cfg.stream,
                &cfg.deadletter_stream,
                &alerts_stream,
                &events_stream,
            ] {
                let _ = js.delete_stream(name).await;
            }
        });
    }

    let mut failures = report(&s, &shared, &fed, raw_per_s, pid, opts.quick);
    match exit {
        Some(status) if status.success() => {
            println!(
                "{:<44} exit 0 after {stop_secs:.1} s",
                "SIGTERM to the service"
            );
        }
        Some(status) => {
            println!(
                "{:<44} {status} after {stop_secs:.1} s",
                "SIGTERM to the service"
            );
            failures.push(format!(
                "the service did not stop cleanly ({status}); see {}",
                service.log.display()
            ));
        }
        None => {
            println!("{:<44} still running after 60 s", "SIGTERM to the service");
            failures.push("the service did not stop within 60 s of SIGTERM".into());
        }
    }
    if failures.is_empty() {
        println!("verdict: PASS");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("verdict: FAIL");
        for f in &failures {
            eprintln!("error: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The raw limit: publish `RAW_MESSAGES` to a stream of its own, then consume and ack them
/// with a pull consumer and nothing else; the stream is deleted after.
async fn raw_limit(cfg: &IngestConfig, run_id: u32) -> Result<f64> {
    let js = jetstream::new(cfg.connect().await?);
    let name = format!("LOAD_RAW_{run_id}");
    let subject = format!("loadraw{run_id}.tmall");
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .context("creating the raw stream")?;
    let messages = (0..RAW_MESSAGES).map(|n| (subject.clone(), bench::sample(n)));
    publish_confirmed(&js, messages).await?;
    let per_s = raw_consume_ack(&stream, "raw", RAW_MESSAGES, cfg.max_in_flight).await?;
    js.delete_stream(&name)
        .await
        .context("deleting the raw stream")?;
    Ok(per_s)
}

/// Waits until `GET /healthz` answers 200, or fails if the child exits or 60 s pass.
fn wait_healthy(service: &mut Service, addr: SocketAddr) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = service.child.try_wait()? {
            bail!(
                "the service exited at start ({status}); see {}",
                service.log.display()
            );
        }
        if healthz(addr) {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the service did not answer /healthz within 60 s; see {}",
            service.log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn healthz(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// The resident set of a process in KiB (`VmRSS` of /proc/<pid>/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Message `k` of the feed: round 0 opens ticket `k % tickets`; every later round moves it
/// one step of the cycle rejected → resubmitted → annotated, so state and memory stay
/// bounded by the pool. `id` is unique (event ids derive from it).
fn body(k: u64, tickets: u64, modified: &str) -> String {
    let n = k % tickets;
    let topic = match k / tickets {
        0 => "taobao_refund_RefundCreated",
        r => match (r - 1) % 3 {
            0 => "taobao_refund_RefundSellerRefuseAgreement",
            1 => "taobao_refund_RefundBuyerModifyAgreement",
            _ => "taobao_refund_RefundCreateMessage",
        },
    };
    let content = serde_json::json!({
        "refund_id": 200_000_000 + n, "tid": 300_000_000 + n, "oid": 400_000_000 + n,
        "refund_fee": "59.90", "modified": modified, "bill_type": "return_bill",
    });
    serde_json::json!({"topic": topic, "id": k, "content": content.to_string()}).to_string()
}

/// Now in China time as Taobao writes `modified`: the review deadlines it arms (48 h)
/// then never fall due during the run, so the scheduler adds no writes of its own.
fn china_now() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// What the feed saw besides the shared records.
struct Fed {
    target: u64,
    sent: u64,
    feed_secs: f64,
    drain_secs: Option<f64>,
    last_seq: u64,
    final_floor: u64,
    num_pending: u64,
    num_ack_pending: usize,
    num_redelivered: usize,
    dead_letters: u64,
    /// (seconds since the feed started, RSS KiB).
    rss: Vec<(f64, u64)>,
}

async fn feed(
    js: &jetstream::Context,
    cfg: &IngestConfig,
    s: &Settings,
    shared: &Arc<Shared>,
    pid: u32,
    service: &mut Service,
) -> Result<Fed> {
    let webhooks = js
        .get_stream(&cfg.stream)
        .await
        .context("the webhook stream")?;
    // The service creates its durable consumer at start; wait for it.
    let started = Instant::now();
    while webhooks.consumer_info(&cfg.consumer).await.is_err() {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the service created no consumer {} within 30 s; see {}",
            cfg.consumer,
            service.log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let t0 = Instant::now();
    let us = move || t0.elapsed().as_micros() as u64;
    let poller = {
        let (webhooks, shared, name) = (webhooks.clone(), shared.clone(), cfg.consumer.clone());
        tokio::spawn(async move {
            let mut last = 0;
            while !shared.stop.load(Ordering::Relaxed) {
                if let Ok(info) = webhooks.consumer_info(&name).await {
                    // The time the answer arrived: the floor was at least this by then.
                    let floor = info.ack_floor.stream_sequence;
                    if floor > last {
                        last = floor;
                        shared
                            .floors
                            .lock()
                            .expect("not poisoned")
                            .push((us(), floor));
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        })
    };

    let subject = format!("{}.tmall", cfg.subject_prefix);
    let target = (s.rate * s.seconds as f64).round() as u64;
    let mut rss = Vec::new();
    let mut next_rss = Duration::ZERO;
    let mut next_progress = Duration::from_secs(s.interval);
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < target {
        tick.tick().await;
        let elapsed = t0.elapsed();
        if elapsed >= next_rss {
            if let Some(kib) = rss_kib(pid) {
                rss.push((elapsed.as_secs_f64(), kib));
            }
            next_rss += RSS_EVERY;
        }
        if elapsed >= next_progress {
            progress(shared, s, sent, elapsed, rss.last().map(|r| r.1));
            next_progress += Duration::from_secs(s.interval);
        }
        if let Some(status) = service.child.try_wait()? {
            bail!(
                "the service exited during the run ({status}); see {}",
                service.log.display()
            );
        }
        // Due by now at the fixed rate: a late tick catches up, never runs ahead.
        let due = ((s.rate * elapsed.as_secs_f64()) as u64).min(target);
        let modified = china_now();
        while sent < due {
            let at_us = us();
            match js
                .publish(subject.clone(), body(sent, s.tickets, &modified).into())
                .await
            {
                Ok(ack) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        match ack.await {
                            Ok(ack) => {
                                shared
                                    .published
                                    .lock()
                                    .expect("not poisoned")
                                    .push(Published {
                                        seq: ack.sequence,
                                        at_us,
                                        confirmed_us: us(),
                                    })
                            }
                            Err(_) => {
                                shared.failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        shared.confirmed.fetch_add(1, Ordering::Relaxed);
                    });
                }
                Err(_) => {
                    shared.failures.fetch_add(1, Ordering::Relaxed);
                    shared.confirmed.fetch_add(1, Ordering::Relaxed);
                }
            }
            sent += 1;
        }
    }
    let feed_secs = t0.elapsed().as_secs_f64();

    // Every confirmation, then the ack floor up to the last message, 60 s at most.
    let drain_from = Instant::now();
    while shared.confirmed.load(Ordering::Relaxed) < sent && drain_from.elapsed().as_secs() < 60 {
        tokio::time::sleep(POLL).await;
    }
    let last_seq = shared
        .published
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|p| p.seq)
        .max()
        .unwrap_or(0);
    let floor = || {
        shared
            .floors
            .lock()
            .expect("not poisoned")
            .last()
            .map_or(0, |f| f.1)
    };
    let mut drain_secs = None;
    while drain_from.elapsed().as_secs() < 60 {
        if floor() >= last_seq {
            drain_secs = Some(drain_from.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    if let Some(kib) = rss_kib(pid) {
        rss.push((t0.elapsed().as_secs_f64(), kib));
    }
    shared.stop.store(true, Ordering::Relaxed);
    poller.await.context("the ack-floor poller")?;
    let info = webhooks
        .consumer_info(&cfg.consumer)
        .await
        .context("the consumer's final state")?;
    let dead_letters = js
        .get_stream(&cfg.deadletter_stream)
        .await
        .context("the dead-letter stream")?
        .info()
        .await
        .context("the dead-letter stream's state")?
        .state
        .messages;
    Ok(Fed {
        target,
        sent,
        feed_secs,
        drain_secs,
        last_seq,
        final_floor: info.ack_floor.stream_sequence,
        num_pending: info.num_pending,
        num_ack_pending: info.num_ack_pending,
        num_redelivered: info.num_redelivered,
        dead_letters,
        rss,
    })
}

/// Publish → acked latency in ms: the first poll that saw the ack floor reach the message.
/// The floor moves only over contiguous acks, so this is the latency of the message and
/// of all before it: an upper bound, plus up to one poll interval.
fn latency_ms(floors: &[(u64, u64)], p: &Published) -> Option<f64> {
    let i = floors.partition_point(|&(_, floor)| floor < p.seq);
    floors
        .get(i)
        .map(|&(t, _)| t.saturating_sub(p.at_us) as f64 / 1000.0)
}

/// p50, p99 and max of a sorted slice.
fn percentiles(sorted: &[f64]) -> Option<(f64, f64, f64)> {
    let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    (!sorted.is_empty()).then(|| (at(0.5), at(0.99), sorted[sorted.len() - 1]))
}

fn progress(shared: &Shared, s: &Settings, sent: u64, elapsed: Duration, rss: Option<u64>) {
    let end = elapsed.as_micros() as u64;
    let start = end.saturating_sub(s.interval * 1_000_000);
    let floors = shared.floors.lock().expect("not poisoned").clone();
    let mut lat: Vec<f64> = Vec::new();
    let mut waiting = 0;
    for p in shared.published.lock().expect("not poisoned").iter() {
        if p.at_us >= start && p.at_us < end {
            match latency_ms(&floors, p) {
                Some(ms) => lat.push(ms),
                None => waiting += 1,
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    let floor = floors.last().map_or(0, |f| f.1);
    let (p50, p99, max) = percentiles(&lat).unwrap_or_default();
    eprintln!(
        "… {:>4.0} s: published {sent} ({:.0}/s), ack floor {floor}; last {} s: \
         p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({waiting} not yet acked); RSS {}",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        s.interval,
        rss.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
    );
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Prints the report; returns why the run failed, if it did.
fn report(
    s: &Settings,
    shared: &Shared,
    fed: &Fed,
    raw_per_s: f64,
    pid: u32,
    quick: bool,
) -> Vec<String> {
    let mut failures = Vec::new();
    let floors = shared.floors.lock().expect("not poisoned").clone();
    let mut published = shared.published.lock().expect("not poisoned").clone();
    published.sort_by_key(|p| p.seq);
    let failed = shared.failures.load(Ordering::Relaxed);
    let row = |label: &str, value: String| println!("{label:<44} {value}");
    println!(
        "load test: `aftersales serve` (pid {pid}) fed from NATS JetStream on loopback, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "feed: {} Taobao refunds opened (taobao_refund_RefundCreated), then each in turn \
         refused -> buyer modified -> message left (rejected, resubmitted, annotated), repeated",
        s.tickets
    );
    row(
        "raw JetStream consume + ack",
        format!("{raw_per_s:.0}/s ({RAW_MESSAGES} messages, a stream of its own)"),
    );
    let rate = published.len() as f64 / fed.feed_secs;
    row(
        "target rate",
        format!(
            "{:.0}/s for {} s ({} s warm-up) = {:.3} of raw",
            s.rate,
            s.seconds,
            s.warmup,
            s.rate / raw_per_s
        ),
    );
    row(
        "published, confirmed by the broker",
        format!(
            "{} of {} in {:.1} s = {rate:.0}/s ({:.1} % of target), {failed} failed",
            published.len(),
            fed.target,
            fed.feed_secs,
            100.0 * published.len() as f64 / fed.target as f64
        ),
    );
    if (published.len() as f64) < 0.99 * fed.target as f64 {
        failures.push(format!(
            "the feed fell behind: {} of {} messages confirmed (sent {})",
            published.len(),
            fed.target,
            fed.sent
        ));
    }
    if failed > 0 {
        failures.push(format!("{failed} publishes failed"));
    }
    let mut confirm: Vec<f64> = published
        .iter()
        .map(|p| (p.confirmed_us - p.at_us) as f64 / 1000.0)
        .collect();
    confirm.sort_by(f64::total_cmp);
    if let Some((p50, p99, max)) = percentiles(&confirm) {
        row(
            "publish -> broker confirmation",
            format!("p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"),
        );
    }
    let all_acked = fed.final_floor >= fed.last_seq && fed.num_ack_pending == 0;
    row(
        "acked by the service at the end",
        format!(
            "{} (ack floor {} of last sequence {}, {} pending, {} awaiting ack, {} redelivered){}",
            if all_acked { "all" } else { "NOT ALL" },
            fed.final_floor,
            fed.last_seq,
            fed.num_pending,
            fed.num_ack_pending,
            fed.num_redelivered,
            fed.drain_secs.map_or(String::new(), |d| format!(
                ", {:.0} ms after the last publish",
                d * 1000.0
            )),
        ),
    );
    if !all_acked || fed.num_pending > 0 {
        failures.push(format!(
            "not every message was acked: ack floor {} of {}, {} pending, {} awaiting ack",
            fed.final_floor, fed.last_seq, fed.num_pending, fed.num_ack_pending
        ));
    }
    row("dead letters", fed.dead_letters.to_string());
    if fed.dead_letters > 0 {
        failures.push(format!(
            "{} dead letters: the feed was wrong (aftersales deadletter list shows why)",
            fed.dead_letters
        ));
    }

    println!(
        "\npublish -> acked by the service (after its durable append), from the durable \
         consumer's ack floor polled every {} ms; RSS of the service every {} s",
        POLL.as_millis(),
        RSS_EVERY.as_secs()
    );
    println!(
        "{:>11}  {:>9}  {:>8}  {:>8}  {:>8}  {:>8}  {:>9}  {:>9}  {:>9}",
        "seconds",
        "published",
        "unacked",
        "p50 ms",
        "p99 ms",
        "max ms",
        "RSS min",
        "RSS max",
        "RSS last"
    );
    let interval_us = s.interval * 1_000_000;
    let buckets = s.seconds.div_ceil(s.interval);
    for b in 0..buckets {
        let (from, to) = (b * interval_us, (b + 1) * interval_us);
        let in_bucket: Vec<&Published> = published
            .iter()
            .filter(|p| p.at_us >= from && p.at_us < to)
            .collect();
        let mut lat: Vec<f64> = in_bucket
            .iter()
            .filter_map(|p| latency_ms(&floors, p))
            .collect();
        lat.sort_by(f64::total_cmp);
        let rss: Vec<u64> = fed
            .rss
            .iter()
            .filter(|r| r.0 >= from as f64 / 1e6 && r.0 < to as f64 / 1e6)
            .map(|r| r.1)
            .collect();
        let (p50, p99, max) = percentiles(&lat).unwrap_or_default();
        println!(
            "{:>5}-{:<5}  {:>9}  {:>8}  {p50:>8.1}  {p99:>8.1}  {max:>8.1}  {:>9}  {:>9}  {:>9}{}",
            from / 1_000_000,
            (to / 1_000_000).min(s.seconds),
            in_bucket.len(),
            in_bucket.len() - lat.len(),
            rss.iter()
                .min()
                .map_or("-".into(), |&k| format!("{:.1} M", mib(k))),
            rss.iter()
                .max()
                .map_or("-".into(), |&k| format!("{:.1} M", mib(k))),
            rss.last()
                .map_or("-".into(), |&k| format!("{:.1} M", mib(k))),
            if to <= s.warmup * 1_000_000 {
                "  (warm-up)"
            } else {
                ""
            },
        );
    }

    let warm_us = s.warmup * 1_000_000;
    let mut after: Vec<f64> = published
        .iter()
        .filter(|p| p.at_us >= warm_us)
        .filter_map(|p| latency_ms(&floors, p))
        .collect();
    after.sort_by(f64::total_cmp);
    match percentiles(&after) {
        Some((p50, p99, max)) => {
            row(
                "\nafter warm-up, publish -> acked",
                format!(
                    "p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms over {} messages",
                    after.len()
                ),
            );
            // 20 s on a shared 2-core CI machine is too short to judge a p99 by (one
            // stall of the machine is a percent of it): the quick form reports it, the full
            // form fails on it.
            if p99 >= P99_LIMIT_MS && !quick {
                failures.push(format!(
                    "p99 after warm-up is {p99:.1} ms, not under {P99_LIMIT_MS} ms at {:.0}/s",
                    s.rate
                ));
            } else if p99 >= P99_LIMIT_MS {
                println!(
                    "{:<44} p99 {p99:.1} ms is over {P99_LIMIT_MS} ms; not judged in the quick form",
                    "latency"
                );
            }
        }
        None => failures.push("no message after warm-up was acked".into()),
    }

    // Memory: from the first sample after warm-up to the last one.
    let post: Vec<(f64, u64)> = fed
        .rss
        .iter()
        .copied()
        .filter(|r| r.0 >= s.warmup as f64)
        .collect();
    if let (Some(first), Some(last)) = (post.first(), post.last()) {
        let growth = mib(last.1) - mib(first.1);
        let allowed = (0.05 * mib(first.1)).max(20.0);
        let flat = growth <= allowed;
        row(
            "RSS at the end of warm-up -> at the end",
            format!(
                "{:.1} MiB -> {:.1} MiB: {growth:+.1} MiB ({:+.1} %), max {:.1} MiB",
                mib(first.1),
                mib(last.1),
                100.0 * growth / mib(first.1),
                mib(post.iter().map(|r| r.1).max().unwrap_or(0)),
            ),
        );
        row(
            "RSS slope after warm-up (least squares)",
            format!("{:+.2} MiB/min over {} samples", slope(&post), post.len()),
        );
        row(
            "memory",
            format!(
                "{} (growth {growth:+.1} MiB, allowed {allowed:.1} MiB: the larger of 5 % and \
                 20 MiB){}",
                if flat { "flat" } else { "GROWING" },
                if quick {
                    "; not judged in the quick form"
                } else {
                    ""
                }
            ),
        );
        if !flat && !quick {
            failures.push(format!(
                "memory grew {growth:.1} MiB after warm-up (allowed {allowed:.1} MiB)"
            ));
        }
    } else {
        failures.push("no RSS sample after warm-up".into());
    }
    failures
}

/// Least-squares slope of RSS (MiB) over time (minutes).
fn slope(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let xs = samples.iter().map(|s| s.0 / 60.0);
    let ys = samples.iter().map(|s| mib(s.1));
    let (mx, my) = (xs.clone().sum::<f64>() / n, ys.clone().sum::<f64>() / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in xs.zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_opens_every_ticket_then_cycles() {
        let topic = |k| {
            let v: serde_json::Value =
                serde_json::from_str(&body(k, 3, "2026-12-02 07:00:00")).unwrap();
            v["topic"]
                .as_str()
                .unwrap()
                .trim_start_matches("taobao_refund_")
                .to_owned()
        };
        let topics: Vec<String> = (0..12).map(topic).collect();
        assert_eq!(
            topics,
            [
                "RefundCreated",
                "RefundCreated",
                "RefundCreated",
                "RefundSellerRefuseAgreement",
                "RefundSellerRefuseAgreement",
                "RefundSellerRefuseAgreement",
                "RefundBuyerModifyAgreement",
                "RefundBuyerModifyAgreement",
                "RefundBuyerModifyAgreement",
                "RefundCreateMessage",
                "RefundCreateMessage",
                "RefundCreateMessage",
            ]
        );
    }

    #[test]
    fn every_message_of_the_cycle_is_accepted_by_a_real_ticket() {
        use aftersales_ingest::{apply, Outcome};
        let dir = tempfile::tempdir().unwrap();
        let store = aftersales_store::Store::open(
            dir.path(),
            aftersales_store::StoreConfig::new(Arc::new(aftersales_clock::SystemClock)),
        )
        .unwrap();
        let tickets = aftersales_app::Tickets::new(Arc::new(store)).unwrap();
        let platform: aftersales_ticket::Platform = "tmall".parse().unwrap();
        for k in 0..2 * 10 {
            let outcome = apply(&tickets, &platform, body(k, 2, &china_now()).as_bytes());
            assert!(
                matches!(outcome, Outcome::Stored { applied: 1, .. }),
                "message {k}: {outcome:?}"
            );
        }
        // Each step is the event it stands for, not a fallback annotation.
        let id = aftersales_ticket::TicketId::parse("tmall:200000000").unwrap();
        let names: Vec<&str> = tickets
            .history(&id)
            .unwrap()
            .iter()
            .map(|s| s.envelope.event.name())
            .collect();
        let cycle = ["rejected", "resubmitted", "annotated"];
        let expected: Vec<&str> = std::iter::once("opened")
            .chain(cycle.into_iter().cycle().take(9))
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn latency_is_the_first_poll_that_saw_the_floor_reach_the_message() {
        let floors = [(1_000, 2), (5_000, 4), (9_000, 10)];
        let p = |seq, at_us| Published {
            seq,
            at_us,
            confirmed_us: at_us,
        };
        assert_eq!(latency_ms(&floors, &p(1, 0)), Some(1.0));
        assert_eq!(latency_ms(&floors, &p(3, 1_000)), Some(4.0));
        assert_eq!(latency_ms(&floors, &p(11, 0)), None);
        assert!((slope(&[(0.0, 1024), (60.0, 2048)]) - 1.0).abs() < 1e-9);
    }
}
