//! Sessions (spec §4, §6.1, §6.2): login and its UserInfo, the cookie,
//! bad logins, case-insensitive names, the login requirement of every
//! endpoint, logout, the online limit, the idle timeout, and the three ways
//! to send parameters.

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Logs `name` in with a client that keeps no cookies; returns the session
/// token from `Set-Cookie`, the whole header and the body.
async fn raw_login(app: &TestApp, name: &str, password: &str) -> (String, String, Value) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("{}/login.icc", app.base))
        .query(&[("userName", name), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = header(&r, "set-cookie");
    let body: Value = r.json().await.unwrap();
    let token = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.trim().strip_prefix("session="))
        .unwrap_or("")
        .to_string();
    (token, cookie, body)
}

async fn two_users() -> TestApp {
    TestApp::builder()
        .user("alice")
        .user("bob")
        .library("photos", &["alice", "bob"])
        .file("photos/a.jpg", &jpeg(40, 30, 1, None))
        .spawn()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_returns_user_info_and_an_http_only_cookie() {
    let app = two_users().await;
    let bob_id = app.user_id("bob").await;
    let before = now_secs();
    let (token, cookie, body) = raw_login(&app, "bob", PASSWORD).await;

    let u = data(&body);
    assert_eq!(u["id"], bob_id);
    assert_eq!(u["name"], "bob");
    assert!(u["createTime"].as_i64().unwrap() >= before - 60, "{u}");
    assert!(u["lastModifyTime"].is_i64(), "{u}");
    // First login ever: there is no previous login to report.
    assert!(u["lastLoginDate"].is_null(), "{u}");
    let text = body.to_string().to_lowercase();
    for secret in ["password", "hash", "argon", PASSWORD] {
        assert!(!text.contains(secret), "UserInfo leaks {secret:?}: {body}");
    }

    let attrs: Vec<String> = cookie.split(';').map(|a| a.trim().to_string()).collect();
    assert!(attrs.iter().any(|a| a == "HttpOnly"), "{cookie}");
    assert!(attrs.iter().any(|a| a == "Path=/"), "{cookie}");
    // Unguessable: at least 128 bits of hex, not the user id.
    assert!(token.len() >= 32, "{cookie}");
    assert!(token.chars().all(|c| c.is_ascii_alphanumeric()), "{cookie}");
    assert_ne!(token, bob_id.to_string());
    let (token2, _, _) = raw_login(&app, "bob", PASSWORD).await;
    assert_ne!(token, token2, "each login gets a fresh session");

    // The session works.
    let api = Api::with_session_cookie(&app.base, &token);
    let v = api.get_json("/helpInfo.icc", json!({"type": 0})).await;
    assert_eq!(v["code"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_login_date_is_the_previous_login() {
    let app = two_users().await;
    let bob = app.user_id("bob").await;
    let stored = |app: &TestApp| {
        let db = app.db().clone();
        async move {
            db.read_async(move |c| {
                Ok(isync::db::users::by_id(c, isync::model::UserId(bob))?
                    .unwrap()
                    .last_login)
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(stored(&app).await, None);
    let (_, _, first) = raw_login(&app, "bob", PASSWORD).await;
    assert!(data(&first).get("lastLoginDate").is_none());
    let after_first = stored(&app).await.expect("login time recorded");
    assert!((after_first - now_secs()).abs() <= 5);

    // Make the stored value recognisable, then log in again.
    let db = app.db().clone();
    db.write_async(move |tx| {
        isync::db::users::set_last_login(tx, isync::model::UserId(bob), 1_234_567_890)
    })
    .await
    .unwrap();
    let (_, _, second) = raw_login(&app, "bob", PASSWORD).await;
    assert_eq!(data(&second)["lastLoginDate"], 1_234_567_890);
    assert!(stored(&app).await.unwrap() >= after_first, "updated to now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_the_same_error() {
    let app = two_users().await;
    let before = app.db_snapshot().await;
    let api = app.anon();
    for (user, pw) in [("alice", "wrong"), ("nobody", PASSWORD), ("alice", "")] {
        let v = api
            .get_json("/login.icc", json!({"userName": user, "password": pw}))
            .await;
        assert_err(&v, BAD_LOGIN);
        assert!(v["data"].is_null(), "{v}");
    }
    assert_eq!(
        before,
        app.db_snapshot().await,
        "failed logins change nothing"
    );
    // And no session came of it.
    let v = api.get_json("/catalogs.icc", json!({"pids": "-1"})).await;
    assert_err(&v, NEED_LOGIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_login_params_are_bad_param() {
    let app = two_users().await;
    let api = app.anon();
    for params in [
        json!({}),
        json!({"userName": "alice"}),
        json!({"password": PASSWORD}),
    ] {
        let v = api.get_json("/login.icc", params.clone()).await;
        assert_err(&v, BAD_PARAM);
        let v = api.post_form("/login.icc", params).await;
        assert_err(&v, BAD_PARAM);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_match_case_insensitively() {
    let app = two_users().await;
    for name in ["ALICE", "Alice", "aLiCe"] {
        let v = app
            .anon()
            .get_json(
                "/login.icc",
                json!({"userName": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(data(&v)["name"], "alice", "the name as stored");
    }
    // The password is not case-folded.
    let v = app
        .anon()
        .get_json(
            "/login.icc",
            json!({"userName": "alice", "password": PASSWORD.to_uppercase()}),
        )
        .await;
    assert_err(&v, BAD_LOGIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_needs_a_session_checked_before_params() {
    let app = two_users().await;
    let file = app.api.file_id("a.jpg").await;
    let anon = app.anon();
    let forged = Api::with_session_cookie(&app.base, &"0".repeat(32));
    for api in [&anon, &forged] {
        // Without params, with valid params and with invalid ones: always −10001.
        for params in [
            json!({}),
            json!({"type": 0, "pids": "-1", "pageIndex": 0, "id": file}),
            json!({"type": 9, "pids": "x", "pageIndex": -1, "id": "y"}),
        ] {
            for path in ["/helpInfo.icc", "/catalogs.icc", "/files.icc"] {
                let v = api.get_json(path, params.clone()).await;
                assert_err(&v, NEED_LOGIN);
            }
            let v = api.post_form("/updateHelpInfo.icc", params.clone()).await;
            assert_err(&v, NEED_LOGIN);
            let r = api.get("/downFile.icc", params.clone()).await;
            assert_binary_err_status(r, 403, NEED_LOGIN).await;
            let r = api.get("/downFile.icc.jpg", params.clone()).await;
            assert_binary_err_status(r, 403, NEED_LOGIN).await;
        }
        // A body that is not a JSON object is a parameter problem: still −10001.
        let r = api
            .send_raw(
                reqwest::Method::POST,
                "/updateHelpInfo.icc",
                "application/json",
                "[1,2]",
            )
            .await;
        let v: Value = r.json().await.unwrap();
        assert_err(&v, NEED_LOGIN);
    }
    // logout needs no session.
    let v = anon.post_form("/logout.icc", json!({})).await;
    assert_eq!(v["code"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let app = two_users().await;
    let (token, _, _) = raw_login(&app, "alice", PASSWORD).await;
    let (other, _, _) = raw_login(&app, "bob", PASSWORD).await;
    let api = Api::with_session_cookie(&app.base, &token);
    assert_eq!(
        api.get_json("/catalogs.icc", json!({"pids": "-1"})).await["code"],
        0
    );

    let r = api.http.post(api.url("/logout.icc")).send().await.unwrap();
    let cookie = header(&r, "set-cookie");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 0, "{v}");
    assert!(cookie.starts_with("session="), "{cookie}");
    let clears =
        cookie.contains("Max-Age=0") || cookie.to_lowercase().contains("expires=thu, 01 jan 1970");
    assert!(clears, "logout must clear the cookie: {cookie}");

    // The server forgot the session even if a client keeps sending it.
    let v = api.get_json("/catalogs.icc", json!({"pids": "-1"})).await;
    assert_err(&v, NEED_LOGIN);
    // Another user's session is untouched.
    let v = Api::with_session_cookie(&app.base, &other)
        .get_json("/catalogs.icc", json!({"pids": "-1"}))
        .await;
    assert_eq!(v["code"], 0, "{v}");

    // The cookie-store client really drops the cookie on logout.
    let v = app.api.post_form("/logout.icc", json!({})).await;
    assert_eq!(v["code"], 0);
    let v = app
        .api
        .get_json("/catalogs.icc", json!({"pids": "-1"}))
        .await;
    assert_err(&v, NEED_LOGIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_recently_used_session_is_dropped_past_max_online() {
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("photos", &["alice"])
        .max_online(2)
        .login_as("bob")
        .spawn()
        .await;
    // `app.api` (bob) already holds one of the two places.
    let a = app.login("alice").await;
    let alive = |api: &Api| {
        let api = api.clone();
        async move { api.get_json("/helpInfo.icc", json!({"type": 0})).await["code"] == 0 }
    };
    // Touch bob: alice's session is now the least recently used.
    assert!(alive(&app.api).await);
    let c = app.login("alice").await;
    assert!(!alive(&a).await, "least recently used session dropped");
    assert!(alive(&app.api).await, "recently used session kept");
    assert!(alive(&c).await, "new session works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_use_slides_the_timeout() {
    let app = TestApp::builder()
        .user("alice")
        .library("photos", &["alice"])
        .idle_timeout_secs(10)
        .spawn()
        .await;
    let ping = || async { app.api.get_json("/helpInfo.icc", json!({"type": 0})).await };
    // The server's clock is moved by hand, so what is checked is the rule
    // and not how fast this machine answers (real time only adds to the
    // steps: 4 s of margin). Used every 6 s, the session outlives its 10 s
    // timeout (sliding)…
    let clock = &app.state().clock;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(6));
        assert_eq!(ping().await["code"], 0, "sliding timeout");
    }
    // …and once idle for its whole timeout, it is gone.
    clock.advance(Duration::from_secs(10));
    assert_err(&ping().await, NEED_LOGIN);
    // Logging in again works.
    let again = app.login("alice").await;
    assert_eq!(
        again.get_json("/helpInfo.icc", json!({"type": 0})).await["code"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_from_json_and_form_bodies() {
    let app = two_users().await;
    // Login by JSON body, by form body, and by a form body on GET.
    let api = app.anon();
    let v = api
        .post_json(
            "/login.icc",
            json!({"userName": "bob", "password": PASSWORD}),
        )
        .await;
    assert_eq!(data(&v)["name"], "bob");
    let v = app
        .anon()
        .post_form(
            "/login.icc",
            json!({"userName": "bob", "password": PASSWORD}),
        )
        .await;
    assert_eq!(data(&v)["name"], "bob");
    let r = app
        .anon()
        .send_raw(
            reqwest::Method::GET,
            "/login.icc",
            "application/x-www-form-urlencoded",
            format!("userName=bob&password={}", PASSWORD.replace(' ', "+")),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(data(&v)["name"], "bob");

    // Integer parameters as JSON numbers or strings, on GET too, and with
    // any `+json` content type.
    for (ctype, body) in [
        ("application/json", r#"{"pageIndex": 0, "maxPerPage": 10}"#),
        (
            "application/json",
            r#"{"pageIndex": "0", "maxPerPage": "10"}"#,
        ),
        ("application/vnd.isync+json", r#"{"pageIndex": 0}"#),
        ("application/json; charset=utf-8", r#"{"pageIndex": 0}"#),
    ] {
        let r = api
            .send_raw(reqwest::Method::GET, "/files.icc", ctype, body)
            .await;
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            data(&v)["list"].as_array().unwrap().len(),
            1,
            "{ctype} {body}: {v}"
        );
    }
    let r = api
        .send_raw(
            reqwest::Method::GET,
            "/catalogs.icc",
            "application/json",
            r#"{"pids": "-1"}"#,
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(data(&v)[0]["name"], "photos");
    // A form body on updateHelpInfo (POST) and a JSON one.
    let v = api
        .post_form("/updateHelpInfo.icc", json!({"type": 0, "helpInt": 5}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let v = api
        .post_json("/updateHelpInfo.icc", json!({"type": 0, "helpText": "hi"}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let v = api.get_json("/helpInfo.icc", json!({"type": 0})).await;
    assert_eq!(data(&v)["helpInt"], 5);
    assert_eq!(data(&v)["helpText"], "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_wins_over_form_body() {
    let app = two_users().await;
    let post = |query: String, form: String| {
        let api = app.anon();
        async move {
            let r = api
                .send_raw(
                    reqwest::Method::POST,
                    &format!("/login.icc?{query}"),
                    "application/x-www-form-urlencoded",
                    form,
                )
                .await;
            r.json::<Value>().await.unwrap()
        }
    };
    let pw = PASSWORD.replace(' ', "+");
    let v = post(
        format!("userName=bob&password={pw}"),
        "password=wrong&userName=nobody".into(),
    )
    .await;
    assert_eq!(data(&v)["name"], "bob", "query wins: {v}");
    let v = post(
        "userName=bob&password=wrong".into(),
        format!("password={pw}"),
    )
    .await;
    assert_err(&v, BAD_LOGIN);
    // Parameters missing from the query are taken from the body.
    let v = post("userName=bob".into(), format!("password={pw}")).await;
    assert_eq!(data(&v)["name"], "bob", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_sharing_and_upload_endpoints_need_a_session_too() {
    let app = two_users().await;
    let file = app.api.file_id("a.jpg").await;
    let root = id(&app.api.catalogs("-1").await[0]);
    let before = app.db_snapshot().await;
    let params = json!({
        "id": file, "ids": file.to_string(), "parentId": root, "cid": root, "name": "x",
        "size": 1, "type": 1, "ext": "jpg", "pageIndex": 0,
    });
    let anon = app.anon();
    for (method, path) in [
        (reqwest::Method::POST, "/createCatalog.icc"),
        (reqwest::Method::POST, "/updateCatalog.icc"),
        (reqwest::Method::POST, "/deleteCatalog.icc"),
        (reqwest::Method::POST, "/updateFile.icc"),
        (reqwest::Method::POST, "/deleteFiles.icc"),
        (reqwest::Method::GET, "/shareFileUrl.icc"),
        (reqwest::Method::POST, "/uploadFileInfo.icc"),
        (reqwest::Method::GET, "/uploadingInfo.icc"),
        (reqwest::Method::POST, "/uploadFile.icc"),
    ] {
        let r = anon
            .http
            .request(method.clone(), anon.url(path))
            .query(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_err(&v, NEED_LOGIN);
    }
    assert_eq!(
        before,
        app.db_snapshot().await,
        "an anonymous request changed data"
    );
    assert!(app.media().join("photos/a.jpg").is_file());
}

/// Security issue #12: one account logging in again and again (100 times
/// was enough) used to push every other user's session out of the global
/// LRU. Now a user past `max_per_user` gives up its own oldest session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_logging_in_again_and_again_logs_out_only_itself() {
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("photos", &["alice", "bob"])
        .max_online(10)
        .max_per_user(3)
        .spawn()
        .await;
    let alice = app.user_id("alice").await;
    let bob = app.user_id("bob").await;
    let alice_row = |app: &TestApp| {
        let db = app.db().clone();
        async move {
            db.read_async(move |c| {
                Ok(
                    isync::db::users::by_id(c, isync::model::UserId(alice))?.map(|u| {
                        (
                            u.name,
                            u.password_hash,
                            u.last_login,
                            u.last_modify,
                            u.disabled,
                        )
                    }),
                )
            })
            .await
            .unwrap()
        }
    };
    let before = alice_row(&app).await;
    let mut bobs = Vec::new();
    for _ in 0..25 {
        let (token, _, body) = raw_login(&app, "bob", PASSWORD).await;
        assert_eq!(body["code"], 0, "{body}");
        bobs.push(token);
    }
    let alive = |token: &String| {
        let api = Api::with_session_cookie(&app.base, token);
        async move { api.get_json("/helpInfo.icc", json!({"type": 0})).await["code"] == 0 }
    };
    assert_eq!(
        app.api.get_json("/helpInfo.icc", json!({"type": 0})).await["code"],
        0,
        "alice is still logged in"
    );
    let mut live = Vec::new();
    for t in &bobs {
        live.push(alive(t).await);
    }
    assert_eq!(
        live,
        [vec![false; 22], vec![true; 3]].concat(),
        "bob keeps his 3 newest"
    );
    let sessions = &app.state().sessions;
    assert_eq!(sessions.count_of(isync::model::UserId(bob)), 3);
    assert_eq!(sessions.count_of(isync::model::UserId(alice)), 1);
    assert_eq!(alice_row(&app).await, before, "alice's account unchanged");
}
