//! Browsers (finding 6). Originals — from the library or uploaded — are
//! never shown as pages of this server's origin, where a script could use
//! the viewer's session against `/api/v1/*`: `nosniff`, a sandboxing CSP,
//! and `attachment` for anything but pictures, video and sound. And a page
//! of another site (or another port of this host, or a sandboxed original)
//! cannot make a logged-in admin's browser change anything: the attacks
//! are performed with an admin's cookie and refused, changing nothing.

use crate::common;

use common::{assert_err, data, header, Api, NO_PERMISSION, OK};
use common::{root_id, TestApp};
use serde_json::{json, Value};

const PW: &str = "a long family password";

/// What a stored-XSS page would run: mint an admin token with the viewer's
/// cookie.
const EVIL_HTML: &[u8] = b"<!doctype html><script>fetch('/api/v1/tokens',{method:'POST',\
    body:new URLSearchParams({type:'admin'})})</script>";
const EVIL_SVG: &[u8] = b"<svg xmlns='http://www.w3.org/2000/svg'><script>\
    fetch('/api/v1/users/type?user=bob&type=admin',{method:'POST'})</script></svg>";

/// Alice's server with HTML, SVG and text files in her library beside the
/// photos, and a claimed admin `root`: (server, alice, root's cookie
/// client, root's access-key client).
async fn server() -> (TestApp, Api, Api, Api) {
    let (s, alice) = TestApp::start(|cfg| {
        let lib = &cfg.libraries[0].path;
        common::write_file(&lib.join("page.html"), EVIL_HTML);
        common::write_file(&lib.join("drawing.svg"), EVIL_SVG);
        common::write_file(&lib.join("notes.txt"), b"plain text");
    })
    .await;
    let v = Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": "init", "userName": "root", "password": PW}),
        )
        .await;
    assert_eq!(v["code"], OK, "{v}");
    let key = Api::with_bearer(&s.base, data(&v)["accessKey"].as_str().unwrap());
    let cookie = Api::new(&s.base);
    let l = cookie
        .get_json("/login.icc", json!({"userName": "root", "password": PW}))
        .await;
    assert_eq!(l["code"], OK, "{l}");
    // The key's first use is recorded once per run: use it before any
    // "nothing changed" snapshot.
    assert_eq!(key.get_json("/api/v1/account", json!({})).await["code"], OK);
    (s, alice, cookie, key)
}

/// Every row of the tables an admin's browser could be made to change: the
/// account tables and the library ones.
async fn snapshot(s: &TestApp) -> String {
    format!("{}{}", s.accounts_snapshot().await, s.snapshot().await)
}

