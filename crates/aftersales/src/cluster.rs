//! `serve` in a partitioned deployment (`[cluster] enabled = true`; docs/PARTITIONS.md).
//!
//! The instance claims its share of the partitions through leases (`aftersales-lease`).
//! For each partition it owns it runs, on a sled store of its own
//! (`<data>/partitions/<n>`): the store brought up to date from `AFTERSALES_EVENTS`
//! (`eventstream::rebuild`), the events publisher, the alert publisher, the scheduler,
//! and an ingest consumer of `aftersales.webhooks.*.<n>` that acknowledges a webhook only
//! once the events stream holds its events. A lost lease fences the partition at once
//! (nothing more is applied, published or acknowledged), then its work is stopped.
//!
//! The read models fold the events stream of every partition, so any instance's
//! dashboards answer for all of them; a ticket's own routes read its partition's store
//! here, or its events back from the stream by their sequences.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aftersales_alerts::{cursor_path as alerts_cursor, Publisher};
use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_eventstream::{
    cursor_path as events_cursor, EventPublisher, Publishers, RebuildError,
};
use aftersales_http::{router, Api, TicketSource, Tokens};
use aftersales_ingest::{Ingest, IngestConfig, PartitionDuty, Stats};
use aftersales_lease::{Change, LeaseConfig, Leases, Timing};
use aftersales_outbox::{write_cursor, OutboxStats};
use aftersales_partition::{partition_of, Partition, PartitionCount};
use aftersales_scheduler::Scheduler;
use aftersales_store::{Store, StoreConfig, StoreError};
use aftersales_timers::{Calendar, RuleBook};
use aftersales_views::SharedViews;
use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use serde::Deserialize;
use tokio::sync::watch;

use crate::ingest::until_stopped;
use crate::serve::{FileConfig, EXIT_STORE_FAILED};
use crate::timers::rule_pack_chooser;

/// `[cluster]`: partition ownership (docs/PARTITIONS.md). The partition count is
/// `[events] partitions`.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    pub enabled: bool,
    /// This instance's name: unique in the deployment, stable across restarts (default:
    /// the host name, which a StatefulSet makes stable).
    pub instance: String,
    pub lease_bucket: String,
    pub lease_ttl_millis: u64,
    /// The lease is given up this long before it runs out (clock drift, time to stop).
    pub lease_margin_millis: u64,
    /// sled's page cache per owned partition.
    pub cache_mib_per_partition: u64,
    /// Ingest worker threads per owned partition.
    pub workers_per_partition: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            instance: String::new(),
            lease_bucket: "AFTERSALES_LEASES".into(),
            lease_ttl_millis: 10_000,
            lease_margin_millis: 2_000,
            cache_mib_per_partition: 8,
            workers_per_partition: 16,
        }
    }
}

