//! Hostile requests never panic the API and are answered with the right status and a
//! stable JSON error code: oversized, deep, non-UTF-8 and arbitrary webhook bodies, unknown
//! platforms, bad signatures and tokens, path and query tricks.
//!
//! The webhook property runs 300 cases by default (`PROPTEST_CASES` overrides it).

use std::str::FromStr;
use std::sync::Arc;

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_http::signature::GenericSecret;
use aftersales_http::{router, Api, Tokens, WebhookSecrets};
use aftersales_store::{Store, StoreConfig};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use proptest::prelude::*;
use serde_json::Value;
use tower::ServiceExt;

const MAX_BODY: usize = 1 << 20;

type Headers<'a> = &'a [(&'a str, &'a str)];

fn app(tokens: Tokens, secrets: WebhookSecrets) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap();
    let api = Api {
        tokens,
        max_body_bytes: MAX_BODY,
        secrets: Arc::new(secrets),
        ..Api::new(Arc::new(Tickets::new(Arc::new(store)).unwrap()))
    };
    (router(api), dir)
}

fn open_app() -> (Router, tempfile::TempDir) {
    app(Tokens::default(), WebhookSecrets::default())
}

/// One request through the router; the status and the body, which must be JSON when the
/// status is an error.
async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: Headers<'_>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        assert!(
            status.is_success(),
            "{method} {uri}: {status} with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        );
        Value::Null
    });
    (status, value)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error.code>")
}

