//! Partitions: which of N partitions a ticket belongs to, so that several instances can
//! each own some partitions (with a sled store of their own) and every message of one
//! ticket reaches the same owner, in order.
//!
//! The partition is FNV-1a (32 bit) of the ticket id without its colon (`jd:7001` hashes
//! `jd7001`), modulo N. That is exactly what nats-server's subject mapping
//! `{{partition(N,1,2)}}` computes over the tokens `<platform>` and `<platform ticket id>`,
//! so a gateway that cannot compute it publishes to `aftersales.in.<platform>.<id>` and the
//! server maps it ([`gateway_mapping`]); `tests/nats_mapping.rs` holds the two equal against
//! a real server. The count is fixed for the life of a deployment: changing it moves
//! tickets between partitions.
//!
//! This crate must never do I/O or depend on anything but the domain types: it is pure.

use std::fmt;
use std::num::NonZeroU16;

use aftersales_ticket::{Platform, TicketId};

/// How many partitions a deployment has (1 to 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionCount(NonZeroU16);

/// The most partitions a deployment may have: enough for 100 instances with room to
/// rebalance, few enough that every instance can list them.
pub const MAX_PARTITIONS: u16 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("a partition count must be 1 to {MAX_PARTITIONS} (got {0})")]
    Count(u64),
    #[error(
        "ticket id {0:?} has a `.` in its platform ticket id, so nats-server cannot map it \
         (a subject token cannot hold a dot): the gateway must compute the partition"
    )]
    NotMappable(String),
}

impl PartitionCount {
    pub fn new(count: u64) -> Result<Self, PartitionError> {
        u16::try_from(count)
            .ok()
            .filter(|&n| n <= MAX_PARTITIONS)
            .and_then(NonZeroU16::new)
            .map(PartitionCount)
            .ok_or(PartitionError::Count(count))
    }

    pub fn get(self) -> u16 {
        self.0.get()
    }

    /// Every partition, in order.
    pub fn all(self) -> impl Iterator<Item = Partition> {
        (0..self.get()).map(Partition)
    }
}

/// One partition: 0 to count − 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(pub u16);

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// FNV-1a, 32 bit, as Go's `hash/fnv` `New32a` (which nats-server uses).
fn fnv1a32(parts: &[&[u8]]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The partition of `ticket` among `count`.
pub fn partition_of(ticket: &TicketId, count: PartitionCount) -> Partition {
    // A ticket id is `<platform>:<id>`: the tokens nats-server would hash, without the colon.
    let (platform, id) = ticket
        .as_str()
        .split_once(':')
        .unwrap_or((ticket.as_str(), ""));
    let hash = fnv1a32(&[platform.as_bytes(), id.as_bytes()]);
    Partition((hash % u32::from(count.get())) as u16)
}

/// Where a platform's webhooks for one partition are published:
/// `<prefix>.<platform>.<partition>` (prefix `aftersales.webhooks` by default).
pub fn webhook_subject(prefix: &str, platform: &Platform, partition: Partition) -> String {
    format!("{prefix}.{platform}.{partition}")
}

/// The subject a gateway publishes `ticket`'s webhook to when the server maps partitions
/// for it (see [`gateway_mapping`]): `<prefix>.<platform>.<platform ticket id>`.
pub fn gateway_subject(prefix: &str, ticket: &TicketId) -> Result<String, PartitionError> {
    let (platform, id) = ticket
        .as_str()
        .split_once(':')
        .unwrap_or((ticket.as_str(), ""));
    if id.is_empty() || id.contains('.') {
        return Err(PartitionError::NotMappable(ticket.as_str().to_owned()));
    }
    Ok(format!("{prefix}.{platform}.{id}"))
}

/// The nats-server configuration that maps a gateway's `<gateway prefix>.<platform>.<id>`
/// onto `<webhook prefix>.<platform>.<partition>`, for the server's config file.
pub fn gateway_mapping(
    gateway_prefix: &str,
    webhook_prefix: &str,
    count: PartitionCount,
) -> String {
    format!(
        "mappings = {{\n  \"{gateway_prefix}.*.*\": \"{webhook_prefix}.{{{{wildcard(1)}}}}.{{{{partition({},1,2)}}}}\"\n}}\n",
        count.get()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(s: &str) -> TicketId {
        TicketId::parse(s).unwrap()
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference (Fowler/Noll/Vo): "", "a", "foobar".
        assert_eq!(fnv1a32(&[b""]), 0x811c_9dc5);
        assert_eq!(fnv1a32(&[b"a"]), 0xe40c_292c);
        assert_eq!(fnv1a32(&[b"foobar"]), 0xbf9c_f968);
        assert_eq!(
            fnv1a32(&[b"foo", b"bar"]),
            0xbf9c_f968,
            "parts are concatenated"
        );
    }

    #[test]
    fn counts_outside_1_to_1024_are_refused() {
        for bad in [0, 1025, 65_536, u64::MAX] {
            assert_eq!(PartitionCount::new(bad), Err(PartitionError::Count(bad)));
        }
        assert_eq!(PartitionCount::new(1024).unwrap().get(), 1024);
        assert_eq!(PartitionCount::new(3).unwrap().all().count(), 3);
    }

    #[test]
    fn one_partition_holds_everything_and_the_colon_is_not_hashed() {
        let one = PartitionCount::new(1).unwrap();
        assert_eq!(partition_of(&ticket("jd:7001"), one), Partition(0));
        let n = PartitionCount::new(1021).unwrap();
        let expected = Partition((fnv1a32(&[b"jd7001"]) % 1021) as u16);
        assert_eq!(partition_of(&ticket("jd:7001"), n), expected);
    }

    #[test]
    fn tickets_spread_evenly_over_the_partitions() {
        for count in [2u64, 3, 16, 64] {
            let n = PartitionCount::new(count).unwrap();
            let mut per = vec![0u32; count as usize];
            let tickets = 20_000u32;
            for (i, platform) in
                (0..tickets).zip(["jd", "tmall", "pdd", "kuaishou", "douyin"].iter().cycle())
            {
                let t = ticket(&format!(
                    "{platform}:{}",
                    3_000_000_000u64 + u64::from(i) * 7
                ));
                per[partition_of(&t, n).0 as usize] += 1;
            }
            let mean = f64::from(tickets) / count as f64;
            for (p, &k) in per.iter().enumerate() {
                let off = (f64::from(k) - mean).abs() / mean;
                assert!(
                    off < 0.15,
                    "{count} partitions: partition {p} has {k}, mean {mean}"
                );
            }
        }
    }

    #[test]
    fn subjects_name_the_platform_and_the_partition() {
        let jd: Platform = "jd".parse().unwrap();
        assert_eq!(
            webhook_subject("aftersales.webhooks", &jd, Partition(7)),
            "aftersales.webhooks.jd.7"
        );
        assert_eq!(
            gateway_subject("aftersales.in", &ticket("jd:7001")).unwrap(),
            "aftersales.in.jd.7001"
        );
        assert!(matches!(
            gateway_subject("aftersales.in", &ticket("jd:70.01")),
            Err(PartitionError::NotMappable(_))
        ));
        assert_eq!(
            gateway_mapping("aftersales.in", "aftersales.webhooks", PartitionCount::new(16).unwrap()),
            "mappings = {\n  \"aftersales.in.*.*\": \"aftersales.webhooks.{{wildcard(1)}}.{{partition(16,1,2)}}\"\n}\n"
        );
    }
}
