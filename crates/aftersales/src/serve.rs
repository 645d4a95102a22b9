//! `serve`: the HTTP API, the deadline scheduler and (with NATS configured) the ingest in
//! one process, stopped gracefully by SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aftersales_alerts::{cursor_path as alerts_cursor, Publisher, PublisherConfig};
use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_eventstream::{
    cursor_path as events_cursor, EventPublisher, EventsConfig, Publishers,
};
use aftersales_http::{open_is_allowed, router, Api, TicketSource, Tokens, WebhookSecrets};
use aftersales_ingest::{Ingest, IngestConfig};
use aftersales_outbox::OutboxStats;
use aftersales_scheduler::{Scheduler, WarningWindows};
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::DeadlineKind;
use aftersales_timers::{Calendar, RuleBook};
use aftersales_views::{Loaded, SharedViews};
use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::ingest::{runtime, shutdown_signal, until_stopped};
use crate::timers::rule_pack_chooser;

/// The config file (TOML): `[nats]` (docs/INGEST.md), `[http]`, `[alerts]`,
/// `[read_models]` and `[events]` (docs/PARTITIONS.md); every key optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub nats: Option<IngestConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub read_models: ReadModelsConfig,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub store: StoreFileConfig,
    #[serde(default)]
    pub cluster: crate::cluster::ClusterConfig,
}

/// `[store]`: the event store's sled settings.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreFileConfig {
    /// sled's page cache in MiB. sled's heap grows to a few times this (RELIABILITY.md,
    /// "Memory"), so it is the main knob of the service's memory.
    pub cache_mib: u64,
}

impl Default for StoreFileConfig {
    fn default() -> Self {
        Self {
            cache_mib: aftersales_store::DEFAULT_CACHE_CAPACITY >> 20,
        }
    }
}

impl StoreFileConfig {
    pub fn store_config(&self) -> Result<StoreConfig> {
        ensure!(
            (1..=65_536).contains(&self.cache_mib),
            "[store] cache_mib is {}; give 1 to 65536",
            self.cache_mib
        );
        Ok(StoreConfig::new(Arc::new(SystemClock)).with_cache_capacity(self.cache_mib << 20))
    }
}

/// `[read_models]`: how often the dashboards' read models are checkpointed while events
/// come in (they are also checkpointed at every clean stop).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ReadModelsConfig {
    pub checkpoint_every_secs: u64,
}

impl Default for ReadModelsConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_secs: 30,
        }
    }
}

/// `[alerts]`: how long before its due time a deadline warns the merchant's staff
/// (docs/DEADLINES.md, "Warnings"). 0 minutes: no warning.
///
/// ```toml
/// [alerts]
/// warn_before_minutes = 120          # every kind (the default)
/// [alerts.warn_before_minutes_by_kind]
/// review = 60
/// customer_ship_back = 0             # never warn of this kind
/// [alerts.publish]                   # with NATS: where alerts go (docs/HTTP.md, "Alerts")
/// stream = "AFTERSALES_ALERTS"
/// subject_prefix = "aftersales.alerts"
/// ```
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Minutes before the due time, for every kind without its own entry.
    pub warn_before_minutes: u32,
    /// Minutes per deadline kind, by its name (`review`, `pickup`, …).
    pub warn_before_minutes_by_kind: BTreeMap<String, u32>,
    /// The NATS stream and subjects alerts are published to.
    pub publish: PublisherConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            warn_before_minutes: 120,
            warn_before_minutes_by_kind: BTreeMap::new(),
            publish: PublisherConfig::default(),
        }
    }
}

impl AlertsConfig {
    /// The scheduler's warning windows; an unknown kind name is an error naming the kinds.
    pub fn windows(&self) -> Result<WarningWindows> {
        let minutes = |m: u32| chrono::Duration::minutes(i64::from(m));
        let mut windows = WarningWindows::uniform(minutes(self.warn_before_minutes));
        for (name, &m) in &self.warn_before_minutes_by_kind {
            let Some(kind) = DeadlineKind::ALL.into_iter().find(|k| k.as_str() == name) else {
                bail!(
                    "[alerts.warn_before_minutes_by_kind]: {name:?} is not a deadline kind; \
                     the kinds are {}",
                    DeadlineKind::ALL.map(DeadlineKind::as_str).join(", ")
                );
            };
            windows.set(kind, minutes(m));
        }
        Ok(windows)
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: String,
    pub read_tokens: Vec<String>,
    pub write_tokens: Vec<String>,
    pub max_body_bytes: usize,
    /// `[http.webhook_secrets.douyin]` (`app_key`, `app_secret`) and
    /// `[http.webhook_secrets.generic]` (`secret`): see docs/HTTP.md, "Signatures".
    pub webhook_secrets: WebhookSecrets,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            read_tokens: Vec::new(),
            write_tokens: Vec::new(),
            max_body_bytes: 1 << 20,
            webhook_secrets: WebhookSecrets::default(),
        }
    }
}