impl ClusterConfig {
    fn instance(&self) -> Result<String> {
        if !self.instance.is_empty() {
            return Ok(self.instance.clone());
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name for [cluster] instance")?;
        Ok(host.trim().to_owned())
    }

    fn timing(&self) -> Result<Timing> {
        ensure!(
            self.lease_margin_millis * 2 < self.lease_ttl_millis,
            "[cluster] lease_margin_millis ({}) must be under half of lease_ttl_millis ({})",
            self.lease_margin_millis,
            self.lease_ttl_millis
        );
        Ok(Timing {
            ttl: Duration::from_millis(self.lease_ttl_millis),
            margin: Duration::from_millis(self.lease_margin_millis),
        })
    }
}

/// Where a partition's store lives.
pub fn partition_dir(data: &Path, p: Partition) -> PathBuf {
    data.join("partitions").join(p.to_string())
}

/// What every partition's work needs.
struct Ctx {
    data: PathBuf,
    file: FileConfig,
    nats: IngestConfig,
    client: async_nats::Client,
    count: PartitionCount,
    /// Set by the lease callback, so a partition's work can check it still owns it.
    owned: Mutex<BTreeSet<Partition>>,
    /// The handlers of the partitions being served, for the ticket routes.
    tickets: Mutex<BTreeMap<Partition, Arc<Tickets>>>,
    /// Per partition: its ingest's and events publisher's counters, for `/metrics`.
    stats: Mutex<BTreeMap<Partition, PartitionStats>>,
    /// Set when a partition's store could not write: the process stops (exit 75).
    store_failed: Mutex<Option<String>>,
    /// Per ticket, the events stream sequences of its events (as far as the read models
    /// have read): how a ticket of a partition served elsewhere is read (8 bytes an event).
    sequences: Mutex<HashMap<String, Vec<u64>>>,
}

/// A served partition's counters.
struct PartitionStats {
    ingest: Arc<Stats>,
    events: Arc<OutboxStats>,
}

/// Where and for whom the HTTP API listens.
pub struct Listen {
    pub addr: SocketAddr,
    pub tokens: Tokens,
}

/// One owned partition's running work.
struct Running {
    handle: Handle,
    task: tokio::task::JoinHandle<Result<()>>,
}

/// What the lease callback needs to stop a partition's effects at once.
#[derive(Clone)]
struct Handle {
    fence: Arc<AtomicBool>,
    stop: Arc<watch::Sender<bool>>,
}

impl Handle {
    /// Nothing more is applied, acknowledged or published from here on; the work then
    /// winds down by itself.
    fn fence(&self) {
        self.fence.store(true, Ordering::Release);
        let _ = self.stop.send(true);
    }
}

pub fn run(
    file: FileConfig,
    data: &Path,
    nats: IngestConfig,
    Listen { addr, tokens }: Listen,
    rt: tokio::runtime::Runtime,
    stop_rx: watch::Receiver<bool>,
    stop_tx: Arc<watch::Sender<bool>>,
) -> Result<ExitCode> {
    let count = PartitionCount::new(file.events.partitions).context("[events] partitions")?;
    let instance = file.cluster.instance()?;
    let timing = file.cluster.timing()?;
    ensure!(
        file.events.publish,
        "[cluster] needs [events] publish = true: a partition is rebuilt from the events stream"
    );
    std::fs::create_dir_all(data.join("partitions"))
        .with_context(|| format!("creating {}", data.join("partitions").display()))?;
    let result = rt.block_on(async {
        let client = nats.connect().await?;
        let js = jetstream::new(client.clone());
        let ctx = Arc::new(Ctx {
            data: data.to_owned(),
            nats,
            client: client.clone(),
            count,
            owned: Mutex::default(),
            tickets: Mutex::default(),
            stats: Mutex::default(),
            store_failed: Mutex::default(),
            sequences: Mutex::default(),
            file,
        });
        let fences: Arc<Mutex<BTreeMap<Partition, Handle>>> = Arc::default();
        let (changes_tx, mut changes) = tokio::sync::mpsc::unbounded_channel::<Change>();
        let on_change = {
            let (ctx, fences) = (ctx.clone(), fences.clone());
            Arc::new(move |c: &Change| {
                *ctx.owned.lock().unwrap() = c.owned.clone();
                // Fenced here, on the lease loop, before the bucket can say the partition
                // is free: nothing more is applied, published or acknowledged for it.
                for p in &c.lost {
                    if let Some(h) = fences.lock().unwrap().get(p) {
                        h.fence();
                    }
                }
                let _ = changes_tx.send(c.clone());
            })
        };
        let leases = Leases::new(
            LeaseConfig {
                bucket: ctx.file.cluster.lease_bucket.clone(),
                instance: instance.clone(),
                partitions: count,
                timing,
            },
            on_change,
        )?;
        // The leases on a thread, runtime and connection of their own: however busy the
        // partitions keep the main runtime, a renewal is never late because of them.
        let lease_thread = {
            let (nats, stop) = (ctx.nats.clone(), until_stopped(stop_rx.clone()));
            std::thread::Builder::new()
                .name("leases".into())
                .spawn(move || -> Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let client = nats.connect().await?;
                        leases.run(jetstream::new(client), stop).await?;
                        anyhow::Ok(())
                    })
                })?
        };

