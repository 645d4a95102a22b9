//! The OpenAPI document says exactly what the router serves: the same operations, each
//! answered by its route (not the fallback, not "method not allowed").

use std::collections::BTreeSet;
use std::sync::Arc;

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_http::{router, Api, OPENAPI, ROUTES};
use aftersales_store::{Store, StoreConfig};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

fn documented() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.0.3");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[test]
fn the_document_lists_exactly_the_routes() {
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented(), routes);
}

#[test]
fn every_schema_reference_resolves() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    let text = OPENAPI;
    for part in text.split("\"$ref\": \"#/").skip(1) {
        let target = &part[..part.find('"').unwrap()];
        let mut node = &doc;
        for key in target.split('/') {
            node = &node[key];
        }
        assert!(!node.is_null(), "#/{target} is referenced but not defined");
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap();
    let api = Api::new(Arc::new(Tickets::new(Arc::new(store)).unwrap()));
    let app = router(api);
    for (method, path) in documented() {
        let uri = path.replace("{id}", "jd:1").replace("{platform}", "jd");
        let request = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .body(Body::from("{}"))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !body.contains("\"not_found\""),
            "{method} {path} fell through to the fallback: {body}"
        );
    }
    let served = app
        .oneshot(
            Request::get("/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(served.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(body, OPENAPI.as_bytes());
}
