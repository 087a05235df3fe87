//! `Api`: an HTTP client of one test server (a cookie store holds the
//! session), and the assertions on the wire form of replies (spec §2.1).

use serde_json::{json, Value};
use std::time::Duration;

/// A client of one server, with a cookie store (the session).
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

fn client(cookies: bool, headers: reqwest::header::HeaderMap) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(cookies)
        .default_headers(headers)
        // An http_proxy in the environment must not catch loopback requests.
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            http: client(true, Default::default()),
            base: base.to_string(),
        }
    }

    /// A client whose connections come from `local`, another loopback
    /// address (127.0.0.2…): a second device, as the server sees it.
    pub fn from_address(base: &str, local: std::net::IpAddr) -> Api {
        Api {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .no_proxy()
                .local_address(local)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            base: base.to_string(),
        }
    }

    /// A client that sends exactly `Cookie: session=<token>` and stores no
    /// cookies (to reuse a session after the server told a client to drop it).
    pub fn with_session_cookie(base: &str, token: &str) -> Api {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::COOKIE,
            format!("session={token}").parse().expect("cookie header"),
        );
        Api {
            http: client(false, h),
            base: base.to_string(),
        }
    }

    /// A client that authenticates with `Authorization: Bearer <key>` (an
    /// access key) and stores no cookies.
    pub fn with_bearer(base: &str, key: &str) -> Api {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().expect("auth header"),
        );
        Api {
            http: client(false, h),
            base: base.to_string(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with `params` (a JSON object) in the query string; the raw reply.
    pub async fn get(&self, path: &str, params: Value) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .query(&params)
            .send()
            .await
            .expect("request")
    }

    /// GET with query parameters; asserts a JSON reply with HTTP 200.
    pub async fn get_json(&self, path: &str, params: Value) -> Value {
        json_of(path, self.get(path, params).await).await
    }

    /// POST with an url-encoded form body.
    pub async fn post_form(&self, path: &str, params: Value) -> Value {
        let r = self
            .http
            .post(self.url(path))
            .form(&params)
            .send()
            .await
            .expect("request");
        json_of(path, r).await
    }

    /// POST with a JSON body.
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        json_of(path, r).await
    }

    /// `method path` with a raw body and content type; the raw reply.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Every visible file, in storage order (one big page).
    pub async fn all_files(&self) -> Vec<Value> {
        self.files(json!({"pageIndex": 0, "maxPerPage": 10000}))
            .await
    }

    /// The `list` of one `files.icc` call (asserting success).
    pub async fn files(&self, params: Value) -> Vec<Value> {
        let v = self.get_json("/files.icc", params).await;
        data(&v)["list"].as_array().expect("list").clone()
    }

    /// The catalogs whose parent is in `pids` (asserting success).
    pub async fn catalogs(&self, pids: &str) -> Vec<Value> {
        let v = self.get_json("/catalogs.icc", json!({"pids": pids})).await;
        data(&v).as_array().expect("catalog array").clone()
    }

    /// Every catalog reachable from the roots, breadth first.
    pub async fn all_catalogs(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut level = self.catalogs("-1").await;
        while !level.is_empty() {
            let ids: Vec<String> = level.iter().map(|c| c["id"].to_string()).collect();
            out.extend(level);
            level = self.catalogs(&ids.join(",")).await;
        }
        out
    }

    /// The visible file named `name` (panics when absent or ambiguous).
    pub async fn file_named(&self, name: &str) -> Value {
        let all = self.all_files().await;
        let hits: Vec<&Value> = all.iter().filter(|f| f["name"] == name).collect();
        assert_eq!(hits.len(), 1, "expected one file named {name} in {all:#?}");
        hits[0].clone()
    }

    pub async fn file_id(&self, name: &str) -> i64 {
        id(&self.file_named(name).await)
    }

    /// GET `downFile.icc?id=` with extra headers; the raw reply.
    pub async fn download(&self, id: i64, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut rq = self
            .http
            .get(self.url("/downFile.icc"))
            .query(&[("id", id)]);
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        rq.send().await.expect("request")
    }
}

async fn json_of(path: &str, r: reqwest::Response) -> Value {
    let status = r.status();
    let ctype = header(&r, "content-type");
    let text = r.text().await.expect("body");
    assert_eq!(status, 200, "{path}: HTTP {status}: {text}");
    assert!(
        ctype.starts_with("application/json"),
        "{path}: content-type {ctype:?}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
}

/// A response header as text ("" when absent).
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_string())
        .unwrap_or_default()
}

/// `data` of a success reply (asserting `code` 0).
pub fn data(v: &Value) -> &Value {
    assert_eq!(v["code"], 0, "expected success, got {v}");
    &v["data"]
}

/// Asserts an error reply with `code` and a non-empty `msg`.
#[track_caller]
pub fn assert_err(v: &Value, code: i64) {
    assert_eq!(v["code"], code, "expected code {code}, got {v}");
    let msg = v["msg"].as_str().unwrap_or("");
    assert!(!msg.trim().is_empty(), "error without msg: {v}");
}

/// Asserts a binary endpoint's error reply: exactly HTTP `status`, a JSON
/// content type and body `{code, msg}` with `code` (see `src/http/error.rs`
/// for which status each code travels with: 403 for −10001/−10002, 400 for
/// −10003, 404 for −10004/5/6/8/9, 503 for −10011, 429 for −10012).
#[track_caller]
pub fn assert_binary_err_status(
    r: reqwest::Response,
    status: u16,
    code: i64,
) -> impl std::future::Future<Output = ()> {
    let caller = std::panic::Location::caller();
    async move {
        let got = r.status();
        let ctype = header(&r, "content-type");
        let text = r.text().await.expect("body");
        assert_eq!(
            got.as_u16(),
            status,
            "{caller}: expected HTTP {status} with code {code}, got {got}: {text}"
        );
        assert!(
            ctype.starts_with("application/json"),
            "{caller}: content-type {ctype:?}: {text}"
        );
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{caller}: not JSON ({e}): {got} {text}"));
        assert_eq!(v["code"], code, "{caller}: expected code {code}, got {v}");
        let msg = v["msg"].as_str().unwrap_or("");
        assert!(!msg.trim().is_empty(), "{caller}: error without msg: {v}");
    }
}

pub fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

pub fn ids(list: &[Value]) -> Vec<i64> {
    list.iter().map(id).collect()
}
