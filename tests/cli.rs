//! End to end: the `aftersales` binary as a user runs it, on a real store in a temporary
//! directory.

use std::path::Path;
use std::process::{Command, Output};

fn aftersales(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aftersales"))
        .args(args)
        .output()
        .expect("the aftersales binary runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn demo_store(dir: &Path) -> String {
    let data = dir.join("store");
    let data = data.to_str().unwrap().to_owned();
    let out = aftersales(&["demo", "--data", &data]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "demo failed: {stderr}");
    assert!(
        stdout.contains("redelivered message: already stored"),
        "{stdout}"
    );
    assert!(
        stdout.contains("⏰ refund_only_auto_approve expired"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nok: "),
        "the demo ends with a clean chain check: {stdout}"
    );
    data
}

#[test]
fn the_demo_store_reads_back_through_verify_ticket_and_as_of() {
    let dir = tempfile::tempdir().unwrap();
    let data = demo_store(dir.path());

    let out = aftersales(&["verify", "--data", &data]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.starts_with("ok: "), "{stdout}");

    let ticket = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["ticket", "--data", &data, "jd:7001"];
        args.extend_from_slice(extra);
        let out = aftersales(&args);
        assert!(out.status.success(), "{}", text(&out).1);
        serde_json::from_slice(&out.stdout).expect("ticket prints JSON")
    };
    let now = ticket(&[]);
    assert_eq!(now["state"], "refunded");
    assert_eq!(now["history"].as_array().unwrap().len(), 5);
    assert_eq!(now["history"][0]["envelope"]["event"]["type"], "opened");
    assert_eq!(
        now["history"][0]["envelope"]["occurred_at"],
        "2026-11-20T20:00:00+08:00"
    );
    // The demo's store clock follows platform time, so the as-of view is the ticket then.
    let then = ticket(&["--as-of", "2026-11-21T12:00:00+08:00"]);
    assert_eq!(then["state"], "awaiting_return");
    assert_eq!(then["history"].as_array().unwrap().len(), 2);

    // Every deadline of the demo fired already: advancing far ahead stores nothing twice.
    let out = aftersales(&[
        "advance",
        "--data",
        &data,
        "--to",
        "2027-06-01T00:00:00+08:00",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("fired 0 deadline(s)"), "{stdout}");
    let out = aftersales(&["verify", "--data", &data]);
    assert!(text(&out).0.contains("ok: 32 records"), "{}", text(&out).0);
}

#[test]
fn bad_input_gets_a_clear_error_and_a_failing_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &["serve", "--data", missing, "--http", "0.0.0.0:0"],
            "without tokens",
        ),
        (
            &["serve", "--data", missing, "--http", "localhost"],
            "is not an address",
        ),
        (&["verify", "--data", missing], "no store at"),
        (&["ticket", "--data", missing, "jd:1"], "no store at"),
        (
            &["ticket", "--data", missing, "../../etc/passwd"],
            "ticket id must be",
        ),
        (
            &["advance", "--data", missing, "--to", "tomorrow"],
            "not an RFC 3339 instant",
        ),
        (
            &[
                "advance",
                "--data",
                missing,
                "--to",
                "2026-11-30T00:00:00+08:00",
            ],
            "no store at",
        ),
    ];
    for (args, says) in cases {
        let out = aftersales(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?} should say {says:?}, said: {stderr}"
        );
    }

    let data = demo_store(dir.path());
    let out = aftersales(&["ticket", "--data", &data, "jd:424242"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("ticket jd:424242 has no events"));
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["demo", "--help"],
        &["verify", "--help"],
        &["ticket", "--help"],
        &["advance", "--help"],
        &["bench", "--help"],
        &["bench", "store", "--help"],
        &["bench", "timers", "--help"],
        &["bench", "ingest", "--help"],
        &["serve", "--help"],
        &["ingest", "--help"],
        &["deadletter", "--help"],
        &["deadletter", "list", "--help"],
        &["deadletter", "replay", "--help"],
        &["export", "--help"],
        &["replay", "--help"],
        &["import", "--help"],
    ] {
        let out = aftersales(args);
        let (stdout, _) = text(&out);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout.contains("Usage: aftersales"), "{args:?}: {stdout}");
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out.split_once("\r\n\r\n").unwrap().1.to_owned())
}

