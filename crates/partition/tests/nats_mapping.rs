//! nats-server's own `partition(N,1,2)` subject mapping against [`partition_of`]: a gateway
//! that publishes to `aftersales.in.<platform>.<id>` reaches the partition this crate
//! computes, for every ticket tried. Needs `nats-server` (CI installs it).

#[path = "../../ingest/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use aftersales_partition::{
    gateway_mapping, gateway_subject, partition_of, webhook_subject, PartitionCount,
};
use aftersales_ticket::{Platform, TicketId};
use futures_util::StreamExt;
use support::NatsServer;

#[tokio::test]
async fn the_servers_partition_mapping_agrees_with_partition_of() {
    let dir = tempfile::tempdir().unwrap();
    let counts = [1u64, 7, 16, 1024].map(|n| PartitionCount::new(n).unwrap());
    // One gateway prefix per count, each mapped by the text gateway_mapping gives.
    let mut config = String::new();
    for count in counts {
        let mapping = gateway_mapping(
            &format!("gw{}", count.get()),
            &format!("wh{}", count.get()),
            count,
        );
        config.push_str(&mapping);
    }
    // Several `mappings` blocks in one file merge; written as one to be plain.
    let merged = format!(
        "mappings = {{\n{}}}\n",
        config
            .lines()
            .filter(|l| l.starts_with("  "))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let conf = dir.path().join("mapping.conf");
    std::fs::write(&conf, &merged).unwrap();
    let server = NatsServer::start_with(&["-c", conf.to_str().unwrap()]);
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut sub = client.subscribe("*.>").await.unwrap();

    let platforms = ["jd", "tmall", "pdd", "kuaishou", "douyin", "myshop"];
    let mut expected: HashMap<(String, String), String> = HashMap::new();
    for i in 0..600u64 {
        let platform: Platform = platforms[i as usize % platforms.len()].parse().unwrap();
        // Digits as platforms issue them, and the other characters an id may hold.
        let raw = match i % 3 {
            0 => format!("{}", 3_000_000_000_000 + i * 7_919),
            1 => format!("RF{i:08}-x_{}", i * 31),
            _ => format!("{i}"),
        };
        let ticket = TicketId::for_platform(&platform, &raw).unwrap();
        for count in counts {
            let subject = gateway_subject(&format!("gw{}", count.get()), &ticket).unwrap();
            let want = webhook_subject(
                &format!("wh{}", count.get()),
                &platform,
                partition_of(&ticket, count),
            );
            expected.insert((ticket.as_str().to_owned(), count.get().to_string()), want);
            client
                .publish(
                    subject,
                    format!("{}|{}", ticket.as_str(), count.get()).into(),
                )
                .await
                .unwrap();
        }
    }
    client.flush().await.unwrap();
    let mut seen = 0;
    while seen < expected.len() {
        let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("every mapped message arrives")
            .unwrap();
        let body = String::from_utf8(msg.payload.to_vec()).unwrap();
        let (ticket, count) = body.split_once('|').unwrap();
        let want = &expected[&(ticket.to_owned(), count.to_owned())];
        assert_eq!(
            msg.subject.as_str(),
            want,
            "ticket {ticket}, {count} partitions"
        );
        seen += 1;
    }
}
