//! A partitioned deployment (docs/PARTITIONS.md) on loopback: one `nats-server -js` and
//! three `aftersales serve` instances with `[cluster] enabled`, 8 partitions.
//!
//! Webhooks are published to `aftersales.webhooks.tmall.<partition>`; one instance is
//! killed with SIGKILL in the middle of the feed. Then: its partitions are taken over
//! within the lease time; every message opened its ticket exactly once; the events stream
//! holds every committed event once, in order per ticket, and each partition's records
//! form one gapless chain (a store rebuilt from it verifies) across the takeover; and
//! every surviving instance's dashboard counts the tickets of all partitions.

#[path = "../crates/ingest/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aftersales_clock::SystemClock;
use aftersales_eventstream::EventsConfig;
use aftersales_ingest::bench::sample;
use aftersales_partition::{partition_of, Partition, PartitionCount};
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::TicketId;
use async_nats::jetstream;
use support::NatsServer;

const PARTITIONS: u64 = 8;
const MESSAGES: usize = 1_200;
/// With the messages sent after b's restart.
const TOTAL: usize = 1_500;
const TTL_MS: u64 = 1_500;

struct Instance {
    name: &'static str,
    port: u16,
    child: Child,
    log: PathBuf,
    /// The read token the instance's config asks for, if any.
    token: Option<&'static str>,
}