        // The read models: every partition, from the events stream.
        let views = SharedViews::detached(RuleBook::builtin(), Calendar::builtin());
        let views_task = tokio::spawn({
            let (views, js, cfg) = (views.clone(), js.clone(), ctx.file.events.clone());
            let (ctx, stop) = (ctx.clone(), until_stopped(stop_rx.clone()));
            async move {
                let on_batch = |batch: Vec<(u64, aftersales_store::RecordedEvent)>| {
                    let mut sequences = ctx.sequences.lock().unwrap();
                    for (sequence, record) in &batch {
                        sequences
                            .entry(record.stream.as_str().to_owned())
                            .or_default()
                            .push(*sequence);
                    }
                    drop(sequences);
                    fold(&views, batch);
                };
                aftersales_eventstream::follow(&js, &cfg, 1, on_batch, stop).await
            }
        });

        // The partitions: started and stopped as the leases say.
        let manager = tokio::spawn({
            let ctx = ctx.clone();
            async move {
                let mut running: BTreeMap<Partition, Running> = BTreeMap::new();
                // Partitions winding down: one gained again starts once its last run ended
                // (its store closed), and the others are not held up meanwhile.
                let mut stopping: BTreeMap<Partition, tokio::task::JoinHandle<()>> =
                    BTreeMap::new();
                while let Some(change) = changes.recv().await {
                    for p in &change.lost {
                        if let Some(r) = running.remove(p) {
                            stopping.insert(*p, tokio::spawn(stop_partition(*p, r)));
                        }
                    }
                    for p in &change.gained {
                        let (stop, stop_rx) = watch::channel(false);
                        let handle = Handle {
                            fence: Arc::new(AtomicBool::new(false)),
                            stop: Arc::new(stop),
                        };
                        fences.lock().unwrap().insert(*p, handle.clone());
                        let task = tokio::spawn(serve_partition(
                            *p,
                            ctx.clone(),
                            handle.fence.clone(),
                            stop_rx,
                            stopping.remove(p),
                        ));
                        running.insert(*p, Running { handle, task });
                    }
                }
                // The lease loop is gone (it released everything): stop what is left.
                for (p, r) in std::mem::take(&mut running) {
                    stop_partition(p, r).await;
                }
                for (_, s) in stopping {
                    let _ = s.await;
                }
            }
        });

        let ready = Arc::new(AtomicBool::new(false));
        let api = Api {
            // Webhooks come through NATS only; a ticket's routes answer from its partition's
            // store here, or from the events stream.
            tickets: TicketSource::Partitioned {
                owner: Arc::new({
                    let ctx = ctx.clone();
                    move |id| {
                        let p = partition_of(id, ctx.count);
                        let served = ctx.tickets.lock().unwrap().get(&p).cloned();
                        served.ok_or_else(|| format!("partition {p} is served elsewhere"))
                    }
                }),
                stream: Some(Arc::new({
                    let (ctx, js) = (ctx.clone(), js.clone());
                    move |id| {
                        let sequences = ctx
                            .sequences
                            .lock()
                            .unwrap()
                            .get(id.as_str())
                            .cloned()
                            .unwrap_or_default();
                        let (js, name) = (js.clone(), ctx.file.events.stream.clone());
                        Box::pin(async move { stream_history(&js, &name, sequences).await })
                    }
                })),
            },
            scheduler: None,
            ingest: None,
            alerts: None,
            events: None,
            tokens,
            ready: ready.clone(),
            max_body_bytes: ctx.file.http.max_body_bytes,
            secrets: Arc::default(),
            views: Some(views.clone()),
            clock: Arc::new(SystemClock),
            reads: Default::default(),
            extra_metrics: Some(Arc::new({
                let ctx = ctx.clone();
                move || metrics(&ctx)
            })),
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        eprintln!(
            "serving http://{} as instance {instance} of a partitioned deployment ({} \
             partitions, store {}); SIGTERM or Ctrl-C stops",
            listener.local_addr()?,
            count.get(),
            data.display()
        );
        ready.store(true, Ordering::Release);
        tokio::spawn({
            let (ctx, ready, stop_tx) = (ctx.clone(), ready.clone(), stop_tx.clone());
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if let Some(reason) = ctx.store_failed.lock().unwrap().clone() {
                        ready.store(false, Ordering::Release);
                        tracing::error!(%reason, "a partition's store cannot write; stopping");
                        let _ = stop_tx.send(true);
                        return;
                    }
                }
            }
        });
        axum::serve(listener, router(api))
            .with_graceful_shutdown(until_stopped(stop_rx.clone()))
            .await
            .context("serving HTTP")?;
        tokio::task::spawn_blocking(move || lease_thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the lease thread panicked"))?
            .context("the lease loop")?;
        manager.await.context("the partitions")?;
        views_task.await.context("the read models")?;
        let failed = ctx.store_failed.lock().unwrap().clone();
        Ok::<_, anyhow::Error>(failed)
    })?;
    if let Some(reason) = result {
        eprintln!(
            "error: a partition's store could not write ({reason}); stopped without \
             acknowledging anything not published. Free space or fix the disk"
        );
        return Ok(ExitCode::from(EXIT_STORE_FAILED));
    }
    eprintln!("stopped cleanly: every partition handed back");
    Ok(ExitCode::SUCCESS)
}

