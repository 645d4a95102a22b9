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
        stdout.contains("⚠ review due in 2h (jd.review)"),
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
    assert!(text(&out).0.contains("ok: 35 records"), "{}", text(&out).0);
}

/// One byte of sled's data file flipped, where a ticket id is stored: `verify` exits 2 and
/// says what is damaged, whether sled refuses the file or drops the log after the damage
/// (which the acknowledged watermark catches).
#[test]
fn verify_fails_after_a_byte_of_the_store_is_flipped() {
    for ticket in ["jd:7001", "jd:7020", "pdd:8002"] {
        let dir = tempfile::tempdir().unwrap();
        let data = demo_store(dir.path());
        let file = Path::new(&data).join("db");
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes
            .windows(ticket.len())
            .position(|w| w == ticket.as_bytes())
            .expect("the ticket id is in the data file");
        bytes[at + 3] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
        let out = aftersales(&["verify", "--data", &data]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{ticket}: {stdout}{stderr}");
        assert!(
            stdout.starts_with("damaged: ") || stdout.contains("position"),
            "{ticket}: {stdout}"
        );
    }
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

/// `aftersales serve` on a loopback port the kernel picks (`--http 127.0.0.1:0`), at the
/// address it says it bound: a port picked by the test and released could be taken by a
/// parallel test's server. Killed on drop if a test fails first, so no server outlives
/// its test; its stderr is kept and shown when it does not start.
struct Serve {
    child: Option<std::process::Child>,
    addr: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Serve {
    fn start(data: &Path) -> Serve {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_aftersales"))
            .args(["serve", "--http", "127.0.0.1:0", "--data"])
            .arg(data)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stderr.take().unwrap());
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn({
            let stderr = stderr.clone();
            move || {
                for line in lines.lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix("serving http://") {
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                    }
                    let mut all = stderr.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
            }
        });
        let addr = rx.recv_timeout(std::time::Duration::from_secs(30));
        let mut serve = Serve {
            child: Some(child),
            addr: String::new(),
            stderr,
            reader: Some(reader),
        };
        match addr {
            Ok(addr) => serve.addr = addr,
            Err(_) => panic!("serve did not start: {}", serve.stderr.lock().unwrap()),
        }
        serve
    }

    fn get(&self, path: &str) -> (u16, String) {
        http(&self.addr, "GET", path, b"")
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// SIGTERM; returns what it printed on stderr once it exited 0.
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = child.wait().unwrap();
        // The reader ends at the pipe's end, so it has everything serve printed.
        self.reader.take().unwrap().join().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "{stderr}");
        stderr
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            if std::thread::panicking() {
                let _ = c.wait();
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                eprintln!("serve's stderr: {}", self.stderr.lock().unwrap());
            }
        }
    }
}