async fn json_reply(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[track_caller]
fn assert_refused(v: &Value, what: &str) {
    assert_err(v, NO_PERMISSION);
    let msg = v["msg"].as_str().unwrap();
    assert!(msg.contains("cross-site request refused"), "{what}: {msg}");
}

// ------------------------------------------------------------ stored XSS

/// The headers of one original, through `downFile` and a share link.
async fn original_headers(s: &TestApp, api: &Api, id: i64) -> Vec<(String, String, String)> {
    let v = api.get_json("/shareFileUrl.icc", json!({"id": id})).await;
    let key = data(&v).as_str().unwrap().to_string();
    let mut out = Vec::new();
    for r in [
        api.download(id, &[]).await,
        api.download(id, &[("Range", "bytes=0-")]).await,
        Api::new(&s.base)
            .get("/shareFile.icc", json!({"shareKey": key}))
            .await,
    ] {
        assert!(r.status().is_success(), "{}", r.status());
        out.push((
            header(&r, "content-disposition"),
            header(&r, "content-security-policy"),
            header(&r, "x-content-type-options"),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originals_never_run_as_pages_of_this_origin() {
    let (s, alice, _, _) = server().await;
    // An uploaded page, too.
    let v = alice
        .post_form(
            "/uploadFileInfo.icc",
            json!({"cid": root_id(&alice).await, "name": "upload.html", "size": EVIL_HTML.len(),
                "type": 16, "ext": "html"}),
        )
        .await;
    let up = data(&v)["id"].as_i64().unwrap();
    let boundary = "b0undary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"origin\"; filename=\"o\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(EVIL_HTML);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = alice
        .http
        .post(alice.url("/uploadFile.icc"))
        .query(&[("id", up), ("obp", 0)])
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(json_reply(r).await["code"], OK);

    let csp = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; \
               style-src 'unsafe-inline'";
    for (name, id, disposition, ctype) in [
        ("page.html", None, "attachment", "text/html"),
        ("drawing.svg", None, "attachment", "image/svg+xml"),
        ("notes.txt", None, "attachment", "text/plain"),
        ("upload.html", Some(up), "attachment", "text/html"),
        ("a.jpg", None, "inline", "image/jpeg"),
    ] {
        let id = match id {
            Some(id) => id,
            None => alice.file_id(name).await,
        };
        let r = alice.download(id, &[]).await;
        assert!(header(&r, "content-type").starts_with(ctype), "{name}");
        for (cd, got_csp, nosniff) in original_headers(&s, &alice, id).await {
            assert_eq!(
                cd,
                format!("{disposition}; filename=\"{name}\"; filename*=UTF-8''{name}"),
                "{name}"
            );
            assert_eq!(got_csp, csp, "{name}");
            assert_eq!(nosniff, "nosniff", "{name}");
        }
    }
    // HEAD and 304 carry them as well.
    let id = alice.file_id("page.html").await;
    let h = alice
        .http
        .head(alice.url("/downFile.icc"))
        .query(&[("id", id)])
        .send()
        .await
        .unwrap();
    assert!(header(&h, "content-disposition").starts_with("attachment;"));
    let etag = header(&h, "etag");
    let r = alice.download(id, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status(), 304);
    assert!(header(&r, "content-security-policy").starts_with("sandbox;"));
    // Every reply, JSON and thumbnails included, refuses sniffing and
    // framing.
    let r = alice.get("/files.icc", json!({"pageIndex": 0})).await;
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header(&r, "x-frame-options"), "DENY");
}

// ------------------------------------------------------------------ CSRF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_http_only_and_same_site_strict() {
    let (s, ..) = server().await;
    let r = Api::new(&s.base)
        .get("/login.icc", json!({"userName": "root", "password": PW}))
        .await;
    let c = header(&r, "set-cookie");
    assert!(c.starts_with("session="), "{c}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(c.split("; ").any(|a| a == attr), "{attr} in {c}");
    }
}

/// The review's two attacks, with an admin's cookie: a form POST from a
/// foreign page minting an admin token, and a `text/plain` POST (no
/// preflight) promoting a user through the query string. Then the same
/// from a sandboxed page (`Origin: null`), from another port of this host,
/// with only a `Referer`, and with `Sec-Fetch-Site`; and the state-changing
/// GETs from a link on a foreign page. All refused, nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_with_an_admin_cookie_are_refused_and_change_nothing() {
    let (s, alice, admin, _) = server().await;
    let other_port = format!("http://{}:1", s.addr().ip());
    let photo = alice.file_id("a.jpg").await;
    let before = snapshot(&s).await;
    let attacks: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "foreign page",
            vec![("Origin", "http://evil.example".into())],
        ),
        ("sandboxed page", vec![("Origin", "null".into())]),
        ("another port", vec![("Origin", other_port.clone())]),
        (
            "referer only",
            vec![("Referer", "http://evil.example/x.html".into())],
        ),
        (
            "fetch metadata",
            vec![("Sec-Fetch-Site", "same-site".into())],
        ),
    ];
    for (what, headers) in &attacks {
        // 1. Form POST minting an admin token.
        let mut rq = admin
            .http
            .post(admin.url("/api/v1/tokens"))
            .form(&[("type", "admin"), ("libraries", "lib")]);
        for (k, v) in headers {
            rq = rq.header(*k, v);
        }
        assert_refused(&json_reply(rq.send().await.unwrap()).await, what);
        // 2. text/plain POST promoting bob through the query string.
        let mut rq = admin
            .http
            .post(admin.url("/api/v1/users/type"))
            .query(&[("user", "bob"), ("type", "admin")])
            .header("content-type", "text/plain")
            .body("x");
        for (k, v) in headers {
            rq = rq.header(*k, v);
        }
        assert_refused(&json_reply(rq.send().await.unwrap()).await, what);
    }
    // State-changing GETs from a link or image on a foreign page.
    for (path, params) in [
        ("/shareFileUrl.icc", json!({"id": photo})),
        ("/login.icc", json!({"userName": "root", "password": PW})),
    ] {
        let r = alice
            .http
            .get(alice.url(path))
            .query(&params)
            .header("Referer", "http://evil.example/")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "set-cookie"), "", "{path}");
        assert_refused(&json_reply(r).await, path);
    }
    assert_eq!(snapshot(&s).await, before, "nothing changed");
}

/// The guard refuses only cross-site requests: this server's own pages
/// (matching `Origin`), the app (no `Origin`) and access keys (even from a
/// foreign page) go through — so the refusals above are the guard's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_app_and_access_key_requests_still_work() {
    let (s, alice, admin, key) = server().await;
    let before = snapshot(&s).await;
    let tokens = |api: Api, origin: Option<String>| async move {
        let mut rq = api
            .http
            .post(api.url("/api/v1/tokens"))
            .form(&[("type", "viewer"), ("libraries", "lib")]);
        if let Some(o) = origin {
            rq = rq.header("Origin", o);
        }
        json_reply(rq.send().await.unwrap()).await
    };
    assert_eq!(
        tokens(admin.clone(), Some(s.base.clone())).await["code"],
        OK
    );
    assert_eq!(tokens(admin.clone(), None).await["code"], OK);
    let v = tokens(key.clone(), Some("http://evil.example".into())).await;
    assert_eq!(v["code"], OK, "{v}");
    let r = alice
        .http
        .get(alice.url("/shareFileUrl.icc"))
        .query(&[("id", alice.file_id("a.jpg").await)])
        .header("Referer", format!("{}/", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(json_reply(r).await["code"], OK);
    assert_ne!(snapshot(&s).await, before);
}