#[test]
fn serve_takes_webhooks_answers_queries_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_aftersales"))
        .args(["serve", "--http", &addr, "--data"])
        .arg(&data)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if an assertion fails first, so no server outlives the test.
    struct KillOnDrop(Option<std::process::Child>);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                let _ = c.kill();
            }
        }
    }
    let mut guard = KillOnDrop(Some(child));
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(started.elapsed().as_secs() < 30, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(http(&addr, "GET", "/readyz", b"").0, 200);
    // Applied just now, so the review deadline is still ahead.
    let now = chrono::Utc::now().timestamp();
    let douyin = format!(
        r#"[{{"tag":"200","msg_id":"m1","data":{{"aftersale_id":555,"aftersale_type":0,"apply_time":{now},"p_id":1,"s_id":2,"refund_amount":9900}}}}]"#
    );
    let (status, body) = http(&addr, "POST", "/v1/webhooks/douyin", douyin.as_bytes());
    assert_eq!(status, 200, "{body}");
    // The scheduler follows the log, so its view of the new ticket comes a moment later.
    let mut view = serde_json::Value::Null;
    for _ in 0..250 {
        let (status, body) = http(&addr, "GET", "/v1/tickets/douyin:555", b"");
        assert_eq!(status, 200, "{body}");
        view = serde_json::from_str(&body).unwrap();
        if !view["open_deadlines"].as_array().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(view["state"], "pending_review");
    let deadlines = view["open_deadlines"].as_array().unwrap();
    assert!(deadlines.iter().any(|d| d["kind"] == "review"), "{view}");
    let (_, metrics) = http(&addr, "GET", "/metrics", b"");
    assert!(metrics.contains("aftersales_events_stored 1"), "{metrics}");

    let child = guard.0.take().unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stopped cleanly: 1 events"), "{stderr}");
    let out = aftersales(&["verify", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn export_replay_and_import_serve_an_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data = demo_store(dir.path());
    let lines = |out: &Output| -> Vec<serde_json::Value> {
        assert!(out.status.success(), "{}", text(out).1);
        text(out)
            .0
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = lines(&aftersales(&["export", "--data", &data]));
    let positions: Vec<u64> = all
        .iter()
        .map(|l| l["position"].as_u64().unwrap())
        .collect();
    assert_eq!(
        positions,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "the whole log, in order"
    );
    let one = lines(&aftersales(&[
        "export", "--data", &data, "--ticket", "jd:7001",
    ]));
    assert!(!one.is_empty() && one.len() < all.len());
    assert!(one.iter().all(|l| l["envelope"]["ticket_id"] == "jd:7001"));
    // Before the first record nothing was recorded yet.
    let none = lines(&aftersales(&[
        "export",
        "--data",
        &data,
        "--as-of",
        "2000-01-01T00:00:00Z",
    ]));
    assert!(none.is_empty());

    let digest = |data: &str| {
        let out = aftersales(&["replay", "--data", data]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(stdout.starts_with("replayed "), "{stdout}");
        stdout.lines().last().unwrap().to_owned()
    };
    let first = digest(&data);
    assert!(first.starts_with("digest "), "{first}");
    assert_eq!(digest(&data), first, "the same log gives the same digest");

    let file = dir.path().join("taobao.jsonl");
    let created = r#"{"topic":"taobao_refund_RefundCreated","id":1,"content":"{\"refund_id\":9,\"tid\":1,\"refund_fee\":\"5.00\",\"bill_type\":\"return_bill\",\"modified\":\"2026-11-20 10:00:00\"}"}"#;
    std::fs::write(&file, format!("{created}\n\nnot json\n")).unwrap();
    let file = file.to_str().unwrap();
    let out = aftersales(&["import", "--data", &data, "--platform", "taobao", file]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 3: not_json"), "{stderr}");
    assert!(
        stderr.contains("1 commands stored, 0 already stored, 1 lines not used"),
        "{stderr}"
    );
    let out = aftersales(&["import", "--data", &data, "--platform", "taobao", file]);
    assert!(
        text(&out).1.contains("0 commands stored, 1 already stored"),
        "imported twice, stored once"
    );
    assert_ne!(digest(&data), first, "the new ticket changes the digest");
}