impl Instance {
    fn start(name: &'static str, dir: &Path, url: &str) -> Instance {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[nats]\nack_wait_secs = 2\n\n[events]\npartitions = {PARTITIONS}\npoll_millis = 5\n\n\
                 [cluster]\nenabled = true\ninstance = \"{name}\"\nlease_ttl_millis = {TTL_MS}\n\
                 lease_margin_millis = 400\nworkers_per_partition = 2\ncache_mib_per_partition = 4\n"
            ),
        )
        .unwrap();
        Instance::start_with(name, dir, url, &config, None)
    }

    /// An instance on a given config file (`--nats` and a loopback `--http` override it).
    fn start_with(
        name: &'static str,
        dir: &Path,
        url: &str,
        config: &Path,
        token: Option<&'static str>,
    ) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_aftersales"))
            .args(["serve", "--nats", url, "--http"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(dir.join(name))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            // Appended: a restarted instance keeps its first life's log.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        Instance {
            name,
            port,
            child,
            log,
            token,
        }
    }

    fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
                    self.token
                        .map(|t| format!("Authorization: Bearer {t}\r\n"))
                        .unwrap_or_default()
                )
                .as_bytes(),
            )
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    }

    fn owned(&self) -> Option<u64> {
        let text = self.get("/metrics")?;
        let line = text
            .lines()
            .find(|l| l.starts_with("aftersales_partitions_owned "))?;
        line.rsplit(' ').next()?.parse().ok()
    }

    /// Webhooks its partitions' ingests stored since it started (0 once it is gone).
    fn stored(&self) -> u64 {
        let Some(text) = self.get("/metrics") else {
            return 0;
        };
        text.lines()
            .filter(|l| l.starts_with("aftersales_partition_ingest_stored_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Tickets on the instance's SLA dashboard (all partitions, from the events stream).
    fn dashboard_tickets(&self) -> Option<u64> {
        let body = self.get("/v1/dashboard/sla")?;
        serde_json::from_str::<serde_json::Value>(&body).ok()?["tickets"].as_u64()
    }

    /// The instance's last warnings and errors, then its last lines: a failure's cause
    /// is rarely in the last lines of a busy log.
    fn tail(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let warnings: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        let last = |v: &[&str], n: usize| v[v.len().saturating_sub(n)..].join("\n");
        format!(
            "--- {}: warnings ---\n{}\n--- {}: last lines ---\n{}",
            self.name,
            last(&warnings, 20),
            self.name,
            last(&lines, 15)
        )
    }

    fn terminate(mut self) {
        let status = support::sigterm(&mut self.child);
        assert!(status.success(), "{status:?}\n{}", self.tail());
    }
}

fn ticket_of(n: usize) -> TicketId {
    TicketId::parse(&format!("tmall:{}", 100_000_000 + n)).unwrap()
}

async fn publish(js: &jetstream::Context, range: std::ops::Range<usize>, count: PartitionCount) {
    let mut acks = Vec::new();
    for n in range {
        let p = partition_of(&ticket_of(n), count);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("feed-{n}").as_str());
        acks.push(
            js.publish_with_headers(format!("aftersales.webhooks.tmall.{p}"), headers, sample(n))
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// Every message of the events stream, in stream order.
async fn events_stream(
    js: &jetstream::Context,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let mut stream = js.get_stream("AFTERSALES_EVENTS").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        out.push(stream.get_raw_message(seq).await.unwrap());
    }
    out
}

#[test]
fn three_instances_share_the_partitions_and_one_killed_loses_nothing() {
    let server = NatsServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let count = PartitionCount::new(PARTITIONS).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(async_nats::ConnectOptions::new().connect(url.clone()))
        .unwrap();
    let js = rt.block_on(async { jetstream::new(client) });
    // The webhook stream as the service makes it, so publishing can start at once.
    rt.block_on(aftersales_ingest::deadletter::ensure_streams(
        &js,
        &aftersales_ingest::IngestConfig::default(),
    ))
    .unwrap();

    let a = Instance::start("a", dir.path(), &url);
    let b = Instance::start("b", dir.path(), &url);
    let c = Instance::start("c", dir.path(), &url);
    let all = [&a, &b, &c];
    let spread = shared_out(&all, "the partitions were not shared out");
    eprintln!("partitions owned by a, b, c: {spread:?}");

    // A steady feed (about 400/s); b dies in the middle of it, while it works.
    let feed = {
        let js = js.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            handle.block_on(async {
                for start in (0..MESSAGES).step_by(20) {
                    publish(&js, start..(start + 20).min(MESSAGES), count).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
    };
    let busy = poll_for(Duration::from_secs(10), || {
        let stored = b.stored();
        (stored >= 50).then_some(stored)
    });
    assert!(busy.is_some(), "b stored nothing\n{}", b.tail());
    let mut b = b;
    b.child.kill().unwrap(); // SIGKILL
    b.child.wait().unwrap();
    let killed = Instant::now();
    eprintln!("b killed after storing {} messages", busy.unwrap());
    let survivors = [&a, &c];
    let taken = poll_for(Duration::from_secs(10), || {
        let owned: u64 = survivors.iter().map(|i| i.owned().unwrap_or(0)).sum();
        (owned == PARTITIONS).then(|| killed.elapsed())
    });
    let Some(taken) = taken else {
        panic!(
            "b's partitions were not taken over\n{}\n{}",
            a.tail(),
            c.tail()
        );
    };
    eprintln!(
        "b's partitions taken over {} ms after the kill (lease {TTL_MS} ms)",
        taken.as_millis()
    );
    // The lease runs out at most a ttl after b's last renewal; the others look every
    // ttl/6 and take over on their next look.
    assert!(
        taken < Duration::from_millis(TTL_MS * 2 + 1_000),
        "takeover took {taken:?}"
    );
    feed.join().unwrap();
    assert!(
        b.stored() == 0 && a.stored() + c.stored() > 0,
        "b is gone and the others go on"
    );

    // b comes back on its old data: the others hand partitions back (clean releases), and
    // b brings each store it gets up to date from the stream (moving aside one that holds
    // an unpublished tail the new owner replaced).
    let b = Instance::start("b", dir.path(), &url);
    let all = [&a, &b, &c];
    let spread = shared_out(&all, "b got no partitions back");
    eprintln!("after b's restart, partitions owned by a, b, c: {spread:?}");
    rt.block_on(publish(&js, MESSAGES..TOTAL, count));

    // Everything settles: every ticket opened and its overdue review fired; the stream
    // stops growing.
    let mut seen = (0, 0);
    let settled = poll_for(Duration::from_secs(60), || {
        let before = rt.block_on(events_stream(&js)).len();
        std::thread::sleep(Duration::from_millis(1_500));
        let messages = rt.block_on(events_stream(&js));
        let opened: HashSet<String> = messages
            .iter()
            .filter(|m| header(m, "Aftersales-Event") == "opened")
            .map(|m| header(m, "Aftersales-Ticket"))
            .collect();
        seen = (opened.len(), messages.len());
        (opened.len() == TOTAL && messages.len() == before).then_some(messages)
    });
    let Some(messages) = settled else {
        panic!(
            "not every message was taken in: {} of {TOTAL} tickets opened, {} events\n{}\n{}\n{}",
            seen.0,
            seen.1,
            a.tail(),
            b.tail(),
            c.tail()
        );
    };

    // Once each, in order per ticket: versions 1, 2, 3… in stream order.
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut ids = HashSet::new();
    let mut opened: HashMap<String, usize> = HashMap::new();
    let mut per_partition: BTreeMap<u16, Vec<(u64, u64, String)>> = BTreeMap::new();
    for m in &messages {
        let ticket = header(m, "Aftersales-Ticket");
        let version: u64 = header(m, "Aftersales-Version").parse().unwrap();
        let last = versions.entry(ticket.clone()).or_insert(0);
        assert_eq!(
            version,
            *last + 1,
            "{ticket}: version {version} after {last}"
        );
        *last = version;
        assert!(ids.insert(header(m, "Nats-Msg-Id")), "an event twice");
        if header(m, "Aftersales-Event") == "opened" {
            *opened.entry(ticket.clone()).or_default() += 1;
        }
        let p = partition_of(&TicketId::parse(&ticket).unwrap(), count);
        assert!(
            m.subject.as_str().ends_with(&format!(".{p}")),
            "{} is not on partition {p}",
            m.subject
        );
        per_partition.entry(p.0).or_default().push((
            header(m, "Aftersales-Position").parse().unwrap(),
            m.sequence,
            format!("{ticket} v{version} {}", header(m, "Aftersales-Event")),
        ));
    }
    for n in 0..TOTAL {
        assert_eq!(opened.get(ticket_of(n).as_str()), Some(&1), "message {n}");
    }
    // Each partition's records: positions 1..=k in order across owners, one chain.
    let cfg = EventsConfig {
        partitions: PARTITIONS,
        ..EventsConfig::default()
    };
    let mut tickets_per_partition = 0;
    for (p, records) in &per_partition {
        let positions: Vec<u64> = records.iter().map(|r| r.0).collect();
        let want: Vec<u64> = (1..=positions.len() as u64).collect();
        if positions != want {
            let first = positions
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let around: Vec<String> = records
                [first.saturating_sub(5)..(first + 10).min(records.len())]
                .iter()
                .map(|(position, seq, what)| {
                    format!("position {position} at stream seq {seq}: {what}")
                })
                .collect();
            let about = |i: &Instance| {
                let text = std::fs::read_to_string(&i.log).unwrap_or_default();
                let mark = format!("partition={p} ");
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains(&mark) || l.ends_with(mark.trim_end()))
                    .collect();
                format!("--- {} on partition {p} ---\n{}", i.name, lines.join("\n"))
            };
            panic!(
                "partition {p}: a gap or a repeat: {positions:?}\n{}\n{}\n{}\n{}",
                around.join("\n"),
                about(&a),
                about(&b),
                about(&c)
            );
        }
        let store = Arc::new(
            Store::open(
                dir.path().join(format!("check-{p}")),
                StoreConfig::new(Arc::new(SystemClock)),
            )
            .unwrap(),
        );
        let done = rt
            .block_on(aftersales_eventstream::rebuild(
                &js,
                &cfg,
                Partition(*p),
                &store,
                |_| {},
            ))
            .unwrap();
        assert_eq!(done.imported, positions.len() as u64);
        assert!(store.verify().unwrap().is_ok(), "partition {p}'s chain");
        tickets_per_partition += versions
            .keys()
            .filter(|t| partition_of(&TicketId::parse(t).unwrap(), count).0 == *p)
            .count();
    }
    assert_eq!(tickets_per_partition, TOTAL);

    // Any instance's dashboard: the sum over partitions.
    for i in all {
        let seen = poll_for(Duration::from_secs(10), || {
            (i.dashboard_tickets() == Some(TOTAL as u64)).then_some(())
        });
        assert!(
            seen.is_some(),
            "{}'s dashboard counts {:?} tickets, not {TOTAL}\n{}",
            i.name,
            i.dashboard_tickets(),
            i.tail()
        );
    }
    // A ticket's own routes answer on every instance alike: from its partition's store on
    // the owner, from the events stream elsewhere. One ticket per partition.
    let mut checked = HashSet::new();
    for n in 0..TOTAL {
        let t = ticket_of(n);
        if !checked.insert(partition_of(&t, count)) {
            continue;
        }
        let answers: Vec<(serde_json::Value, serde_json::Value)> = all
            .iter()
            .map(|i| {
                let json = |path: String| -> serde_json::Value {
                    serde_json::from_str(&i.get(&path).unwrap_or_else(|| {
                        panic!("{} did not answer {path}\n{}", i.name, i.tail())
                    }))
                    .unwrap()
                };
                let ticket = json(format!("/v1/tickets/{t}"));
                let events = json(format!("/v1/tickets/{t}/events"));
                (ticket["ticket"].clone(), events["events"].clone())
            })
            .collect();
        assert!(
            answers[0].1.as_array().is_some_and(|e| !e.is_empty()),
            "{t}: no events"
        );
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{t}: the instances answer differently"
        );
    }
    assert_eq!(checked.len() as u64, PARTITIONS);

    let rebuilt = std::fs::read_to_string(&b.log).unwrap_or_default();
    for line in rebuilt
        .lines()
        .filter(|l| l.contains("up to date") || l.contains("moved aside"))
    {
        eprintln!("b after its restart: {line}");
    }
    a.terminate();
    b.terminate();
    c.terminate();
}

fn header(m: &async_nats::jetstream::message::StreamMessage, name: &str) -> String {
    m.headers
        .get(name)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

/// The partitions each instance owns once they are all owned, at least 2 each; panics
/// with `what` and the instances' logs after 20 s.
fn shared_out(all: &[&Instance], what: &str) -> Vec<u64> {
    shared_out_of(all, PARTITIONS, 2, what)
}

/// [`shared_out`] for `partitions`, each instance holding at least `least`.
fn shared_out_of(all: &[&Instance], partitions: u64, least: u64, what: &str) -> Vec<u64> {
    let spread = poll_for(Duration::from_secs(60), || {
        let owned: Vec<u64> = all.iter().map(|i| i.owned().unwrap_or(0)).collect();
        (owned.iter().sum::<u64>() == partitions && owned.iter().all(|&o| o >= least))
            .then_some(owned)
    });
    spread.unwrap_or_else(|| {
        let logs: Vec<String> = all.iter().map(|i| i.tail()).collect();
        panic!("{what}\n{}", logs.join("\n"))
    })
}

/// `f`'s first `Some` within `timeout`, looking every 100 ms.
fn poll_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The compose deployment's own configs (deploy/compose/aftersales-{0,1}.toml, 64
/// partitions, default leases and tokens), with `--nats` pointing at a test server instead
/// of the `nats` service and HTTP on loopback: the two instances share the partitions
/// out, take a webhook in and show it on both dashboards.
#[test]
fn the_compose_configs_run_two_instances_that_share_64_partitions() {
    let server = NatsServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose");
    let token = Some("dashboards-change-me");
    let zero = Instance::start_with(
        "aftersales-0",
        dir.path(),
        &url,
        &deploy.join("aftersales-0.toml"),
        token,
    );
    let one = Instance::start_with(
        "aftersales-1",
        dir.path(),
        &url,
        &deploy.join("aftersales-1.toml"),
        token,
    );
    let both = [&zero, &one];
    let spread = shared_out_of(
        &both,
        64,
        32,
        "the compose instances did not share 64 partitions",
    );
    assert_eq!(spread, [32, 32]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let js = jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
        // Owning a partition comes before its ingest has made the webhook stream (CI saw
        // StreamNotFound here once): make it as the service does, as a gateway's deploy would.
        aftersales_ingest::deadletter::ensure_streams(
            &js,
            &aftersales_ingest::IngestConfig::default(),
        )
        .await
        .unwrap();
        publish(&js, 0..20, PartitionCount::new(64).unwrap()).await;
    });
    for i in both {
        let seen = poll_for(Duration::from_secs(20), || {
            (i.dashboard_tickets() == Some(20)).then_some(())
        });
        assert!(
            seen.is_some(),
            "{} counts {:?}\n{}",
            i.name,
            i.dashboard_tickets(),
            i.tail()
        );
    }
    zero.terminate();
    one.terminate();
}
