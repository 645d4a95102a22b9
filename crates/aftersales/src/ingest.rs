//! `ingest`, `deadletter` and `bench ingest`: the NATS side of the binary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_ingest::{bench, deadletter, Ingest, IngestConfig};
use aftersales_store::{Store, StoreConfig};
use aftersales_timers::RuleBook;
use anyhow::{Context, Result};

use crate::timers::rule_pack_chooser;

/// The `[nats]` table of the config file (if any), then `--nats` overrides the URL.
pub fn config(file: Option<&Path>, nats: Option<&str>) -> Result<IngestConfig> {
    let mut cfg = crate::serve::load(file)?.nats.unwrap_or_default();
    if let Some(url) = nats {
        cfg.url = url.to_owned();
    }
    Ok(cfg)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Completes once `rx` says stop (or its sender is gone).
pub(crate) async fn until_stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Publishes every `(subject, payload)` and returns once the broker confirmed them all,
/// 1,024 confirmations awaited at a time (the client holds at most 5,000 unconfirmed).
pub(crate) async fn publish_confirmed(
    js: &async_nats::jetstream::Context,
    messages: impl IntoIterator<Item = (String, bytes::Bytes)>,
) -> Result<()> {
    let mut acks = Vec::with_capacity(1024);
    for (subject, payload) in messages {
        acks.push(js.publish(subject, payload).await?);
        if acks.len() == 1024 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }
    Ok(())
}

/// The broker's limit in the benchmarks: a durable pull consumer `name` on `stream` that
/// reads `count` messages and acks each, nothing else; messages/s.
pub(crate) async fn raw_consume_ack(
    stream: &async_nats::jetstream::stream::Stream,
    name: &str,
    count: usize,
    max_in_flight: usize,
) -> Result<f64> {
    use async_nats::jetstream::consumer;
    use futures_util::StreamExt;
    let raw: consumer::PullConsumer = stream
        .get_or_create_consumer(
            name,
            consumer::pull::Config {
                durable_name: Some(name.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: max_in_flight as i64,
                ..Default::default()
            },
        )
        .await
        .context("creating the raw consumer")?;
    let started = std::time::Instant::now();
    let mut messages = raw
        .stream()
        .max_messages_per_batch(max_in_flight.clamp(1, 256))
        .messages()
        .await?;
    for _ in 0..count {
        match messages.next().await {
            Some(Ok(m)) => m.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?,
            Some(Err(e)) => anyhow::bail!("raw consume: {e}"),
            None => anyhow::bail!("the raw consumer's stream ended"),
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Consumes platform webhooks from NATS into the store until SIGINT or SIGTERM.
pub fn run(data: &Path, cfg: IngestConfig) -> Result<ExitCode> {
    let store = Store::open(data, StoreConfig::new(Arc::new(SystemClock)))
        .with_context(|| format!("opening the store in {}", data.display()))?;
    let tickets = Tickets::new(Arc::new(store))
        .context("reading the event log")?
        .with_rule_packs(rule_pack_chooser(RuleBook::builtin()));
    let tickets = Arc::new(tickets);
    let rt = runtime()?;
    rt.block_on(async {
        let client = cfg.connect().await?;
        eprintln!(
            "ingesting {}.> from {} into {} (SIGTERM or Ctrl-C stops)",
            cfg.subject_prefix,
            cfg.url,
            data.display()
        );
        let ingest = Ingest::new(cfg, tickets.clone(), Arc::new(SystemClock));
        let stats = ingest.stats();
        ingest.run(client, shutdown_signal()).await?;
        eprintln!(
            "stopped: {} messages stored ({} redeliveries), {} dead-lettered",
            stats.stored.load(std::sync::atomic::Ordering::Relaxed),
            stats.duplicates.load(std::sync::atomic::Ordering::Relaxed),
            stats
                .dead_lettered
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        Ok::<_, anyhow::Error>(())
    })?;
    tickets.store().close().context("closing the store")?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the dead letters, one per line (or JSON lines).
pub fn list(cfg: IngestConfig, from: u64, limit: usize, json: bool) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let js = async_nats::jetstream::new(cfg.connect().await?);
        let letters = deadletter::list(&js, &cfg, from, limit).await?;
        for l in &letters {
            if json {
                println!("{}", serde_json::to_string(l)?);
            } else {
                println!(
                    "{:>8}  {}  {:<34}  {:<32}  delivered {}x  {}",
                    l.sequence, l.at, l.original_subject, l.reason_code, l.delivered, l.reason
                );
            }
        }
        if !json {
            eprintln!(
                "{} dead letter(s) in {}",
                letters.len(),
                cfg.deadletter_stream
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Feeds dead letters back to their original subjects.
pub fn replay(cfg: IngestConfig, seqs: &[u64]) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let js = async_nats::jetstream::new(cfg.connect().await?);
        let n = deadletter::replay(&js, &cfg, seqs).await?;
        eprintln!("replayed {n} dead letter(s) to their original subjects");
        Ok(ExitCode::SUCCESS)
    })
}

/// A `nats-server -js` of the benchmark's own, on a free loopback port.
pub(crate) struct OwnServer {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl OwnServer {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn own_server() -> Result<(OwnServer, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let child = std::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting nats-server (install it, or pass --nats URL)")?;
    let server = OwnServer { child, _dir: dir };
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "nats-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((server, format!("nats://127.0.0.1:{port}")))
}

pub fn bench_ingest(
    quick: bool,
    nats: Option<String>,
    messages: Option<usize>,
    replicas: usize,
    workers: Option<usize>,
    dir: Option<PathBuf>,
) -> Result<ExitCode> {
    let mut b = if quick {
        bench::BenchConfig::quick()
    } else {
        bench::BenchConfig::full()
    };
    if let Some(n) = messages {
        b.messages = n;
    }
    let (server, url) = match nats {
        Some(url) => (None, url),
        None => {
            let (s, url) = own_server()?;
            (Some(s), url)
        }
    };
    b.broker_pid = server.as_ref().map(OwnServer::pid);
    let tmp = tempfile::tempdir()?;
    let data = dir
        .unwrap_or_else(|| tmp.path().to_path_buf())
        .join("ingest-bench");
    anyhow::ensure!(
        !data.exists(),
        "{} exists; the benchmark needs a fresh store",
        data.display()
    );
    let run_id = std::process::id();
    let cfg = IngestConfig {
        url,
        // Names of its own, so a shared broker's real streams are never touched.
        stream: format!("BENCH_WEBHOOKS_{run_id}"),
        subject_prefix: format!("bench{run_id}.webhooks"),
        deadletter_stream: format!("BENCH_DEADLETTER_{run_id}"),
        deadletter_prefix: format!("bench{run_id}.deadletter"),
        consumer: "bench-ingest".into(),
        replicas,
        workers: workers.unwrap_or(IngestConfig::default().workers),
        ..IngestConfig::default()
    };
    let report = runtime()?.block_on(bench::run(&cfg, &data, &b, &|s| eprintln!("… {s}")))?;
    println!(
        "ingest benchmark: {} backlog messages (Taobao refund-created, one ticket each), \
         then {} live at {:.0}/s",
        report.messages, b.live_messages, report.live_per_s
    );
    let row = |label: &str, value: String| println!("{label:<46} {value:>12}");
    let rate = |r: f64| format!("{r:.0}/s");
    row(
        "publish, confirmed by the broker",
        rate(report.publish_per_s),
    );
    row("raw JetStream consume + ack", rate(report.raw_per_s));
    row(
        "ingest (adapter, decide, durable append, ack)",
        rate(report.ingest_per_s),
    );
    row(
        "ratio to raw JetStream (goal >= 0.5)",
        format!("{:.2}", report.ratio()),
    );
    row(
        "publish -> durable append p50",
        format!("{:.1} ms", report.p50_ms),
    );
    row(
        "publish -> durable append p99",
        format!("{:.1} ms", report.p99_ms),
    );
    row(
        &format!("follow-ups on existing tickets ({})", report.follow_ups),
        rate(report.follow_up_per_s),
    );
    row(
        "follow-ups: ratio to raw JetStream",
        format!("{:.2}", report.follow_up_ratio()),
    );
    row("events stored", report.events_stored.to_string());
    row(
        "events per flush, backlog",
        format!("{:.1}", report.events_per_flush),
    );
    row(
        "store alone, 64 writers x 1 event",
        rate(report.store_per_s),
    );
    row("bare sled, batches of 64 + flush", rate(report.sled_per_s));
    row(
        "ingest / store alone",
        format!("{:.2}", report.ingest_per_s / report.store_per_s),
    );
    row(
        "bare sled / raw JetStream (the ceiling)",
        format!("{:.2}", report.sled_per_s / report.raw_per_s),
    );
    if let Some(us) = report.sled_cpu_us {
        row("bare sled: CPU us/record", format!("{us:.1}"));
    }
    for (phase, cpu) in [
        ("raw", &report.raw_cpu),
        ("ingest", &report.ingest_cpu),
        ("follow-ups", &report.follow_up_cpu),
    ] {
        let Some(cpu) = cpu else { continue };
        let broker = cpu
            .broker_us
            .map_or_else(|| "?".to_owned(), |us| format!("{us:.1}"));
        row(
            &format!("{phase}: CPU us/message, ours + broker"),
            format!("{:.1} + {broker}", cpu.own_us),
        );
        if phase != "raw" {
            for (what, us) in &cpu.threads {
                row(&format!("  of ours: {what}"), format!("{us:.1}"));
            }
        }
        row(
            &format!("{phase}: machine busy, rate its CPU allows"),
            format!(
                "{:.0} % {:.0}/s",
                cpu.machine_busy * 100.0,
                cpu.rate_limit()
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}