/// Polls `path` until `done` holds for its JSON (the read models follow the log).
fn wait_for(
    serve: &Serve,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut view = serde_json::Value::Null;
    for _ in 0..250 {
        view = serve.json(path);
        if done(&view) {
            return view;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{path} never got there: {view}");
}

#[test]
fn serve_takes_webhooks_answers_queries_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let serve = Serve::start(&data);
    assert_eq!(serve.get("/readyz").0, 200);
    // Applied just now, so the review deadline is still ahead.
    let now = chrono::Utc::now().timestamp();
    let douyin = format!(
        r#"[{{"tag":"200","msg_id":"m1","data":{{"aftersale_id":555,"aftersale_type":0,"apply_time":{now},"p_id":1,"s_id":2,"refund_amount":9900}}}}]"#
    );
    let (status, body) = http(
        &serve.addr,
        "POST",
        "/v1/webhooks/douyin",
        douyin.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    // The scheduler follows the log, so its view of the new ticket comes a moment later.
    let view = wait_for(&serve, "/v1/tickets/douyin:555", |v| {
        !v["open_deadlines"].as_array().unwrap().is_empty()
    });
    assert_eq!(view["state"], "pending_review");
    let deadlines = view["open_deadlines"].as_array().unwrap();
    assert!(deadlines.iter().any(|d| d["kind"] == "review"), "{view}");
    let (_, metrics) = serve.get("/metrics");
    assert!(metrics.contains("aftersales_events_stored 1"), "{metrics}");

    let stderr = serve.stop();
    assert!(stderr.contains("stopped cleanly: 1 events"), "{stderr}");
    let out = aftersales(&["verify", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
}

/// One generic-format message for the merchant-defined source `myshop` (generic pack:
/// review 48h, dispose 48h after receipt).
fn myshop(n: u32, at: chrono::DateTime<chrono::Utc>, command: serde_json::Value) -> String {
    serde_json::json!({
        "message_id": format!("m-{n}-{}", command["type"].as_str().unwrap()),
        "ticket_id": format!("myshop:{n}"),
        "at": at.to_rfc3339(),
        "actor": if command["type"] == "open" { "customer" } else { "merchant" },
        "command": command,
    })
    .to_string()
}

fn myshop_open(n: u32, at: chrono::DateTime<chrono::Utc>) -> String {
    let ticket = serde_json::json!({"type": "open", "ticket": {
        "id": format!("myshop:{n}"), "platform": "myshop", "platform_ticket_id": n.to_string(),
        "order_id": format!("o-{n}"), "order_line_id": format!("o-{n}-1"), "amount_paid": 5000,
        "service_type": "return_refund", "reason": "quality_problem"}});
    myshop(n, at, ticket)
}

#[test]
fn dashboards_count_what_the_webhooks_and_deadlines_did_across_restarts() {
    use chrono::Duration as D;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let serve = Serve::start(&data);
    // Platform times around the real clock, which `serve`'s dashboard counts from.
    let now = chrono::Utc::now();
    let t0 = now - D::hours(30); // review due in 18h
    let early = now - D::minutes(2850); // 47.5h ago: review due in 30 min
    let bodies = [
        myshop_open(1, t0),
        myshop(1, t0 + D::hours(2), serde_json::json!({"type": "approve"})),
        myshop(
            1,
            t0 + D::hours(3),
            serde_json::json!({"type": "confirm_receipt"}),
        ),
        myshop(
            1,
            t0 + D::hours(4),
            serde_json::json!({"type": "dispose", "disposal": {"kind": "refund", "amount": 5000}}),
        ),
        myshop_open(2, t0),
        myshop_open(3, early),
    ];
    for body in &bodies {
        let (status, answer) = http(&serve.addr, "POST", "/v1/webhooks/myshop", body.as_bytes());
        assert_eq!(status, 200, "{body}: {answer}");
    }
    let sla = wait_for(&serve, "/v1/dashboard/sla?platform=myshop", |v| {
        v["tickets"] == 3
    });
    // By hand: myshop:1 reviewed in 2h and disposed 1h after receipt (both met, handling
    // 3h); myshop:2 due in 18h, myshop:3 in 30 min.
    assert_eq!(sla["by_state"]["refunded"], 1, "{sla}");
    assert_eq!(sla["by_state"]["pending_review"], 2, "{sla}");
    assert_eq!(sla["due_within_1h"], 1, "{sla}");
    assert_eq!(sla["due_within_24h"], 2, "{sla}");
    assert_eq!(
        (sla["met"].as_u64(), sla["breached"].as_u64()),
        (Some(2), Some(0)),
        "{sla}"
    );
    assert_eq!(sla["met_pct"], 100.0, "{sla}");
    assert_eq!(sla["handling"]["tickets"], 1, "{sla}");
    assert_eq!(sla["handling"]["mean_hours"], 3.0, "{sla}");
    assert_eq!(sla["handling"]["within_6h_pct"], 100.0, "{sla}");
    let list = serve.json("/v1/tickets?platform=myshop&limit=2");
    let ids: Vec<&str> = list["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["myshop:3", "myshop:2"], "{list}");
    let next = list["next"].as_str().unwrap();
    let rest = serve.json(&format!(
        "/v1/tickets?platform=myshop&limit=2&cursor={next}"
    ));
    assert_eq!(rest["tickets"][0]["id"], "myshop:1", "{rest}");
    assert_eq!(rest["next"], serde_json::Value::Null);
    let (status, body) = serve.get("/v1/tickets?limit=0");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"bad_limit\""), "{body}");
    let (status, body) = serve.get("/v1/dashboard/sla?from=yesterday");
    assert_eq!(
        (status, body.contains("\"bad_from\"")),
        (400, true),
        "{body}"
    );
    // myshop:3 is due in 30 min, inside the 2h window: the scheduler warns of it at once.
    let events = wait_for(&serve, "/v1/tickets/myshop:3/events", |v| {
        v["events"].as_array().unwrap().len() == 2
    });
    assert_eq!(
        events["events"][1]["envelope"]["event"]["type"], "deadline_warned",
        "{events}"
    );
    serve.stop();

    // Both reviews pass while the service is down; `advance` fires them.
    let to = (now + D::days(2)).to_rfc3339();
    let out = aftersales(&["advance", "--data", data.to_str().unwrap(), "--to", &to]);
    assert!(out.status.success(), "{}", text(&out).1);

    let serve = Serve::start(&data);
    let sla = wait_for(&serve, "/v1/dashboard/sla?platform=myshop", |v| {
        v["breached"] == 2
    });
    assert_eq!(sla["breached_by_kind"]["review"], 2, "{sla}");
    assert_eq!(sla["met"], 2, "{sla}");
    assert_eq!(sla["met_pct"], 50.0, "{sla}");
    assert_eq!(
        (sla["due_within_24h"].as_u64(), sla["overdue"].as_u64()),
        (Some(0), Some(0)),
        "{sla}"
    );
    // The warning served live, the two expiries fired by `advance`: newest first.
    let alerts = serve.json("/v1/alerts?platform=myshop");
    let kinds: Vec<(&str, &str)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["ticket"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds.len(), 3, "{alerts}");
    assert!(kinds[..2].iter().all(|(k, _)| *k == "expired"), "{alerts}");
    assert_eq!(kinds[2], ("warning", "myshop:3"), "{alerts}");
    let warnings = serve.json("/v1/alerts?kind=warning&limit=10");
    assert_eq!(
        warnings["alerts"].as_array().unwrap().len(),
        1,
        "{warnings}"
    );
    let (status, body) = serve.get("/v1/alerts?kind=loud");
    assert_eq!(
        (status, body.contains("\"bad_kind\"")),
        (400, true),
        "{body}"
    );
    let (_, metrics) = serve.get("/metrics");
    assert!(
        metrics
            .contains(r#"aftersales_deadlines_breached_total{platform="myshop",kind="review"} 2"#),
        "{metrics}"
    );
    let stderr = serve.stop();
    assert!(
        stderr.contains("read models resumed from their checkpoint at 7"),
        "{stderr}"
    );
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

#[test]
fn the_alerts_config_sets_the_warning_windows_and_refuses_unknown_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    // A myshop review opened 2026-11-20 10:00Z: the generic pack's 48h, due 11-22 10:00Z.
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
        .unwrap()
        .to_utc();
    let bodies = dir.path().join("myshop.jsonl");
    std::fs::write(&bodies, format!("{}\n", myshop_open(1, t0))).unwrap();
    let out = aftersales(&[
        "import",
        "--data",
        data,
        "--platform",
        "myshop",
        bodies.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out).1);

    let config = dir.path().join("aftersales.toml");
    std::fs::write(
        &config,
        "[alerts]\nwarn_before_minutes = 120\n[alerts.warn_before_minutes_by_kind]\nreview = 60\ncustomer_ship_back = 0\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let advance = |to: &str| {
        let out = aftersales(&["advance", "--data", data, "--to", to, "--config", config]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        stdout
    };
    // Review warns 60 minutes ahead, not the default 120 (times in China time, as the
    // deadline's).
    let out = advance("2026-11-22T08:30:00Z");
    assert!(out.contains("warned of 0 (0 already stored)"), "{out}");
    assert!(
        out.contains("next warning: 2026-11-22T09:00:00+00:00"),
        "{out}"
    );
    let out = advance("2026-11-22T09:00:00Z");
    assert!(
        out.contains("warned 2026-11-22T17:00:00+08:00  myshop:1  review  generic.review  due=2026-11-22T18:00:00+08:00"),
        "{out}"
    );
    assert!(out.contains("fired 0 deadline(s)"), "{out}");
    assert!(out.contains("warned of 1 (0 already stored)"), "{out}");
    // Once: a later run (with the default windows, too) warns no more, and the deadline
    // still expires at its due time.
    let out = advance("2026-11-22T09:30:00Z");
    assert!(out.contains("warned of 0"), "{out}");
    let out = aftersales(&["advance", "--data", data, "--to", "2026-11-22T10:00:00Z"]);
    let (out, _) = text(&out);
    assert!(out.contains("fired 1 deadline(s)"), "{out}");
    assert!(out.contains("warned of 0"), "{out}");

    // An unknown kind is refused by name, by `advance` and `serve` alike.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[alerts.warn_before_minutes_by_kind]\nreveiw = 60\n").unwrap();
    let bad = bad.to_str().unwrap();
    for args in [
        &[
            "advance",
            "--data",
            data,
            "--to",
            "2026-11-22T10:00:00Z",
            "--config",
            bad,
        ][..],
        &["serve", "--data", data, "--config", bad][..],
    ] {
        let out = aftersales(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("\"reveiw\" is not a deadline kind")
                && stderr.contains("the kinds are review, "),
            "{args:?}: {stderr}"
        );
    }
}
