//! The HTTP API served on a real socket: webhooks in through the same adapters as NATS,
//! tickets and events out, as-of views, tokens with read and write scopes, JSON errors.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_http::signature::{DouyinSecret, GenericSecret};
use aftersales_http::{router, Api, Tokens, WebhookSecrets};
use aftersales_store::{Store, StoreConfig};
use serde_json::Value;

struct Server {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

fn serve(tokens: Tokens) -> Server {
    serve_with(tokens, WebhookSecrets::default())
}

fn serve_with(tokens: Tokens, secrets: WebhookSecrets) -> Server {
    serve_api(|api| Api {
        tokens,
        max_body_bytes: 4096,
        secrets: Arc::new(secrets),
        ..api
    })
}

/// An API over a fresh store, as `shape` makes it from `Api::new`.
fn serve_api(shape: impl FnOnce(Api) -> Api) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap();
    let api = shape(Api::new(Arc::new(Tickets::new(Arc::new(store)).unwrap())));
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
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    call_with(s, method, path, &auth, body)
}

/// One HTTP/1.1 request with `extra` header lines (each ending in CRLF).
fn call_with(s: &Server, method: &str, path: &str, extra: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(s.addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
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

fn signed_server() -> Server {
    serve_with(
        Tokens::default(),
        WebhookSecrets::new(
            Some(DouyinSecret {
                app_key: "3409409348479354011".into(),
                app_secret: "douyin-secret".into(),
            }),
            Some(GenericSecret {
                secret: "generic-secret".into(),
            }),
        ),
    )
}

/// A Douyin 200 (refund applied) push for after-sale `id`.
fn douyin_push(id: u64) -> Vec<u8> {
    let data = serde_json::json!({
        "aftersale_id": id, "aftersale_status": 6, "aftersale_type": 2,
        "apply_time": 1763604000, "p_id": 4900000000000000000u64, "s_id": 4900000000000000001u64,
        "refund_amount": 5900,
    });
    serde_json::json!([{"tag": "200", "msg_id": format!("m{id}"), "data": data}])
        .to_string()
        .into_bytes()
}

/// Signed here with the RustCrypto crates directly, not with the code under test.
fn douyin_sign(body: &[u8]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(b"3409409348479354011");
    h.update(body);
    h.update(b"douyin-secret");
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn generic_sign(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"generic-secret").unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn generic_open(id: u32) -> Vec<u8> {
    serde_json::json!({
        "message_id": format!("shop-{id}"), "ticket_id": format!("myshop:{id}"),
        "at": "2026-11-20T10:00:00+08:00", "actor": "customer",
        "command": {"type": "open", "ticket": {
            "id": format!("myshop:{id}"), "platform": "myshop", "platform_ticket_id": id.to_string(),
            "order_id": format!("o-{id}"), "order_line_id": format!("o-{id}-1"),
            "amount_paid": 12900, "service_type": "repair_send_in", "reason": "quality_problem"}},
    })
    .to_string()
    .into_bytes()
}

/// Posts `body` with the `extra` header lines; asserts the status and the error code (if any).
fn post_expect(s: &Server, path: &str, extra: &str, body: &[u8], status: u16, code: Option<&str>) {
    let (got, text) = call_with(s, "POST", path, extra, body);
    assert_eq!(got, status, "{path} {extra:?}: {text}");
    if let Some(code) = code {
        assert_eq!(json(&text)["error"]["code"], code, "{text}");
    } else {
        assert_eq!(json(&text)["stored"], 1, "{text}");
    }
}

fn stored(s: &Server, id: &str) -> u16 {
    call(s, "GET", &format!("/v1/tickets/{id}"), None, b"").0
}

#[test]
fn douyin_pushes_must_carry_their_event_sign() {
    let s = signed_server();
    let path = "/v1/webhooks/douyin";
    // Refused, and nothing stored: no header, a wrong signature, a body changed after signing.
    let body = douyin_push(1);
    post_expect(&s, path, "", &body, 401, Some("missing_signature"));
    let wrong = douyin_sign(b"something else");
    post_expect(
        &s,
        path,
        &format!("event-sign: {wrong}\r\n"),
        &body,
        401,
        Some("bad_signature"),
    );
    let sign = douyin_sign(&body);
    let changed = douyin_push(2);
    post_expect(
        &s,
        path,
        &format!("event-sign: {sign}\r\n"),
        &changed,
        401,
        Some("bad_signature"),
    );
    post_expect(
        &s,
        path,
        "event-sign: not-hex\r\n",
        &body,
        401,
        Some("bad_signature"),
    );
    assert_eq!(stored(&s, "douyin:1"), 404);
    assert_eq!(stored(&s, "douyin:2"), 404);
    // Signed as the platform signs: stored.
    let headers = format!("event-sign: {sign}\r\napp-id: 3409409348479354011\r\n");
    post_expect(&s, path, &headers, &body, 200, None);
    assert_eq!(stored(&s, "douyin:1"), 200);
    // Other platforms have no secret configured: accepted unsigned as before.
    let created = tmc("RefundCreated", 1, "2026-11-20 10:00:00");
    post_expect(&s, "/v1/webhooks/tmall", "", &created, 200, None);
}

#[test]
fn generic_sources_must_carry_the_hmac() {
    let s = signed_server();
    let path = "/v1/webhooks/myshop";
    let header = |v: &str| format!("X-Aftersales-Signature: {v}\r\n");
    let body = generic_open(42);
    post_expect(&s, path, "", &body, 401, Some("missing_signature"));
    let wrong = generic_sign(b"something else");
    post_expect(&s, path, &header(&wrong), &body, 401, Some("bad_signature"));
    let sign = generic_sign(&body);
    post_expect(
        &s,
        path,
        &header(&sign),
        &generic_open(43),
        401,
        Some("bad_signature"),
    );
    // The bare hex without `sha256=` is malformed.
    post_expect(
        &s,
        path,
        &header(&sign[7..]),
        &body,
        401,
        Some("bad_signature"),
    );
    assert_eq!(stored(&s, "myshop:42"), 404);
    assert_eq!(stored(&s, "myshop:43"), 404);
    post_expect(&s, path, &header(&sign), &body, 200, None);
    assert_eq!(stored(&s, "myshop:42"), 200);
}

#[test]
fn a_partitioned_instance_refuses_webhooks_and_says_where_a_ticket_cannot_be_read() {
    use aftersales_http::TicketSource;
    // Partition "tmall" is served here; every other ticket is elsewhere. No stream reader
    // first, then one whose broker does not answer.
    let partitioned = |stream: Option<aftersales_http::StreamHistory>| {
        move |api: Api| {
            let TicketSource::One(local) = api.tickets.clone() else {
                unreachable!()
            };
            Api {
                tickets: TicketSource::Partitioned {
                    owner: Arc::new(move |id| {
                        if id.as_str().starts_with("tmall:") {
                            Ok(local.clone())
                        } else {
                            Err(format!("{id} is served elsewhere"))
                        }
                    }),
                    stream,
                },
                ..api
            }
        }
    };
    let s = serve_api(partitioned(None));
    let created = tmc("RefundCreated", 1, "2026-11-20 10:00:00");
    let (status, body) = call(&s, "POST", "/v1/webhooks/taobao", None, &created);
    assert_eq!(
        (status, json(&body)["error"]["code"].clone()),
        (421, "partitioned".into())
    );
    let (status, body) = call(&s, "GET", "/v1/tickets/jd:1", None, b"");
    assert_eq!(
        (status, json(&body)["error"]["code"].clone()),
        (421, "partition_elsewhere".into())
    );
    // The served partition answers from its store (nothing stored: 404).
    let (status, body) = call(&s, "GET", "/v1/tickets/tmall:31/events", None, b"");
    assert_eq!(
        (status, json(&body)["error"]["code"].clone()),
        (404, "ticket_not_found".into())
    );

    let down: aftersales_http::StreamHistory =
        Arc::new(|_| Box::pin(async { Err("no responders".to_string()) }));
    let s = serve_api(partitioned(Some(down)));
    let (status, body) = call(&s, "GET", "/v1/tickets/jd:1", None, b"");
    assert_eq!(
        (status, json(&body)["error"]["code"].clone()),
        (503, "events_stream".into())
    );
}
