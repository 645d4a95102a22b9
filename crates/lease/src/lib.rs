//! Partition ownership by leases in a NATS JetStream key-value bucket (`AFTERSALES_LEASES`,
//! created if missing): every instance announces itself (`member.<id>`), claims its share of
//! the partitions (`partition.<n>`, compare-and-set on the key's revision), renews what it
//! holds and gives up a partition it cannot renew in time, so that a failed instance's
//! partitions are taken over by the others within the lease's ttl.
//!
//! The rule is pure ([`rule::step`]); this shell reads and writes the bucket and reports
//! every change to a callback *before* the bucket says so: a consumer stops working on a
//! partition inside the callback, and only then can another instance take it.
//!
//! This crate must never let two instances own a partition at once, nor report a partition
//! as owned past its lease.

pub mod rule;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aftersales_partition::{Partition, PartitionCount};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

pub use rule::{Held, Seen, Step, Timing};

/// Where the leases are kept and how long they last.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub bucket: String,
    /// This instance's name: unique in the deployment, stable across its restarts.
    pub instance: String,
    pub partitions: PartitionCount,
    pub timing: Timing,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease bucket {bucket}: {detail}")]
    Bucket { bucket: String, detail: String },
    #[error("instance name {0:?} must be 1 to 64 letters, digits, `-` or `_`")]
    Instance(String),
}

/// A change of ownership, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub gained: Vec<Partition>,
    pub lost: Vec<Partition>,
    /// What this instance owns after the change.
    pub owned: BTreeSet<Partition>,
}

/// Called with every change, on the lease loop: return once work on `lost` has stopped.
pub type OnChange = Arc<dyn Fn(&Change) + Send + Sync>;

#[derive(Serialize, Deserialize)]
struct Value {
    holder: Option<String>,
}

/// The lease loop of one instance.
pub struct Leases {
    cfg: LeaseConfig,
    on_change: OnChange,
    seen: HashMap<String, Seen>,
    held: BTreeMap<Partition, Held>,
}