/// What runs on NATS beside the HTTP API: the ingest and the outboxes.
struct NatsTasks {
    stats: Arc<aftersales_ingest::Stats>,
    task: tokio::task::JoinHandle<Result<(), aftersales_ingest::IngestError>>,
    alerts: OutboxTask,
    events: Option<OutboxTask>,
}

/// An outbox running on NATS (the alerts, the events stream).
struct OutboxTask {
    stats: Arc<OutboxStats>,
    task: tokio::task::JoinHandle<Result<(), aftersales_outbox::OutboxError>>,
}

/// How often `serve` checks that its store can still write.
const STORE_WATCH: Duration = Duration::from_millis(250);

/// `serve`'s exit code after its store failed to write (sysexits' EX_TEMPFAIL: try again
/// later); systemd's `Restart=on-failure` starts it again.
pub const EXIT_STORE_FAILED: u8 = 75;

/// Where the read models keep their checkpoint: beside the log, in the data directory.
pub fn views_checkpoint(data: &Path) -> PathBuf {
    data.join("views.checkpoint.json")
}

pub fn load(file: Option<&Path>) -> Result<FileConfig> {
    let Some(path) = file else {
        return Ok(FileConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: FileConfig = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid config", path.display()))?;
    file.alerts
        .windows()
        .with_context(|| format!("{} is not a valid config", path.display()))?;
    aftersales_partition::PartitionCount::new(file.events.partitions)
        .with_context(|| format!("{}: [events] partitions", path.display()))?;
    Ok(file)
}

pub fn run(
    data: &Path,
    nats: Option<String>,
    http: Option<String>,
    config: Option<PathBuf>,
) -> Result<ExitCode> {
    let file = load(config.as_deref())?;
    let mut nats_cfg = file.nats.clone();
    if let Some(url) = nats {
        nats_cfg.get_or_insert_with(IngestConfig::default).url = url;
    }
    let addr_text = http.unwrap_or_else(|| file.http.addr.clone());
    let addr: SocketAddr = addr_text
        .parse()
        .with_context(|| format!("--http {addr_text:?} is not an address like 127.0.0.1:8080"))?;
    let tokens = Tokens {
        read: file.http.read_tokens.clone(),
        write: file.http.write_tokens.clone(),
    };
    if tokens.is_empty() && !open_is_allowed(&addr) {
        bail!(
            "refusing to serve on {addr} without tokens: set [http] read_tokens and \
             write_tokens in the config file, or bind to 127.0.0.1"
        );
    }

    // Signals are taken from the start: a SIGTERM while the store opens or the read models
    // rebuild must stop the process cleanly, not kill it.
    let rt = runtime()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    rt.spawn({
        let stop_tx = stop_tx.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new requests or messages");
            let _ = stop_tx.send(true);
        }
    });
    if file.cluster.enabled {
        let Some(nats) = nats_cfg else {
            bail!("[cluster] enabled needs NATS: give --nats or a [nats] table");
        };
        let listen = crate::cluster::Listen { addr, tokens };
        return crate::cluster::run(file, data, nats, listen, rt, stop_rx, stop_tx);
    }
    let store = Store::open(data, file.store.store_config()?)
        .with_context(|| format!("opening the store in {}", data.display()))?;
    let tickets = Arc::new(
        Tickets::new(Arc::new(store))
            .context("reading the event log")?
            .with_rule_packs(rule_pack_chooser(RuleBook::builtin())),
    );
    let scheduler = Arc::new(
        Scheduler::start_with(
            tickets.clone(),
            RuleBook::builtin(),
            Calendar::builtin(),
            file.alerts.windows()?,
        )
        .context("building the deadline index")?,
    );
    let (views, loaded) = SharedViews::open(
        tickets.store().clone(),
        views_checkpoint(data),
        RuleBook::builtin(),
        Calendar::builtin(),
    )
    .context("building the read models")?;
    // Two flags: the scheduler stops first, so the read models' last checkpoint has its
    // last firings.
    let (stop, stop_views) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let views_thread = {
        let (views, stop) = (views.clone(), stop_views.clone());
        let every = Duration::from_secs(file.read_models.checkpoint_every_secs.max(1));
        std::thread::Builder::new()
            .name("read-models".into())
            .spawn(move || views.follow(&stop, Duration::from_millis(200), every))?
    };
    let timer_thread = {
        let (scheduler, stop) = (scheduler.clone(), stop.clone());
        std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || scheduler.run(&SystemClock, &stop, Duration::from_millis(500)))?
    };

    if *stop_rx.borrow() {
        stop.store(true, Ordering::Release);
        let _ = timer_thread.join();
        stop_views.store(true, Ordering::Release);
        let _ = views_thread.join();
        tickets.store().close().context("closing the store")?;
        eprintln!("stopped while starting; nothing was taken in");
        return Ok(ExitCode::SUCCESS);
    }
    let result = rt.block_on(async {
        let nats = match nats_cfg {
            Some(cfg) => {
                let client = cfg.connect().await?;
                // The outboxes share the connection: one login, one reconnect loop.
                let publisher = Publisher::new(
                    tickets.store().clone(),
                    alerts_cursor(data),
                    file.alerts.publish.clone(),
                    Publishers::One,
                );
                let alerts = OutboxTask {
                    stats: publisher.stats(),
                    task: tokio::spawn(
                        publisher.run(client.clone(), until_stopped(stop_rx.clone())),
                    ),
                };
                let events = if file.events.publish {
                    let publisher = EventPublisher::new(
                        tickets.store().clone(),
                        events_cursor(data),
                        &file.events,
                        Publishers::One,
                    )?;
                    Some(OutboxTask {
                        stats: publisher.stats(),
                        task: tokio::spawn(
                            publisher.run(client.clone(), until_stopped(stop_rx.clone())),
                        ),
                    })
                } else {
                    None
                };
                let ingest = Ingest::new(cfg, tickets.clone(), Arc::new(SystemClock));
                let stats = ingest.stats();
                let task = tokio::spawn(ingest.run(client, until_stopped(stop_rx.clone())));
                Some(NatsTasks {
                    stats,
                    task,
                    alerts,
                    events,
                })
            }
            None => None,
        };
        let ready = Arc::new(AtomicBool::new(false));
        let api = Api {
            tickets: TicketSource::One(tickets.clone()),
            scheduler: Some(scheduler.clone()),
            ingest: nats.as_ref().map(|n| n.stats.clone()),
            alerts: nats.as_ref().map(|n| n.alerts.stats.clone()),
            events: nats
                .as_ref()
                .and_then(|n| n.events.as_ref().map(|e| e.stats.clone())),
            tokens,
            ready: ready.clone(),
            max_body_bytes: file.http.max_body_bytes,
            secrets: Arc::new(file.http.webhook_secrets),
            views: Some(views.clone()),
            clock: Arc::new(SystemClock),
            reads: Default::default(),
            extra_metrics: None,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        eprintln!(
            "read models {}: {} tickets at position {}",
            match &loaded {
                Loaded::Resumed(at) => format!("resumed from their checkpoint at {at}"),
                Loaded::Fresh(why) => format!("rebuilt from the log ({why})"),
            },
            views.read().ticket_count(),
            views.read().position()
        );
        eprintln!(
            "serving http://{} (store {}{}); SIGTERM or Ctrl-C stops",
            listener.local_addr()?,
            data.display(),
            if nats.is_some() {
                ", NATS ingest on"
            } else {
                ""
            }
        );
        ready.store(true, Ordering::Release);
        // A store whose write failed (a full disk) refuses every append until it is opened
        // again: stop, so the supervisor starts a fresh process (RELIABILITY.md).
        tokio::spawn({
            let (store, ready) = (tickets.store().clone(), ready.clone());
            async move {
                loop {
                    tokio::time::sleep(STORE_WATCH).await;
                    if let Some(reason) = store.failure() {
                        ready.store(false, Ordering::Release);
                        tracing::error!(%reason, "the event store cannot write; stopping");
                        let _ = stop_tx.send(true);
                        return;
                    }
                }
            }
        });
        axum::serve(listener, router(api))
            .with_graceful_shutdown(until_stopped(stop_rx))
            .await
            .context("serving HTTP")?;
        if let Some(n) = nats {
            n.task.await.context("the ingest task")??;
            n.alerts.task.await.context("the alert publisher")??;
            if let Some(events) = n.events {
                events.task.await.context("the events publisher")??;
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    stop.store(true, Ordering::Release);
    let fired = timer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the scheduler panicked"))?;
    // The follower writes its last checkpoint before the store closes.
    stop_views.store(true, Ordering::Release);
    views_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the read models' follower panicked"))?;
    if let Some(reason) = tickets.store().failure() {
        if let Err(e) = &result {
            tracing::warn!(error = %format!("{e:#}"), "also failed while stopping");
        }
        // Nothing unacknowledged was acked: the broker redelivers it to the next process.
        eprintln!(
            "error: the event store could not write ({reason}); stopped without acknowledging \
             anything not on disk. Free space or fix the disk; the next start repairs the store \
             and takes the messages again"
        );
        return Ok(ExitCode::from(EXIT_STORE_FAILED));
    }
    result?;
    tickets.store().close().context("closing the store")?;
    eprintln!(
        "stopped cleanly: {} events in the log, {} deadlines fired and {} warnings sent in \
         this run",
        tickets.store().head_position(),
        fired.fired,
        fired.warned
    );
    Ok(ExitCode::SUCCESS)
}

/// `bench api`: the dashboards' queries over HTTP next to `GET /healthz`, and the read
/// models' replay next to a raw log scan; exits 1 if any response was wrong.
pub fn bench_api(
    quick: bool,
    tickets: Option<usize>,
    clients: Option<usize>,
    seconds: Option<f64>,
    dir: Option<PathBuf>,
) -> Result<ExitCode> {
    use aftersales_http::bench;
    let mut config = if quick {
        bench::BenchConfig::quick()
    } else {
        bench::BenchConfig::full()
    };
    if let Some(n) = tickets {
        config.tickets = n.max(1);
    }
    if let Some(c) = clients {
        config.clients = c.max(1);
    }
    if let Some(s) = seconds {
        config.seconds = Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--seconds {s} is not a positive number of seconds"))?;
    }
    config.dir = dir;
    eprintln!(
        "benchmarking the HTTP API ({} tickets, {} clients, {} s per query)…",
        config.tickets,
        config.clients,
        config.seconds.as_secs_f64()
    );
    let report = bench::run(&config)?;
    println!("{report}");
    if report.failed() {
        eprintln!("error: some responses were errors or differed from the read models' answers");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partitioned_configs_in_deploy_load() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let mut instances = Vec::new();
        for name in [
            "compose/aftersales-0.toml",
            "compose/aftersales-1.toml",
            "k8s/config.toml",
        ] {
            let file = load(Some(&deploy.join(name))).unwrap();
            assert!(file.cluster.enabled, "{name}");
            assert!(
                file.events.publish,
                "{name}: takeover needs the events stream"
            );
            assert_eq!(file.events.partitions, 64, "{name}");
            assert_eq!(
                file.nats.as_ref().map(|n| n.url.as_str()),
                Some("nats://nats:4222"),
                "{name}"
            );
            assert!(!file.http.read_tokens.is_empty(), "{name}: not on loopback");
            instances.push(file.cluster.instance);
        }
        // The compose instances are named; the StatefulSet's pods take their host names.
        assert_eq!(instances, ["aftersales-0", "aftersales-1", ""]);
    }

    #[test]
    fn the_example_config_in_deploy_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config.example.toml");
        let file = load(Some(&path)).unwrap();
        assert_eq!(file.http.read_tokens, ["dashboards-change-me"]);
        assert_eq!(
            file.nats.as_ref().map(|n| n.url.as_str()),
            Some("nats://127.0.0.1:4222")
        );
        assert_eq!(file.alerts.publish, PublisherConfig::default());
        assert_eq!(file.store, StoreFileConfig::default());
        assert_eq!(file.cluster, crate::cluster::ClusterConfig::default());
        let windows = file.alerts.windows().unwrap();
        assert_eq!(
            windows.window(aftersales_ticket::DeadlineKind::Review),
            chrono::Duration::hours(2)
        );
    }
}