/// A ticket's records read back from the events stream by their sequences.
async fn stream_history(
    js: &jetstream::Context,
    name: &str,
    sequences: Vec<u64>,
) -> std::result::Result<Vec<aftersales_store::RecordedEvent>, String> {
    if sequences.is_empty() {
        return Ok(Vec::new());
    }
    let stream = js.get_stream(name).await.map_err(|e| e.to_string())?;
    let mut records = Vec::with_capacity(sequences.len());
    for sequence in sequences {
        let m = stream
            .get_raw_message(sequence)
            .await
            .map_err(|e| format!("{name} message {sequence}: {e}"))?;
        records.push(
            aftersales_eventstream::record_from(&m.headers, &m.payload)
                .map_err(|e| format!("{name} message {sequence}: {e}"))?,
        );
    }
    Ok(records)
}

fn fold(views: &SharedViews, batch: Vec<(u64, aftersales_store::RecordedEvent)>) {
    let events: Vec<_> = batch
        .into_iter()
        .filter_map(|(sequence, record)| {
            match aftersales_schema::decode_stored(&record.payload, record.recorded_at) {
                Ok(e) => Some((sequence, e)),
                Err(e) => {
                    tracing::error!(sequence, error = %e, "an event of the events stream cannot be read; the read models skip it");
                    None
                }
            }
        })
        .collect();
    views.apply(&events);
}

async fn stop_partition(p: Partition, r: Running) {
    r.handle.fence();
    match r.task.await {
        Ok(Ok(())) => tracing::info!(partition = %p, "partition stopped"),
        Ok(Err(e)) => {
            tracing::error!(partition = %p, error = %format!("{e:#}"), "partition stopped with an error")
        }
        Err(e) => tracing::error!(partition = %p, error = %e, "partition task failed"),
    }
}

