//! Bad input (spec §1.1–1.3, issue 2 "Bad input"): every missing or
//! ill-typed required parameter is −10003 with a message — sent in the
//! query, a form body or a JSON body — never an HTTP 500; invalid optional
//! values count as absent; unknown paths 404, wrong methods 405; and a
//! rejected request changes nothing in the database.

use crate::common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn app() -> TestApp {
    TestApp::builder()
        .user("alice")
        .library("photos", &["alice"])
        .file("photos/a.jpg", &jpeg(40, 30, 1, None))
        .file("photos/sub/b.jpg", &jpeg(40, 30, 2, None))
        .spawn()
        .await
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Query,
    Form,
    Json,
}

/// Sends `params` to a JSON endpoint in one of the three ways and returns
/// the reply (asserting HTTP 200 and a JSON body).
async fn call(api: &Api, method: &Method, path: &str, params: &Value, via: Via) -> Value {
    let rq = api.http.request(method.clone(), api.url(path));
    let rq = match via {
        Via::Query => rq.query(params),
        Via::Form => rq.form(params),
        Via::Json => rq.json(params),
    };
    let r = rq.send().await.expect("request");
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{method} {path} {params} via {via:?}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
}

/// (method, path, params) that must each be −10003.
fn bad_cases(file: i64) -> Vec<(Method, &'static str, Value)> {
    let get = Method::GET;
    let post = Method::POST;
    let mut v = vec![
        (get.clone(), "/login.icc", json!({})),
        (get.clone(), "/login.icc", json!({"userName": "alice"})),
        (post.clone(), "/login.icc", json!({"password": PASSWORD})),
    ];
    for p in [
        json!({}),
        json!({"type": "abc"}),
        json!({"type": "1.5"}),
        json!({"type": ""}),
        json!({"type": 3}),
        json!({"type": -1}),
        json!({"type": "99999999999999999999"}),
        json!({"type": 1}),
        json!({"type": 1, "id": 0}),
        json!({"type": 2, "id": -5}),
        json!({"type": 2, "id": "x"}),
        json!({"type": 2, "id": "1_0"}),
    ] {
        v.push((get.clone(), "/helpInfo.icc", p.clone()));
        let mut u = p;
        u["helpInt"] = json!(1);
        v.push((post.clone(), "/updateHelpInfo.icc", u));
    }
    for p in [
        json!({"type": 0}),
        json!({"type": 0, "helpInt": "abc"}),
        json!({"type": 0, "helpInt": "1.5"}),
        json!({"type": 2, "id": file}),
        json!({"type": 2, "id": file, "helpInt": ""}),
    ] {
        v.push((post.clone(), "/updateHelpInfo.icc", p));
    }
    for pids in [
        "",
        "1_0",
        "a,b",
        "1,,2",
        "1;2",
        "-1,",
        "1.0",
        "99999999999999999999",
    ] {
        v.push((get.clone(), "/catalogs.icc", json!({"pids": pids})));
    }
    v.push((get.clone(), "/catalogs.icc", json!({})));
    for idx in [
        json!(""),
        json!("abc"),
        json!(-1),
        json!("1.5"),
        json!("1e3"),
        json!("92233720368547758070"),
    ] {
        v.push((get.clone(), "/files.icc", json!({"pageIndex": idx})));
    }
    v.push((get, "/files.icc", json!({"maxPerPage": 10})));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_required_params_are_bad_param_and_change_nothing() {
    let app = app().await;
    let file = app.api.file_id("a.jpg").await;
    let before = app.db_snapshot().await;
    for (method, path, params) in bad_cases(file) {
        for via in [Via::Query, Via::Form, Via::Json] {
            let v = call(&app.api, &method, path, &params, via).await;
            assert_eq!(
                v["code"], BAD_PARAM,
                "{method} {path} {params} via {via:?}: {v}"
            );
            assert!(
                v["msg"].as_str().is_some_and(|m| !m.trim().is_empty()),
                "{path} {params}: {v}"
            );
        }
    }
    assert_eq!(
        before,
        app.db_snapshot().await,
        "a rejected request changed the database"
    );
    // The session survived all of it.
    assert_eq!(app.api.catalogs("-1").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_that_is_not_an_object_is_bad_param() {
    let app = app().await;
    let before = app.db_snapshot().await;
    for body in [
        "[1,2]",
        "\"type\"",
        "42",
        "null",
        "true",
        "{not json",
        "{\"type\": 0",
    ] {
        for (method, path) in [
            (Method::POST, "/login.icc"),
            (Method::GET, "/helpInfo.icc"),
            (Method::POST, "/updateHelpInfo.icc"),
            (Method::GET, "/catalogs.icc"),
            (Method::GET, "/files.icc"),
        ] {
            // Valid params in the query: the body alone is at fault.
            let path_q = format!("{path}?type=0&helpInt=1&pids=-1&pageIndex=0");
            let r = app
                .api
                .send_raw(method.clone(), &path_q, "application/json", body)
                .await;
            assert_eq!(r.status(), 200, "{path} {body}");
            let v: Value = r.json().await.unwrap();
            assert_err(&v, BAD_PARAM);
        }
        let r = app
            .api
            .send_raw(Method::GET, "/downFile.icc?id=1", "application/json", body)
            .await;
        assert_binary_err_status(r, 400, BAD_PARAM).await;
    }
    assert_eq!(before, app.db_snapshot().await);
    // An empty JSON body is no body at all.
    let r = app
        .api
        .send_raw(Method::GET, "/catalogs.icc?pids=-1", "application/json", "")
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_page_index_is_an_empty_page() {
    let app = app().await;
    let v = app
        .api
        .get_json("/files.icc", json!({"pageIndex": i64::MAX.to_string()}))
        .await;
    assert_eq!(data(&v)["list"], json!([]));
    assert_eq!(data(&v)["page"]["pageIndex"], i64::MAX);
    assert_eq!(data(&v)["page"]["pageCount"], 1);
    let v = app
        .api
        .get_json(
            "/files.icc",
            json!({"pageIndex": i64::MAX / 100, "maxPerPage": 10000}),
        )
        .await;
    assert_eq!(data(&v)["list"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_with_spaces_signs_and_invalid_optionals() {
    let app = app().await;
    // ints may carry spaces and a sign; ids spaces around items.
    let v = app
        .api
        .get_json("/helpInfo.icc", json!({"type": " 0 "}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let v = app
        .api
        .get_json(
            "/files.icc",
            json!({"pageIndex": "+0", "maxPerPage": " 10 "}),
        )
        .await;
    assert_eq!(data(&v)["page"]["maxPerPage"], 10);
    assert_eq!(app.api.catalogs(" -1 ").await.len(), 1);
    // Unknown parameters are ignored.
    let v = app
        .api
        .get_json("/catalogs.icc", json!({"pids": "-1", "bogus": "1_0"}))
        .await;
    assert_eq!(v["code"], 0);

    // An invalid optional value is absent: the valid one is still stored and
    // the invalid one leaves the old value.
    let set = |p: Value| app.api.post_form("/updateHelpInfo.icc", p);
    assert_eq!(set(json!({"type": 0, "helpInt": 5})).await["code"], 0);
    let v = set(json!({"type": 0, "helpInt": "five", "helpText": "t"})).await;
    assert_eq!(v["code"], 0, "{v}");
    let v = app.api.get_json("/helpInfo.icc", json!({"type": 0})).await;
    assert_eq!(
        (&data(&v)["helpInt"], &data(&v)["helpText"]),
        (&json!(5), &json!("t"))
    );
    // JSON values of the wrong shape count as absent too.
    let v = app
        .api
        .post_json(
            "/updateHelpInfo.icc",
            json!({"type": 0, "helpInt": [1], "helpText": {"a": 1}}),
        )
        .await;
    assert_err(&v, BAD_PARAM);
    let v = app
        .api
        .post_json(
            "/updateHelpInfo.icc",
            json!({"type": 0, "helpInt": null, "helpText": "u"}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_bad_param_not_a_crash() {
    let app = app().await;
    let before = app.db_snapshot().await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let v = app
        .api
        .post_form("/updateHelpInfo.icc", json!({"type": 0, "helpText": huge}))
        .await;
    assert_err(&v, BAD_PARAM);
    assert_eq!(before, app.db_snapshot().await);
    // The server is fine afterwards.
    assert_eq!(app.api.catalogs("-1").await.len(), 1);
    // Refused before its body was read, the answer closes the connection
    // and says so (a pooled client would otherwise send its next request
    // into the closing socket); one read to its end keeps it.
    let form = "application/x-www-form-urlencoded";
    let body = format!("type=0&helpText={}", "x".repeat(2 << 20));
    let r = app
        .api
        .send_raw(reqwest::Method::POST, "/updateHelpInfo.icc", form, body)
        .await;
    assert_eq!(header(&r, "connection"), "close");
    let r = app
        .api
        .send_raw(
            reqwest::Method::POST,
            "/updateHelpInfo.icc",
            form,
            "type=0&helpText=hello",
        )
        .await;
    assert!(r.headers().get("connection").is_none(), "{:?}", r.headers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_query_strings_do_not_crash() {
    let app = app().await;
    for q in [
        "type=%FF",
        "type=%",
        "type=%zz",
        "%%%",
        "type=0&&&",
        "=0&type",
    ] {
        let r = app
            .api
            .http
            .get(app.api.url(&format!("/helpInfo.icc?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{q}");
        let v: Value = r.json().await.unwrap();
        let code = v["code"].as_i64().unwrap();
        assert!(code == 0 || code == BAD_PARAM, "{q}: {v}");
        if code != 0 {
            assert_err(&v, BAD_PARAM);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let app = app().await;
    // `/` is the welcome page (issue 6); anything else unknown is 404.
    let r = app.anon().get("/", json!({})).await;
    assert_eq!(r.status(), 200);
    assert!(common::header(&r, "content-type").starts_with("text/html"));
    for path in [
        "/index.html",
        "/api/v1/nothing",
        "/nothing.icc",
        "/files.ICC",
        "/Files.icc",
        "/files.icc/extra",
        "/files",
        "/login.icc.json",
    ] {
        let r = app.api.get(path, json!({"pageIndex": 0})).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    for (method, path) in [
        (Method::POST, "/files.icc"),
        (Method::POST, "/catalogs.icc"),
        (Method::POST, "/helpInfo.icc"),
        (Method::GET, "/updateHelpInfo.icc"),
        (Method::GET, "/logout.icc"),
        (Method::PUT, "/login.icc"),
        (Method::DELETE, "/files.icc"),
        (Method::POST, "/downFile.icc"),
        (Method::PUT, "/downFile.icc.mp4"),
    ] {
        for api in [&app.api, &app.anon()] {
            let r = api
                .http
                .request(method.clone(), api.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
        }
    }
}
