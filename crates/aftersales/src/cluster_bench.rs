//! `bench cluster`: webhooks/s stored by 1, 2, 3… partitioned instances (`serve` child
//! processes with `[cluster]`) on one nats-server, next to a raw JetStream consume + ack
//! over the same stream, in the same run (BENCHMARKS.md, "Scale-out").
//!
//! Per instance count, on a nats-server of its own: the instances start and share the
//! partitions out (the clock starts only once every partition is served); N Taobao
//! refund-created webhooks (a new ticket each, its review already overdue, so each
//! partition's scheduler fires too) are published to their partitions' subjects; the
//! figure is N over the time until every instance's partitions have stored them all
//! (decide, durable append, publish to `AFTERSALES_EVENTS`, ack). Then a raw consumer reads
//! and acks the same N messages.

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use aftersales_ingest::bench::sample;
use aftersales_partition::{partition_of, PartitionCount};
use aftersales_ticket::TicketId;
use anyhow::{ensure, Context, Result};
use async_nats::jetstream::{self, consumer};

use crate::ingest::{own_server, publish_confirmed, raw_consume_ack, runtime};

pub struct ClusterBenchOptions {
    pub quick: bool,
    pub messages: Option<usize>,
    pub instances: Vec<usize>,
    pub partitions: u64,
    pub workers_per_partition: usize,
}

struct Instance {
    child: Child,
    port: u16,
}

impl Instance {
    fn metrics(&self) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    }

    /// Partitions this instance serves now.
    fn served(&self) -> u64 {
        self.metrics().map_or(0, |text| {
            text.lines()
                .filter(|l| l.starts_with("aftersales_partition_events_stored{"))
                .count() as u64
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

pub fn run(opts: ClusterBenchOptions) -> Result<ExitCode> {
    let messages = opts
        .messages
        .unwrap_or(if opts.quick { 2_000 } else { 30_000 });
    ensure!(messages > 0, "--messages must be at least 1");
    ensure!(
        !opts.instances.is_empty() && opts.instances.iter().all(|&k| k >= 1),
        "--instances takes counts of 1 or more, like 1,2,3"
    );
    let count = PartitionCount::new(opts.partitions).context("--partitions")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "scale-out benchmark: {messages} webhooks over {} partitions, {cpus} CPUs, one \
         nats-server, instances as child processes",
        count.get()
    );
    println!("instances  stored/s   raw consume+ack/s  ratio   settle s  per-instance partitions");
    let mut rows = Vec::new();
    for &k in &opts.instances {
        let row = case(k, messages, count, opts.workers_per_partition)?;
        println!(
            "{k:>9}  {:>8.0}   {:>17.0}  {:>5.2}   {:>8.1}  {:?}",
            row.stored_per_s,
            row.raw_per_s,
            row.stored_per_s / row.raw_per_s,
            row.settle.as_secs_f64(),
            row.shares
        );
        rows.push(row);
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        println!(
            "{} instances: {:.2}x the throughput of {} (same machine, same {cpus} CPUs)",
            opts.instances.last().unwrap_or(&1),
            last.stored_per_s / first.stored_per_s,
            opts.instances.first().unwrap_or(&1)
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct Row {
    stored_per_s: f64,
    raw_per_s: f64,
    settle: Duration,
    shares: Vec<u64>,
}

fn case(k: usize, messages: usize, count: PartitionCount, workers: usize) -> Result<Row> {
    let (_server, url) = own_server()?;
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let js = rt.block_on(async {
        let client = async_nats::connect(url.as_str()).await?;
        let js = jetstream::new(client);
        aftersales_ingest::deadletter::ensure_streams(
            &js,
            &aftersales_ingest::IngestConfig::default(),
        )
        .await?;
        anyhow::Ok(js)
    })?;
    let exe = std::env::current_exe().context("finding the aftersales binary")?;
    let started = Instant::now();
    let instances: Vec<Instance> = (0..k)
        .map(|i| start(&exe, dir.path(), &url, i, count, workers))
        .collect::<Result<_>>()?;
    // Settled: every partition served somewhere, each instance at its share.
    let share = (count.get() as usize).div_ceil(k) as u64;
    let shares = loop {
        let shares: Vec<u64> = instances.iter().map(Instance::served).collect();
        if shares.iter().sum::<u64>() == u64::from(count.get())
            && shares.iter().all(|&s| s + 1 >= share)
        {
            break shares;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(90),
            "{k} instances did not share the partitions out: {shares:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let settle = started.elapsed();

    let started = Instant::now();
    rt.block_on(publish(&js, messages, count))?;
    // Done when every partition's consumer has acked everything: the broker's count, which
    // a partition that moved between instances meanwhile does not confuse.
    loop {
        let left = rt.block_on(unacked(&js, count))?;
        if left == 0 {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{k} instances left {left} of {messages} unacknowledged after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stored_per_s = messages as f64 / started.elapsed().as_secs_f64();
    drop(instances);
    let raw_per_s = rt.block_on(async {
        let stream = js.get_stream("AFTERSALES_WEBHOOKS").await?;
        raw_consume_ack(&stream, "bench-raw", messages, 1024).await
    })?;
    Ok(Row {
        stored_per_s,
        raw_per_s,
        settle,
        shares,
    })
}

fn start(
    exe: &Path,
    dir: &Path,
    url: &str,
    i: usize,
    count: PartitionCount,
    workers: usize,
) -> Result<Instance> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.join(format!("i{i}.toml"));
    std::fs::write(
        &config,
        format!(
            "[events]\npartitions = {}\npoll_millis = 5\n\n[cluster]\nenabled = true\n\
             instance = \"bench-{i}\"\nlease_ttl_millis = 3000\nlease_margin_millis = 600\nworkers_per_partition = {}\n",
            count.get(),
            workers
        ),
    )?;
    let log = std::fs::File::create(dir.join(format!("i{i}.log")))?;
    let child = Command::new(exe)
        .args([
            "serve",
            "--nats",
            url,
            "--http",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data")
        .arg(dir.join(format!("i{i}")))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting serve")?;
    Ok(Instance { child, port })
}

async fn publish(js: &jetstream::Context, messages: usize, count: PartitionCount) -> Result<()> {
    let subjects = (0..messages)
        .map(|n| {
            let ticket = TicketId::parse(&format!("tmall:{}", 100_000_000 + n))?;
            let p = partition_of(&ticket, count);
            Ok((format!("aftersales.webhooks.tmall.{p}"), sample(n)))
        })
        .collect::<Result<Vec<_>>>()?;
    publish_confirmed(js, subjects).await
}

/// Messages the partitions' consumers have not acknowledged yet.
async fn unacked(js: &jetstream::Context, count: PartitionCount) -> Result<u64> {
    let stream = js.get_stream("AFTERSALES_WEBHOOKS").await?;
    let mut left = 0;
    for p in count.all() {
        let mut c: consumer::PullConsumer = stream
            .get_consumer(&format!("aftersales-ingest-p{p}"))
            .await
            .map_err(|e| anyhow::anyhow!("the consumer of partition {p}: {e}"))?;
        let info = c.info().await?;
        left += info.num_pending + info.num_ack_pending as u64;
    }
    Ok(left)
}