/// Asserts the status and the error code.
async fn expect(app: &Router, method: &str, uri: &str, body: Vec<u8>, status: u16, want: &str) {
    let (got, v) = send(app, method, uri, &[], body).await;
    assert_eq!(
        (got.as_u16(), code(&v)),
        (status, want),
        "{method} {uri}: {v}"
    );
    assert!(
        !v["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{uri}: {v}"
    );
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

fn nested_objects(depth: usize) -> Vec<u8> {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes()
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let (app, _dir) = open_app();
    for platform in ["jd", "douyin", "myshop"] {
        let uri = format!("/v1/webhooks/{platform}");
        expect(
            &app,
            "POST",
            &uri,
            vec![b' '; MAX_BODY + 1],
            413,
            "body_too_large",
        )
        .await;
        expect(
            &app,
            "POST",
            &uri,
            vec![b'['; 4 * MAX_BODY],
            413,
            "body_too_large",
        )
        .await;
    }
}

#[tokio::test]
async fn deep_json_is_422_with_the_adapters_code() {
    let (app, _dir) = open_app();
    for platform in ["tmall", "jd", "pdd", "kuaishou", "douyin", "myshop"] {
        let uri = format!("/v1/webhooks/{platform}");
        for body in [
            nested_arrays(100_000),
            nested_objects(100_000),
            vec![b'['; 100_000],
        ] {
            expect(&app, "POST", &uri, body, 422, "not_json").await;
        }
    }
    // Deep JSON inside a double-encoded payload: the inner parse keeps the limit too.
    let inner = String::from_utf8(nested_arrays(100_000)).unwrap();
    let body =
        serde_json::json!({"topic": "taobao_refund_RefundCreated", "id": 1, "content": inner});
    expect(
        &app,
        "POST",
        "/v1/webhooks/tmall",
        body.to_string().into_bytes(),
        422,
        "malformed",
    )
    .await;
    let body = serde_json::json!({"tag": "200", "msg_id": "m", "data": inner});
    expect(
        &app,
        "POST",
        "/v1/webhooks/douyin",
        body.to_string().into_bytes(),
        422,
        "malformed",
    )
    .await;
}

#[tokio::test]
async fn bodies_that_are_not_utf8_or_not_json_are_422() {
    let (app, _dir) = open_app();
    for body in [
        b"\xff\xfe\xfd".to_vec(),
        b"{\"tag\": \"\xff\"}".to_vec(),
        b"\xef\xbb\xbf\xef\xbb\xbf{}".to_vec(),
        b"{\"tag\": \"\\ud800\"}".to_vec(),
        Vec::new(),
        b"   ".to_vec(),
        b"{}{}".to_vec(),
        b"18446744073709551616".to_vec(),
    ] {
        for platform in ["jd", "douyin", "myshop"] {
            let uri = format!("/v1/webhooks/{platform}");
            let (status, v) = send(&app, "POST", &uri, &[], body.clone()).await;
            assert_eq!(status, 422, "{uri} {body:?}: {v}");
            assert!(
                aftersales_adapters::Unusable::CODES.contains(&code(&v)),
                "{uri} {body:?}: {v}"
            );
        }
    }
    expect(
        &app,
        "POST",
        "/v1/webhooks/jd",
        b"\xff".to_vec(),
        422,
        "not_json",
    )
    .await;
}

#[tokio::test]
async fn unknown_platforms_are_404() {
    let (app, _dir) = open_app();
    let long = "a".repeat(33);
    for platform in [
        "No-Such",
        "JD",
        "a.b",
        "%FF",
        "%00",
        "%E4%BA%AC",
        "..",
        long.as_str(),
    ] {
        let uri = format!("/v1/webhooks/{platform}");
        expect(&app, "POST", &uri, b"{}".to_vec(), 404, "unknown_platform").await;
    }
    // No platform segment at all: no such route.
    expect(
        &app,
        "POST",
        "/v1/webhooks/",
        b"{}".to_vec(),
        404,
        "not_found",
    )
    .await;
    expect(
        &app,
        "POST",
        "/v1/webhooks/jd/x",
        b"{}".to_vec(),
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn bad_signatures_are_401() {
    let secrets = WebhookSecrets::new(
        None,
        Some(GenericSecret {
            secret: "generic-secret".into(),
        }),
    );
    let (app, _dir) = app(Tokens::default(), secrets);
    let body = include_bytes!("../../adapters/tests/payloads/generic_open.json").to_vec();
    let zeros = format!("sha256={}", "0".repeat(64));
    for signature in [zeros.as_str(), "sha256=zz", "md5=00", "", "sha256="] {
        let headers = [("x-aftersales-signature", signature)];
        let (status, v) = send(&app, "POST", "/v1/webhooks/myshop", &headers, body.clone()).await;
        assert_eq!(
            (status.as_u16(), code(&v)),
            (401, "bad_signature"),
            "{signature:?}: {v}"
        );
    }
    let (status, v) = send(&app, "POST", "/v1/webhooks/myshop", &[], body).await;
    assert_eq!(
        (status.as_u16(), code(&v)),
        (401, "missing_signature"),
        "{v}"
    );
}

#[tokio::test]
async fn tokens_are_checked_before_anything_else() {
    let tokens = Tokens {
        read: vec!["reader".into()],
        write: vec!["writer".into()],
    };
    let (app, _dir) = app(tokens, WebhookSecrets::default());
    let body = b"{}".to_vec();
    let uri = "/v1/webhooks/jd";
    let cases: [(Headers, u16, &str); 6] = [
        (&[], 401, "unauthorized"),
        (&[("authorization", "Basic d3JpdGVy")], 401, "unauthorized"),
        (&[("authorization", "Bearer")], 401, "unauthorized"),
        (&[("authorization", "Bearer reader")], 403, "forbidden"),
        (&[("authorization", "Bearer nobody")], 403, "forbidden"),
        (&[("authorization", "Bearer writer ")], 403, "forbidden"),
    ];
    for (headers, status, want) in cases {
        let (got, v) = send(&app, "POST", uri, headers, body.clone()).await;
        assert_eq!((got.as_u16(), code(&v)), (status, want), "{headers:?}: {v}");
    }
    // A too-large body from a caller without a token is refused for the token.
    let (got, v) = send(&app, "POST", uri, &[], vec![b' '; MAX_BODY + 1]).await;
    assert_eq!((got.as_u16(), code(&v)), (401, "unauthorized"), "{v}");
    let writer = [("authorization", "Bearer writer")];
    let (got, v) = send(&app, "POST", uri, &writer, body).await;
    assert_eq!((got.as_u16(), code(&v)), (422, "malformed"), "{v}");
}

#[tokio::test]
async fn path_tricks_in_ticket_ids_are_400_or_404() {
    let (app, _dir) = open_app();
    let long = "j".repeat(10_000);
    let long_id = format!("jd:{}", "1".repeat(10_000));
    let ids = [
        "..%2F..%2Fetc",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E%2F%2E%2E",
        "..",
        ".",
        "%00",
        "jd:1%00",
        "jd%3A1%2F..%2F2",
        "%FF",
        "%C3%28",
        "%E4%BA%AC%E4%B8%9C:1",
        "jd:%E4%BA%AC",
        "%F0%9F%98%80",
        "jd:1%20",
        "%20",
        "jd:1%0Ajd:2",
        "%25",
        long.as_str(),
        long_id.as_str(),
        "jd:1/../2",
        "jd:1/..",
        "jd:1/%2E%2E/2",
        "jd:1/events/x",
        "jd:nothing",
    ];
    for id in ids {
        for suffix in ["", "/events"] {
            let uri = format!("/v1/tickets/{id}{suffix}");
            let (status, v) = send(&app, "GET", &uri, &[], Vec::new()).await;
            let ok = matches!(
                (status.as_u16(), code(&v)),
                (400, "bad_ticket_id") | (404, "not_found") | (404, "ticket_not_found")
            );
            assert!(ok, "{uri}: {status} {v}");
        }
    }
}

#[tokio::test]
async fn query_tricks_are_400_with_stable_codes() {
    let (app, _dir) = open_app();
    let cases = [
        ("/v1/tickets?limit=-1", "bad_limit"),
        ("/v1/tickets?limit=0", "bad_limit"),
        ("/v1/tickets?limit=1001", "bad_limit"),
        ("/v1/tickets?limit=99999999999999999999", "bad_limit"),
        ("/v1/tickets?limit=%FF", "bad_limit"),
        ("/v1/tickets?limit=1e3", "bad_limit"),
        ("/v1/tickets?state=%FF", "bad_state"),
        ("/v1/tickets?platform=%00", "bad_platform"),
        ("/v1/tickets?due_before=%FF", "bad_due_before"),
        ("/v1/tickets?cursor=%FF", "bad_cursor"),
        ("/v1/alerts?limit=-1", "bad_limit"),
        ("/v1/alerts?limit=99999999999999999999", "bad_limit"),
        ("/v1/alerts?kind=%FF", "bad_kind"),
        ("/v1/dashboard/sla?from=%FF", "bad_from"),
        ("/v1/dashboard/sla?to=-1", "bad_to"),
        ("/v1/tickets/jd:1?as_of=%FF", "bad_as_of"),
        ("/v1/tickets/jd:1?as_of=", "bad_as_of"),
        ("/v1/tickets/jd:1?as_of=99999999999999999999", "bad_as_of"),
        ("/v1/tickets/jd:1?as_of=2026-13-01T00:00:00Z", "bad_as_of"),
        ("/v1/tickets/jd:1?as_of=a&as_of=b", "bad_as_of"),
        ("/v1/tickets?limit=1&limit=2", "bad_query"),
        ("/v1/alerts?kind=warning&kind=expired", "bad_query"),
        ("/v1/dashboard/sla?from=a&from=b", "bad_query"),
    ];
    for (uri, want) in cases {
        expect(&app, "GET", uri, Vec::new(), 400, want).await;
    }
}

// ---------------------------------------------------------------------------------------
// Arbitrary webhook bodies.

const SAMPLES: [&[u8]; 3] = [
    include_bytes!("../../adapters/tests/payloads/jd_status.json"),
    include_bytes!("../../adapters/tests/payloads/douyin_push.json"),
    include_bytes!("../../adapters/tests/payloads/generic_open.json"),
];

/// Random bytes, JSON-ish tokens, edited samples, and bodies past the limit.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        "{", "}", "[", "]", ":", ",", "\"", "\\", "0", "-", "null", " ", "\"tag\"", "\"200\"",
    ]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(token, 0..64).prop_map(|ts| ts.concat().into_bytes()),
        (
            prop::sample::select(SAMPLES.to_vec()),
            prop::collection::vec(
                (any::<prop::sample::Index>(), any::<u8>(), any::<bool>()),
                0..6
            )
        )
            .prop_map(|(sample, edits)| {
                let mut b = sample.to_vec();
                for (at, byte, insert) in edits {
                    let i = at.index(b.len());
                    if insert {
                        b.insert(i, byte);
                    } else {
                        b[i] = byte;
                    }
                }
                b
            }),
        (1usize..64).prop_map(|extra| vec![b'['; MAX_BODY + extra]),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| u32::from_str(&n).ok())
        .unwrap_or(300)
}

#[test]
fn arbitrary_webhook_bodies_get_a_known_status_and_a_json_code() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, _dir) = open_app();
    // The samples themselves are stored: the strategy's edits start from usable bodies.
    for (platform, sample) in ["jd", "douyin", "myshop"].into_iter().zip(SAMPLES) {
        let uri = format!("/v1/webhooks/{platform}");
        let (status, v) = rt.block_on(send(&app, "POST", &uri, &[], sample.to_vec()));
        assert_eq!(status, StatusCode::OK, "{uri}: {v}");
    }
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(platform in prop::sample::select(vec!["jd", "douyin", "myshop"]), body in body())| {
        let uri = format!("/v1/webhooks/{platform}");
        let (status, v) = rt.block_on(send(&app, "POST", &uri, &[], body));
        *seen.lock().unwrap().entry(status.as_u16()).or_default() += 1;
        prop_assert!(
            [200, 409, 413, 422].contains(&status.as_u16()),
            "{uri}: {status} {v}"
        );
        if status != StatusCode::OK {
            let code = code(&v);
            prop_assert!(
                code != "<no error.code>" && !code.is_empty(),
                "{uri}: {status} {v}"
            );
            if status == StatusCode::UNPROCESSABLE_ENTITY && !code.starts_with("refused_") {
                prop_assert!(aftersales_adapters::Unusable::CODES.contains(&code), "{v}");
            }
        } else {
            prop_assert!(v["stored"].is_u64(), "{v}");
        }
    });
    let seen = seen.into_inner().unwrap();
    eprintln!("statuses: {seen:?}");
    assert!(
        seen.contains_key(&422) && seen.contains_key(&413),
        "{seen:?}"
    );
}