/// Opens a partition's store and brings it up to date from the events stream. A local
/// store the stream contradicts (its unpublished tail was replaced by another owner's) is
/// moved aside, kept for inspection, and the partition is rebuilt into a new one.
async fn open_partition(ctx: &Ctx, p: Partition) -> Result<(Arc<Store>, u64)> {
    let dir = partition_dir(&ctx.data, p);
    let js = jetstream::new(ctx.client.clone());
    let config = || {
        StoreConfig::new(Arc::new(SystemClock))
            .with_cache_capacity(ctx.file.cluster.cache_mib_per_partition.max(1) << 20)
    };
    for attempt in 0..2 {
        let store = open_store(&dir, config).await?;
        let store = Arc::new(store);
        let started = std::time::Instant::now();
        match aftersales_eventstream::rebuild(&js, &ctx.file.events, p, &store, |_| {}).await {
            Ok(done) => {
                tracing::info!(partition = %p, read = done.read, imported = done.imported, head = store.head_position(), ms = started.elapsed().as_millis() as u64, "partition store up to date with the events stream");
                return Ok((store, done.published_head));
            }
            Err(RebuildError::Store(StoreError::ImportDiverges { position, reason }))
                if attempt == 0 =>
            {
                store.close()?;
                drop(store);
                let aside = dir.with_extension(format!(
                    "diverged-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S")
                ));
                tracing::warn!(partition = %p, position, %reason, aside = %aside.display(), "the local store holds records the events stream does not; moved aside, rebuilding");
                std::fs::rename(&dir, &aside)
                    .with_context(|| format!("moving {} aside", dir.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("rebuilding partition {p}")),
        }
    }
    unreachable!("the second attempt starts from an empty store, which cannot diverge")
}

/// Opens a store off the async runtime (an open may wait for the lock of this process's
/// own previous opening of it, see `Store::open`).
async fn open_store(dir: &Path, config: impl Fn() -> StoreConfig) -> Result<Store> {
    let (at, cfg) = (dir.to_owned(), config());
    tokio::task::spawn_blocking(move || Store::open(&at, cfg))
        .await?
        .with_context(|| format!("opening {}", dir.display()))
}

async fn serve_partition(
    p: Partition,
    ctx: Arc<Ctx>,
    fence: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
    previous: Option<tokio::task::JoinHandle<()>>,
) -> Result<()> {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    // A broker that does not answer (or a store that cannot open) is tried again for as
    // long as the lease lasts: a partition this instance holds must not sit unserved.
    let (store, published) = loop {
        match open_partition(&ctx, p).await {
            Ok(opened) => break opened,
            Err(e) => {
                tracing::error!(partition = %p, error = %format!("{e:#}"), "the partition could not be taken up; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if *stop.borrow() || fence.load(Ordering::Acquire) {
                    return Ok(());
                }
            }
        }
    };
    // A lease lost while the store was rebuilt: nothing of it may start, not even a
    // publisher (it would publish this store's unpublished tail).
    if !ctx.owned.lock().unwrap().contains(&p) || fence.load(Ordering::Acquire) {
        tracing::info!(partition = %p, "lease lost while the store was brought up to date");
        tokio::task::spawn_blocking(move || store.close()).await??;
        return Ok(());
    }
    let dir = partition_dir(&ctx.data, p);
    // What the stream holds is published; anything after it (this instance's own
    // unpublished tail) is published from here.
    write_cursor(&events_cursor(&dir), published)?;
    let tickets = Arc::new(
        Tickets::new(store.clone())
            .context("reading the partition's log")?
            .with_rule_packs(rule_pack_chooser(RuleBook::builtin())),
    );
    let scheduler = Arc::new(Scheduler::start_with(
        tickets.clone(),
        RuleBook::builtin(),
        Calendar::builtin(),
        ctx.file.alerts.windows()?,
    )?);
    // A cluster's partitions all publish to the same two streams.
    let events = EventPublisher::new(
        store.clone(),
        events_cursor(&dir),
        &ctx.file.events,
        Publishers::Many,
    )?;
    let events_stats = events.stats();
    let events_task = tokio::spawn(events.run(ctx.client.clone(), until_stopped(stop.clone())));
    let alerts = Publisher::new(
        store.clone(),
        alerts_cursor(&dir),
        ctx.file.alerts.publish.clone(),
        Publishers::Many,
    );
    let alerts_task = tokio::spawn(alerts.run(ctx.client.clone(), until_stopped(stop.clone())));
    let timer_stop = Arc::new(AtomicBool::new(false));
    let timer_thread = {
        let (scheduler, stop) = (scheduler.clone(), timer_stop.clone());
        std::thread::Builder::new()
            .name(format!("scheduler-{p}"))
            .spawn(move || scheduler.run(&SystemClock, &stop, Duration::from_millis(500)))?
    };
    let duty = PartitionDuty {
        partition: p,
        count: ctx.count,
        published: Arc::new({
            let s = events_stats.clone();
            move || s.cursor.load(Ordering::Acquire)
        }),
        fenced: fence.clone(),
    };
    // A lease lost while the store was rebuilt: do not start consuming.
    let still_owned = ctx.owned.lock().unwrap().contains(&p) && !fence.load(Ordering::Acquire);
    if still_owned {
        ctx.tickets.lock().unwrap().insert(p, tickets.clone());
        tracing::info!(partition = %p, head = store.head_position(), "partition served");
        // The ingest fails only while it starts (the broker refused the consumer): again,
        // until the partition is stopped.
        let ingest = async {
            loop {
                let run = Ingest::new(
                    partition_ingest_cfg(&ctx),
                    tickets.clone(),
                    Arc::new(SystemClock),
                )
                .for_partition(duty.clone());
                let stats = PartitionStats {
                    ingest: run.stats(),
                    events: events_stats.clone(),
                };
                ctx.stats.lock().unwrap().insert(p, stats);
                match run
                    .run(ctx.client.clone(), until_stopped(stop.clone()))
                    .await
                {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(partition = %p, error = %e, "the partition's ingest failed; starting it again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if *stop.borrow() {
                            return;
                        }
                    }
                }
            }
        };
        let watch_store = async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(reason) = store.failure() {
                    *ctx.store_failed.lock().unwrap() = Some(format!("partition {p}: {reason}"));
                    return;
                }
            }
        };
        tokio::select! {
            _ = ingest => {}
            _ = watch_store => fence.store(true, Ordering::Release),
        }
    }
    ctx.tickets.lock().unwrap().remove(&p);
    ctx.stats.lock().unwrap().remove(&p);
    let _ = until_stopped(stop).await;
    timer_stop.store(true, Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || timer_thread.join()).await;
    events_task.await??;
    alerts_task.await??;
    tokio::task::spawn_blocking(move || store.close())
        .await?
        .context("closing the partition's store")?;
    Ok(())
}