impl Leases {
    pub fn new(cfg: LeaseConfig, on_change: OnChange) -> Result<Leases, LeaseError> {
        let ok = !cfg.instance.is_empty()
            && cfg.instance.len() <= 64
            && cfg
                .instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(LeaseError::Instance(cfg.instance));
        }
        Ok(Leases {
            cfg,
            on_change,
            seen: HashMap::new(),
            held: BTreeMap::new(),
        })
    }

    /// Runs until `stop` completes, then releases what it holds (after reporting the loss)
    /// so the others take over at once instead of after the ttl.
    pub async fn run(
        mut self,
        js: jetstream::Context,
        stop: impl Future<Output = ()>,
    ) -> Result<(), LeaseError> {
        tokio::pin!(stop);
        let bucket = self.bucket(&js).await?;
        let every = self.cfg.timing.renew_every() / 2;
        loop {
            // First, and whether or not the bucket answers: a lease past its time is gone.
            self.expire();
            // Bounded, so a broker that hangs cannot keep a lease reported past its time.
            match tokio::time::timeout(self.cfg.timing.renew_every(), self.round(&bucket)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "a lease round failed; trying again"),
                Err(_) => tracing::warn!("a lease round timed out; trying again"),
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        let held: Vec<(Partition, Held)> = std::mem::take(&mut self.held).into_iter().collect();
        self.report(Vec::new(), held.iter().map(|(p, _)| *p).collect());
        for (p, h) in held {
            let _ = bucket.update(key(p), released(), h.revision).await;
        }
        let _ = bucket.delete(member_key(&self.cfg.instance)).await;
        Ok(())
    }

    async fn bucket(&self, js: &jetstream::Context) -> Result<kv::Store, LeaseError> {
        let fail = |e: &dyn std::fmt::Display| LeaseError::Bucket {
            bucket: self.cfg.bucket.clone(),
            detail: e.to_string(),
        };
        if let Ok(b) = js.get_key_value(&self.cfg.bucket).await {
            return Ok(b);
        }
        // `create_key_value` fails against nats-server 2.9 (its account query expects
        // newer fields): make the bucket's stream as the KV layout wants it, then open it.
        let bucket = &self.cfg.bucket;
        js.get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| fail(&e))?;
        js.get_key_value(bucket).await.map_err(|e| fail(&e))
    }

    /// One look at every key: announce, count the live instances, step every partition.
    async fn round(&mut self, bucket: &kv::Store) -> Result<(), String> {
        let t = self.cfg.timing;
        let me = self.cfg.instance.clone();
        bucket
            .put(member_key(&me), bytes::Bytes::from(me.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let mut keys = bucket.keys().await.map_err(|e| e.to_string())?;
        // A set: a key written while the listing runs can be listed twice, which would
        // count a member twice and shrink everyone's share.
        let mut members = BTreeSet::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(|e| e.to_string())?;
            if k.starts_with("member.") {
                members.insert(k);
            }
        }
        let now = Instant::now();
        let mut live = 0;
        for k in &members {
            // A member that stopped cleanly deleted its key; one that crashed stops
            // renewing it and counts no more after a ttl.
            match bucket.entry(k.as_str()).await.map_err(|e| e.to_string())? {
                Some(e) if e.operation == kv::Operation::Put => {
                    let s = self.observe(k, e.revision, None, now);
                    if k == &member_key(&me) || now.duration_since(s.since) < t.ttl {
                        live += 1;
                    }
                }
                _ => {}
            }
        }
        let share = rule::share(self.cfg.partitions.get(), live);
        for p in self.cfg.partitions.all() {
            let k = key(p);
            let seen = match bucket.entry(k.as_str()).await.map_err(|e| e.to_string())? {
                Some(e) if e.operation == kv::Operation::Put => {
                    let holder = serde_json::from_slice::<Value>(&e.value)
                        .ok()
                        .and_then(|v| v.holder);
                    Some(self.observe(&k, e.revision, holder, Instant::now()))
                }
                Some(e) => Some(self.observe(&k, e.revision, None, Instant::now())),
                None => None,
            };
            let owned = self.held.len();
            let want = if owned < share {
                Some(true)
            } else if owned > share {
                Some(false)
            } else {
                None
            };
            let step = rule::step(seen.as_ref(), self.held.get(&p), want, Instant::now(), &t);
            let expected = match step {
                Step::Nothing => continue,
                Step::Lost => {
                    self.held.remove(&p);
                    tracing::warn!(partition = %p, "a lease ran out before it was renewed");
                    self.report(Vec::new(), vec![p]);
                    continue;
                }
                Step::Release { revision } => {
                    // Work on it stops (the callback) before the bucket says it is free.
                    self.held.remove(&p);
                    self.report(Vec::new(), vec![p]);
                    let _ = bucket.update(k.as_str(), released(), revision).await;
                    tracing::info!(partition = %p, share, "partition released for another instance");
                    continue;
                }
                Step::Create => None,
                Step::TakeOver { revision } | Step::Renew { revision } => Some(revision),
            };
            let value: bytes::Bytes = serde_json::to_vec(&Value {
                holder: Some(me.clone()),
            })
            .expect("a lease value serializes")
            .into();
            // The lease counts from before the write: never later than anyone sees it.
            let sent = Instant::now();
            let written = match expected {
                None => bucket
                    .create(k.as_str(), value)
                    .await
                    .map_err(|e| e.to_string()),
                Some(revision) => bucket
                    .update(k.as_str(), value, revision)
                    .await
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(revision) => {
                    if self.held.insert(p, Held { revision, sent }).is_none() {
                        tracing::info!(partition = %p, "partition taken");
                        self.report(vec![p], Vec::new());
                    }
                }
                Err(e) => {
                    // Someone else wrote first: if it was ours, it is gone.
                    if self.held.remove(&p).is_some() {
                        tracing::warn!(partition = %p, error = %e, "lease lost to another instance");
                        self.report(Vec::new(), vec![p]);
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives up every lease past its time (the broker did not take a renewal in time).
    fn expire(&mut self) {
        let now = Instant::now();
        let t = self.cfg.timing;
        let gone: Vec<Partition> = self
            .held
            .iter()
            .filter(|(_, h)| now >= h.until(&t))
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.held.remove(p);
            tracing::warn!(partition = %p, "a lease ran out before it was renewed");
        }
        self.report(Vec::new(), gone);
    }

    /// Records a key's revision; a new revision starts a new `since`.
    fn observe(&mut self, k: &str, revision: u64, holder: Option<String>, now: Instant) -> Seen {
        let s = self
            .seen
            .entry(k.to_owned())
            .and_modify(|s| {
                if s.revision != revision {
                    *s = Seen {
                        revision,
                        holder: holder.clone(),
                        since: now,
                    };
                }
            })
            .or_insert_with(|| Seen {
                revision,
                holder,
                since: now,
            });
        s.clone()
    }

    fn report(&self, gained: Vec<Partition>, lost: Vec<Partition>) {
        if gained.is_empty() && lost.is_empty() {
            return;
        }
        (self.on_change)(&Change {
            gained,
            lost,
            owned: self.held.keys().copied().collect(),
        });
    }
}

fn key(p: Partition) -> String {
    format!("partition.{p}")
}

fn member_key(instance: &str) -> String {
    format!("member.{instance}")
}

fn released() -> bytes::Bytes {
    serde_json::to_vec(&Value { holder: None })
        .expect("a lease value serializes")
        .into()
}

/// The default lease: 10 s, given up 2 s early; a failed instance's partitions move within
/// about 10–12 s.
pub const DEFAULT_TIMING: Timing = Timing {
    ttl: Duration::from_secs(10),
    margin: Duration::from_secs(2),
};
