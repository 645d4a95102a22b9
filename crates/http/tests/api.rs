//! The HTTP API served on a real socket: webhooks in through the same adapters as NATS,
//! tickets and events out, as-of views, tokens with read and write scopes, JSON errors.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_http::{router, Api, Tokens};
use aftersales_store::{Store, StoreConfig};
use serde_json::Value;

struct Server {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

fn serve(tokens: Tokens) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap();
    let api = Api {
        tickets: Arc::new(Tickets::new(Arc::new(store)).unwrap()),
        scheduler: None,
        ingest: None,
        tokens,
        ready: Arc::new(AtomicBool::new(true)),
        max_body_bytes: 4096,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, router(api)).await.unwrap() });
    Server {
        addr,
        _dir: dir,
        _rt: rt,
    }
}

/// One HTTP/1.1 request; returns the status and the body.
fn call(s: &Server, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(s.addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn tmc(topic: &str, id: u64, modified: &str) -> Vec<u8> {
    let content = serde_json::json!({
        "refund_id": 31, "tid": 36, "oid": 37, "refund_fee": "59.90",
        "modified": modified, "bill_type": "return_bill",
    });
    serde_json::json!({"topic": format!("taobao_refund_{topic}"), "id": id, "content": content.to_string()})
        .to_string()
        .into_bytes()
}

#[test]
fn webhooks_in_tickets_out_with_dedup_and_as_of() {
    let s = serve(Tokens::default());
    assert_eq!(call(&s, "GET", "/healthz", None, b"").0, 200);
    let created = tmc("RefundCreated", 1, "2026-11-20 10:00:00");
    let (status, body) = call(&s, "POST", "/v1/webhooks/taobao", None, &created);
    assert_eq!(
        (status, json(&body)["stored"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    // Redelivered: stored once.
    let (status, body) = call(&s, "POST", "/v1/webhooks/taobao", None, &created);
    assert_eq!(
        (status, json(&body)["duplicates"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    let (_, before) = call(&s, "GET", "/v1/tickets/tmall:31", None, b"");
    let recorded_open = json(&before)["ticket"].clone();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let cut = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let agreed = tmc("RefundSellerAgreeAgreement", 2, "2026-11-20 11:00:00");
    assert_eq!(call(&s, "POST", "/v1/webhooks/tmall", None, &agreed).0, 200);

    let (status, body) = call(&s, "GET", "/v1/tickets/tmall:31", None, b"");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["state"], "awaiting_return");
    let (_, body) = call(
        &s,
        "GET",
        &format!("/v1/tickets/tmall:31?as_of={}", cut.replace('+', "%2B")),
        None,
        b"",
    );
    assert_eq!(json(&body)["state"], "pending_review", "{body}");
    assert_eq!(json(&body)["ticket"], recorded_open);
    let (_, body) = call(&s, "GET", "/v1/tickets/tmall:31/events", None, b"");
    let events = json(&body)["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["envelope"]["source_message_id"], "tmall/2");
}

#[test]
fn bad_requests_get_json_errors_with_stable_codes() {
    let s = serve(Tokens::default());
    let expect = |method: &str, path: &str, body: &[u8], status: u16, code: &str| {
        let (got, text) = call(&s, method, path, None, body);
        assert_eq!(got, status, "{path}: {text}");
        assert_eq!(json(&text)["error"]["code"], code, "{path}: {text}");
    };
    expect("POST", "/v1/webhooks/tmall", b"not json", 422, "not_json");
    expect("POST", "/v1/webhooks/Bad!", b"{}", 404, "unknown_platform");
    expect(
        "POST",
        "/v1/webhooks/tmall",
        &[b' '; 5000],
        413,
        "body_too_large",
    );
    // Not opened yet: the sender should retry later.
    let agreed = tmc("RefundSellerAgreeAgreement", 2, "2026-11-20 11:00:00");
    expect(
        "POST",
        "/v1/webhooks/tmall",
        &agreed,
        409,
        "refused_not_opened",
    );
    expect("GET", "/v1/tickets/tmall:404", b"", 404, "ticket_not_found");
    expect("GET", "/v1/tickets/a%20b", b"", 400, "bad_ticket_id");
    expect(
        "GET",
        "/v1/tickets/tmall:1?as_of=yesterday",
        b"",
        400,
        "bad_as_of",
    );
    expect("GET", "/nowhere", b"", 404, "not_found");
}

#[test]
fn tokens_separate_readers_from_writers() {
    let s = serve(Tokens {
        read: vec!["dash".into()],
        write: vec!["ops".into()],
    });
    let created = tmc("RefundCreated", 1, "2026-11-20 10:00:00");
    let status = |method, path, token, body: &[u8]| call(&s, method, path, token, body).0;
    assert_eq!(status("POST", "/v1/webhooks/tmall", None, &created), 401);
    assert_eq!(
        status("POST", "/v1/webhooks/tmall", Some("dash"), &created),
        403
    );
    assert_eq!(
        status("POST", "/v1/webhooks/tmall", Some("guess"), &created),
        403
    );
    assert_eq!(
        status("POST", "/v1/webhooks/tmall", Some("ops"), &created),
        200
    );
    assert_eq!(status("GET", "/v1/tickets/tmall:31", None, b""), 401);
    assert_eq!(
        status("GET", "/v1/tickets/tmall:31", Some("dash"), b""),
        200
    );
    assert_eq!(status("GET", "/v1/tickets/tmall:31", Some("ops"), b""), 200);
    assert_eq!(status("GET", "/metrics", Some("dash"), b""), 200);
    // Probes stay open for the orchestrator.
    assert_eq!(status("GET", "/healthz", None, b""), 200);
    assert_eq!(status("GET", "/readyz", None, b""), 200);
}