fn partition_ingest_cfg(ctx: &Ctx) -> IngestConfig {
    let mut cfg = ctx.nats.clone();
    cfg.workers = ctx.file.cluster.workers_per_partition.max(1);
    cfg
}

fn metrics(ctx: &Ctx) -> String {
    let owned = ctx.owned.lock().unwrap().len();
    let mut out = format!(
        "# HELP aftersales_partitions_owned Partitions this instance holds the lease of.\n\
         # TYPE aftersales_partitions_owned gauge\naftersales_partitions_owned {owned}\n"
    );
    let stats = ctx.stats.lock().unwrap();
    let tickets = ctx.tickets.lock().unwrap();
    out.push_str("# HELP aftersales_partition_events_stored Events in a partition's log (its head position).\n# TYPE aftersales_partition_events_stored gauge\n");
    for (p, t) in tickets.iter() {
        out.push_str(&format!(
            "aftersales_partition_events_stored{{partition=\"{p}\"}} {}\n",
            t.store().head_position()
        ));
    }
    out.push_str("# HELP aftersales_partition_events_published Last position of a partition's log the events stream holds.\n# TYPE aftersales_partition_events_published gauge\n");
    for (p, s) in stats.iter() {
        out.push_str(&format!(
            "aftersales_partition_events_published{{partition=\"{p}\"}} {}\n",
            s.events.cursor.load(Ordering::Relaxed)
        ));
    }
    out.push_str("# HELP aftersales_partition_ingest_stored_total Webhooks stored by a partition's ingest since it started.\n# TYPE aftersales_partition_ingest_stored_total counter\n");
    for (p, s) in stats.iter() {
        out.push_str(&format!(
            "aftersales_partition_ingest_stored_total{{partition=\"{p}\"}} {}\n",
            s.ingest.stored.load(Ordering::Relaxed)
        ));
    }
    out
}
