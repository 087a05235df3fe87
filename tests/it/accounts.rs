//! Accounts (issue 6): the one-time `init` token, registration tokens,
//! access keys and their revocation, login rate limiting, and the admin CLI
//! beside a running and a stopped server. Every role against every route
//! is `tests/roles.rs`.
//! Real server on 127.0.0.1, real SQLite, real binary for the CLI.

use crate::common;

use common::process::Launch;
use common::TestApp;
use common::{assert_err, data, Api, BAD_LOGIN, BAD_PARAM, NEED_LOGIN, NO_PERMISSION, OK};
use serde_json::{json, Value};

const PW: &str = "a long family password";
const TOO_MANY: i64 = -10012;

/// Claims the server with `init`; returns the admin's key client.
async fn claim(s: &TestApp) -> Api {
    let v = Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": "init", "userName": "root", "password": PW, "label": "laptop"}),
        )
        .await;
    assert_eq!(v["code"], OK, "{v}");
    assert_eq!(data(&v)["user"]["type"], "admin");
    let key = data(&v)["accessKey"].as_str().unwrap().to_string();
    assert!(key.starts_with("isync_"), "{key}");
    Api::with_bearer(&s.base, &key)
}

/// Creates an account of `kind` seeing library `lib` through a fresh token;
/// returns (key client, cookie client).
async fn account(s: &TestApp, admin: &Api, name: &str, kind: &str) -> (Api, Api) {
    let t = admin
        .post_form("/api/v1/tokens", json!({"type": kind, "libraries": "lib"}))
        .await;
    assert_eq!(t["code"], OK, "{t}");
    let token = data(&t)["token"].as_str().unwrap().to_string();
    let v = Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": token, "userName": name, "password": PW}),
        )
        .await;
    assert_eq!(v["code"], OK, "{v}");
    assert_eq!(data(&v)["user"]["type"], kind);
    let key = data(&v)["accessKey"].as_str().unwrap();
    let cookie = Api::new(&s.base);
    let l = cookie
        .get_json("/login.icc", json!({"userName": name, "password": PW}))
        .await;
    assert_eq!(l["code"], OK, "{l}");
    (Api::with_bearer(&s.base, key), cookie)
}

fn config_file(s: &TestApp) -> std::path::PathBuf {
    let p = s.dir.path().join("isync.toml");
    std::fs::write(&p, s.cfg.to_toml()).unwrap();
    p
}

fn isync(s: &TestApp, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let out = Launch::new()
        .config(&config_file(s))
        .args(args)
        .stdin(stdin.unwrap_or(""))
        .output();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_works_exactly_once_and_survives_no_restart() {
    let (mut s, _alice) = TestApp::start(|_| {}).await;
    let anon = Api::new(&s.base);
    let i = anon.get_json("/api/v1/info", json!({})).await;
    assert_eq!(data(&i)["needsAdmin"], true, "{i}");
    // The welcome page says so too.
    let page = anon.get("/", json!({})).await.text().await.unwrap();
    assert!(
        page.contains("<h1>isync</h1>") && page.contains("init"),
        "{page}"
    );

    let admin = claim(&s).await;
    let me = admin.get_json("/api/v1/account", json!({})).await;
    assert_eq!(data(&me)["name"], "root");
    assert!(data(&me)["perms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "accounts"));
    assert_eq!(data(&me)["libraries"], json!(["lib", "other"]));

    // Gone after one use, and not re-created by a restart.
    let again = json!({"token": "init", "userName": "mallory", "password": PW});
    assert_err(
        &anon.post_json("/api/v1/register", again.clone()).await,
        BAD_LOGIN,
    );
    s.restart().await;
    let anon = Api::new(&s.base);
    assert_err(&anon.post_json("/api/v1/register", again).await, BAD_LOGIN);
    let i = anon.get_json("/api/v1/info", json!({})).await;
    assert_eq!(data(&i)["needsAdmin"], false);
    // The admin logs in to the iSync API with the chosen password, too.
    let l = anon
        .get_json("/login.icc", json!({"userName": "root", "password": PW}))
        .await;
    assert_eq!(l["code"], OK, "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_single_use_and_expire() {
    let (s, _alice) = TestApp::start(|_| {}).await;
    let admin = claim(&s).await;
    let anon = Api::new(&s.base);
    let mk = |expires: &'static str| {
        let admin = admin.clone();
        async move {
            let v = admin
                .post_form(
                    "/api/v1/tokens",
                    json!({"type": "viewer", "libraries": "lib", "expires": expires, "note": "for gran"}),
                )
                .await;
            assert_eq!(v["code"], OK, "{v}");
            data(&v)["token"].as_str().unwrap().to_string()
        }
    };
    let token = mk("7d").await;
    assert_eq!(token.len(), 39, "128 bits in hex groups: {token}");
    // Stored only hashed: the token text is nowhere in the database file.
    let db_bytes = std::fs::read(s.cfg.db_path()).unwrap();
    let wal = std::fs::read(format!("{}-wal", s.cfg.db_path().display())).unwrap_or_default();
    let plain = token.replace('-', "");
    for hay in [&db_bytes, &wal] {
        assert!(!hay.windows(plain.len()).any(|w| w == plain.as_bytes()));
        assert!(!hay.windows(token.len()).any(|w| w == token.as_bytes()));
    }
    let listed = admin.get_json("/api/v1/tokens", json!({})).await;
    assert!(listed.to_string().contains("for gran") && !listed.to_string().contains(&token));

    // A taken name does not use the token up.
    let taken = anon
        .post_json(
            "/api/v1/register",
            json!({"token": token, "userName": "alice", "password": PW}),
        )
        .await;
    assert_err(&taken, BAD_PARAM);
    // Typed in upper case without dashes still works — once.
    let typed = token.replace('-', "").to_uppercase();
    let ok = anon
        .post_json(
            "/api/v1/register",
            json!({"token": typed, "userName": "gran", "password": PW}),
        )
        .await;
    assert_eq!(ok["code"], OK, "{ok}");
    assert_eq!(data(&ok)["user"]["libraries"], json!(["lib"]));
    let twice = anon
        .post_json(
            "/api/v1/register",
            json!({"token": token, "userName": "gran2", "password": PW}),
        )
        .await;
    assert_err(&twice, BAD_LOGIN);

    // Wrong and expired tokens.
    let wrong = anon
        .post_json(
            "/api/v1/register",
            json!({"token": "0000-1111-2222-3333-4444-5555-6666-7777", "userName": "x1", "password": PW}),
        )
        .await;
    assert_err(&wrong, BAD_LOGIN);
    let short = mk("1s").await;
    // Its second goes by on the server's clock (moved by hand).
    s.state().clock.advance(std::time::Duration::from_secs(2));
    let expired = anon
        .post_json(
            "/api/v1/register",
            json!({"token": short, "userName": "late", "password": PW}),
        )
        .await;
    assert_err(&expired, BAD_LOGIN);
    assert!(
        expired["msg"].as_str().unwrap().contains("expired"),
        "{expired}"
    );
    let users = admin.get_json("/api/v1/users", json!({})).await;
    let names: Vec<&str> = data(&users)
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"gran") && !names.contains(&"late") && !names.contains(&"gran2"));
    // Bad input: a weak password and an unknown type change nothing.
    let weak = anon
        .post_json(
            "/api/v1/register",
            json!({"token": mk("1d").await, "userName": "kid", "password": "short"}),
        )
        .await;
    assert_err(&weak, BAD_PARAM);
    assert_err(
        &admin
            .post_form("/api/v1/tokens", json!({"type": "superuser"}))
            .await,
        BAD_PARAM,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_authenticate_and_revocation_is_immediate() {
    let (s, _alice) = TestApp::start(|_| {}).await;
    let admin = claim(&s).await;
    let (viewer, viewer_cookie) = account(&s, &admin, "gran", "viewer").await;
    assert_eq!(viewer.all_files().await.len(), 2, "sees library lib");
    // A second device key, listed, then revoked by its owner.
    let k = viewer
        .post_form("/api/v1/keys", json!({"label": "tablet"}))
        .await;
    assert_eq!(k["code"], OK, "{k}");
    let tablet = Api::with_bearer(&s.base, data(&k)["accessKey"].as_str().unwrap());
    assert_eq!(tablet.all_files().await.len(), 2);
    let mine = viewer.get_json("/api/v1/keys", json!({})).await;
    assert_eq!(data(&mine).as_array().unwrap().len(), 2);
    let tablet_id = data(&k)["id"].as_i64().unwrap();
    // Another user cannot revoke it; its owner can.
    let (other, _) = account(&s, &admin, "kid", "uploader").await;
    assert_err(
        &other
            .post_form("/api/v1/keys/revoke", json!({"id": tablet_id}))
            .await,
        common::NOT_FOUND,
    );
    let r = viewer
        .post_form("/api/v1/keys/revoke", json!({"id": tablet_id}))
        .await;
    assert_eq!(r["code"], OK, "{r}");
    assert_err(
        &tablet.get_json("/files.icc", json!({"pageIndex": 0})).await,
        NEED_LOGIN,
    );
    assert_eq!(
        viewer.all_files().await.len(),
        2,
        "the other key still works"
    );

    // A wrong key is refused.
    let bogus = Api::with_bearer(&s.base, "isync_0123");
    assert_err(
        &bogus.get_json("/catalogs.icc", json!({"pids": "-1"})).await,
        NEED_LOGIN,
    );

    // Disabling the account ends its key and cookie sessions at once, and
    // its password login.
    let d = admin
        .post_form("/api/v1/users/disable", json!({"user": "gran"}))
        .await;
    assert_eq!(d["code"], OK, "{d}");
    assert_err(
        &viewer.get_json("/files.icc", json!({"pageIndex": 0})).await,
        NEED_LOGIN,
    );
    assert_err(
        &viewer_cookie
            .get_json("/files.icc", json!({"pageIndex": 0}))
            .await,
        NEED_LOGIN,
    );
    assert_err(
        &Api::new(&s.base)
            .get_json("/login.icc", json!({"userName": "gran", "password": PW}))
            .await,
        BAD_LOGIN,
    );
    // The last admin cannot be disabled or demoted.
    assert_err(
        &admin
            .post_form("/api/v1/users/disable", json!({"user": "root"}))
            .await,
        BAD_PARAM,
    );
    assert_err(
        &admin
            .post_form(
                "/api/v1/users/type",
                json!({"user": "root", "type": "viewer"}),
            )
            .await,
        BAD_PARAM,
    );
    assert_eq!(
        admin.get_json("/api/v1/users", json!({})).await["code"],
        OK,
        "still an admin"
    );
}

/// An uploader changes what it uploaded or created, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploader_owns_its_uploads_and_folders() {
    let (s, alice) = TestApp::start(|c| c.watch.enabled = false).await;
    let admin = claim(&s).await;
    let (up, _) = account(&s, &admin, "up", "uploader").await;
    let root = alice
        .all_catalogs()
        .await
        .iter()
        .find(|c| c["name"] == "lib")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let c = up
        .post_form(
            "/createCatalog.icc",
            json!({"parentId": root, "name": "mine"}),
        )
        .await;
    assert_eq!(c["code"], OK, "{c}");
    let cid = data(&c)["id"].as_i64().unwrap();
    let f = up
        .post_form(
            "/uploadFileInfo.icc",
            json!({"cid": cid, "name": "x.jpg", "size": 4, "type": 1, "ext": "jpg"}),
        )
        .await;
    assert_eq!(f["code"], OK, "{f}");
    let fid = data(&f)["id"].as_i64().unwrap();
    let u = up
        .post_form("/updateFile.icc", json!({"id": fid, "memo": "mine"}))
        .await;
    assert_eq!(u["code"], OK, "{u}");
    let u = up
        .post_form("/updateCatalog.icc", json!({"id": cid, "memo": "mine"}))
        .await;
    assert_eq!(u["code"], OK, "{u}");
    // Someone else's file in its folder makes the folder not all its own.
    let other = alice
        .post_form(
            "/uploadFileInfo.icc",
            json!({"cid": cid, "name": "y.jpg", "size": 4, "type": 1, "ext": "jpg"}),
        )
        .await;
    assert_eq!(other["code"], OK, "{other}");
    let before = s.snapshot().await;
    assert_err(
        &up.post_form("/deleteCatalog.icc", json!({"ids": cid.to_string()}))
            .await,
        NO_PERMISSION,
    );
    assert_eq!(s.snapshot().await, before);
    // A mixed deleteFiles (its own + someone else's) deletes nothing.
    let oid = data(&other)["id"].as_i64().unwrap();
    assert_err(
        &up.post_form("/deleteFiles.icc", json!({"ids": format!("{fid},{oid}")}))
            .await,
        NO_PERMISSION,
    );
    assert_eq!(s.snapshot().await, before);
    let d = up
        .post_form("/deleteFiles.icc", json!({"ids": fid.to_string()}))
        .await;
    assert_eq!(d["code"], OK, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_and_the_limit_ends() {
    let (s, _alice) = TestApp::start(|c| {
        c.login.max_failures = 3;
        c.login.window_secs = 2;
    })
    .await;
    let anon = Api::new(&s.base);
    let wrong = json!({"userName": "bob", "password": "not it"});
    for _ in 0..3 {
        assert_err(&anon.get_json("/login.icc", wrong.clone()).await, BAD_LOGIN);
    }
    // Now even the right password is refused from this address, with a
    // Retry-After, and no password check is spent on it.
    let right = json!({"userName": "bob", "password": common::PASSWORD});
    let r = anon.get("/login.icc", right.clone()).await;
    let retry: u64 = common::header(&r, "retry-after").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_err(&v, TOO_MANY);
    // Registration guesses count the same way.
    let reg = anon
        .post_json(
            "/api/v1/register",
            json!({"token": "guess", "userName": "z", "password": PW}),
        )
        .await;
    assert_err(&reg, TOO_MANY);
    // The window passes (on the server's clock, moved by hand).
    s.state().clock.advance(std::time::Duration::from_secs(2));
    let ok = anon.get_json("/login.icc", right).await;
    assert_eq!(ok["code"], OK, "the limit ended by itself: {ok}");
}

/// README "Logins": the name's limit spares an address where the user
/// logged in within the last 30 days (a known device), and only for 30
/// days. Three loopback addresses stand for bob's phone, the guest Wi-Fi
/// and a stranger; the server's clock is moved by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_device_gets_past_the_name_limit_for_30_days() {
    use isync::ratelimit::TRUST_FOR;
    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
    let (s, _alice) = TestApp::start(|c| {
        c.login.max_failures = 3;
        c.login.window_secs = 60;
    })
    .await;
    let from = |ip: &str| Api::from_address(&s.base, ip.parse().unwrap());
    let (phone, guest, stranger) = (from("127.0.0.1"), from("127.0.0.2"), from("127.0.0.3"));
    let right = json!({"userName": "bob", "password": common::PASSWORD});
    let wrong = json!({"userName": "bob", "password": "not it"});
    let login = |api: &Api| {
        let (api, right) = (api.clone(), right.clone());
        async move { api.get_json("/login.icc", right).await }
    };
    // Guesses at bob's password from the guest Wi-Fi, up to the limit:
    // from then on his name is refused everywhere but on a known device.
    let guess = || async {
        for _ in 0..3 {
            assert_err(
                &guest.get_json("/login.icc", wrong.clone()).await,
                BAD_LOGIN,
            );
        }
    };
    let clock = &s.state().clock;

    // bob logs in on his phone: a known device.
    assert_eq!(login(&phone).await["code"], OK);
    // 30 days less an hour later, the guessing starts.
    clock.advance(TRUST_FOR - HOUR);
    guess().await;
    assert_err(&login(&stranger).await, TOO_MANY);
    let v = login(&phone).await;
    assert_eq!(v["code"], OK, "the known device gets in: {v}");
    // That login renewed the phone's trust for 30 days; an hour past them
    // it is a stranger too when the guessing starts again.
    clock.advance(TRUST_FOR + HOUR);
    guess().await;
    assert_err(&login(&phone).await, TOO_MANY);
    assert_err(&login(&stranger).await, TOO_MANY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_talks_to_the_running_server() {
    let (s, _alice) = TestApp::start(|_| {}).await;
    // No admin yet: `admin init` on the console makes one (password on
    // stdin) and retires the `init` token.
    let (code, out, err) = isync(&s, &["admin", "init", "boss"], Some(&format!("{PW}\n")));
    assert_eq!(code, 0, "{out}{err}");
    let key = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("isync_"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let boss = Api::with_bearer(&s.base, &key);
    assert_eq!(boss.get_json("/api/v1/users", json!({})).await["code"], OK);
    let (code, _, err) = isync(&s, &["admin", "init", "boss2"], Some(&format!("{PW}\n")));
    assert_eq!(code, 2, "a second init is refused: {err}");
    assert!(err.contains("already has an admin"), "{err}");
    assert_err(
        &Api::new(&s.base)
            .post_json(
                "/api/v1/register",
                json!({"token": "init", "userName": "m", "password": PW}),
            )
            .await,
        BAD_LOGIN,
    );

    // A token made on the console is redeemed over HTTP.
    let (code, out, err) = isync(
        &s,
        &[
            "admin",
            "token",
            "create",
            "--type",
            "uploader",
            "--library",
            "lib",
            "--expires",
            "2d",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let token = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 39 && l.matches('-').count() == 7)
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let v = Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": token, "userName": "kid", "password": PW, "label": "phone"}),
        )
        .await;
    assert_eq!(v["code"], OK, "{v}");
    let kid = Api::with_bearer(&s.base, data(&v)["accessKey"].as_str().unwrap());
    assert_eq!(kid.all_files().await.len(), 2);
    let key_id = data(&v)["keyId"].as_i64().unwrap();

    // Lists, a type change and a key revocation through the server.
    let (code, out, _) = isync(&s, &["admin", "user", "list"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("kid\tuploader") && out.contains("boss\tadmin"),
        "{out}"
    );
    let (code, out, err) = isync(&s, &["admin", "user", "set-type", "kid", "viewer"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert_err(
        &kid.post_form("/createCatalog.icc", json!({"parentId": 1, "name": "nope"}))
            .await,
        NO_PERMISSION,
    );
    let (code, out, err) = isync(&s, &["admin", "key", "revoke", &key_id.to_string()], None);
    assert_eq!(code, 0, "{out}{err}");
    assert_err(
        &kid.get_json("/files.icc", json!({"pageIndex": 0})).await,
        NEED_LOGIN,
    );
    let (code, _, err) = isync(&s, &["admin", "user", "set-type", "nobody", "viewer"], None);
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = isync(&s, &["admin", "library", "list"], None);
    assert_eq!(code, 0);
    assert!(out.contains("alice (config)"), "{out}");
}

// ---------------------------------------------------------------------------
// Security issue #12: attacks on accounts, each performed over 127.0.0.1 and
// shown to fail without changing anything.

async fn needs_admin(s: &TestApp) -> bool {
    let i = Api::new(&s.base).get_json("/api/v1/info", json!({})).await;
    data(&i)["needsAdmin"].as_bool().unwrap()
}

/// Someone on the LAN tries the one-time token `init` to become an admin.
async fn redeem_init(s: &TestApp) -> Value {
    Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": "init", "userName": "mallory", "password": PW}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_is_void_once_set_type_makes_an_admin() {
    let (mut s, _alice) = TestApp::start(|_| {}).await;
    assert!(needs_admin(&s).await);
    let (code, out, err) = isync(&s, &["admin", "user", "set-type", "alice", "admin"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!needs_admin(&s).await);
    let before = s.accounts_snapshot().await;
    assert_err(&redeem_init(&s).await, BAD_LOGIN);
    assert_eq!(
        s.accounts_snapshot().await,
        before,
        "init changed something"
    );

    // An `init` row left behind (by an older isync, say) is void too: the
    // redeeming transaction checks for an admin, and retires it.
    s.db()
        .write_async(|tx| {
            isync::db::accounts::insert_token(
                tx,
                &isync::accounts::digest("init"),
                isync::accounts::BUILTIN_ADMIN,
                &[],
                isync::db::now(),
                None,
                None,
                Some("first admin"),
            )
            .map(|_| ())
        })
        .await
        .unwrap();
    let v = redeem_init(&s).await;
    assert_err(&v, BAD_LOGIN);
    assert!(
        v["msg"].as_str().unwrap().contains("registration token"),
        "{v}"
    );
    assert_eq!(
        s.accounts_snapshot().await,
        before,
        "the stale init is gone"
    );

    // A restart does not offer it again (the restart logs alice in, which
    // moves her last login: compare from there).
    s.restart().await;
    assert!(!needs_admin(&s).await);
    let before = s.accounts_snapshot().await;
    assert_err(&redeem_init(&s).await, BAD_LOGIN);
    assert_eq!(s.accounts_snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_is_void_once_user_add_makes_an_admin() {
    let (s, _alice) = TestApp::start(|_| {}).await;
    assert!(needs_admin(&s).await);
    // `isync user add` beside the running server goes through it.
    let (code, out, err) = isync(
        &s,
        &["user", "add", "boss", "--password-stdin", "--type", "admin"],
        Some(&format!("{PW}\n")),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("created user boss") && out.contains("admin"),
        "{out}"
    );
    assert!(!needs_admin(&s).await);
    let before = s.accounts_snapshot().await;
    assert_err(&redeem_init(&s).await, BAD_LOGIN);
    assert_eq!(s.accounts_snapshot().await, before);
    // The new admin is an admin.
    let boss = Api::new(&s.base);
    let l = boss
        .get_json("/login.icc", json!({"userName": "boss", "password": PW}))
        .await;
    assert_eq!(l["code"], OK, "{l}");
    assert_eq!(boss.get_json("/api/v1/users", json!({})).await["code"], OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_change_may_leave_the_server_without_an_admin() {
    let (mut s, _alice) = TestApp::start(|_| {}).await;
    let root = claim(&s).await;
    // The only admin gets a type of its own.
    let all = "browse share upload moderate accounts libraries backup shares";
    let v = root
        .post_form("/api/v1/types", json!({"name": "chief", "perms": all}))
        .await;
    assert_eq!(v["code"], OK, "{v}");
    let v = root
        .post_form(
            "/api/v1/users/type",
            json!({"user": "root", "type": "chief"}),
        )
        .await;
    assert_eq!(v["code"], OK, "{v}");
    let before = s.accounts_snapshot().await;

    // Stripping `accounts` from that type would leave no admin: refused,
    // over the API and on the console.
    let v = root
        .post_form(
            "/api/v1/types",
            json!({"name": "chief", "perms": "browse share upload moderate libraries"}),
        )
        .await;
    assert_err(&v, BAD_PARAM);
    assert!(
        v["msg"].as_str().unwrap().contains("no enabled admin"),
        "{v}"
    );
    let (code, _, err) = isync(&s, &["admin", "type", "set", "chief", "browse"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no enabled admin"), "{err}");
    // So are demoting and disabling it, both ways.
    for (path, params) in [
        (
            "/api/v1/users/type",
            json!({"user": "root", "type": "viewer"}),
        ),
        ("/api/v1/users/disable", json!({"user": "root"})),
    ] {
        assert_err(&root.post_form(path, params).await, BAD_PARAM);
    }
    for args in [
        &["admin", "user", "disable", "root"][..],
        &["admin", "user", "set-type", "root", "editor"][..],
    ] {
        let (code, _, err) = isync(&s, args, None);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    assert_eq!(
        s.accounts_snapshot().await,
        before,
        "a refusal changed something"
    );

    // And a restart finds an admin: `init` is not offered again. (The
    // restart logs alice in, which moves her last login: compare from
    // there.)
    s.restart().await;
    assert!(!needs_admin(&s).await);
    let before = s.accounts_snapshot().await;
    assert_err(&redeem_init(&s).await, BAD_LOGIN);
    assert_eq!(s.accounts_snapshot().await, before);
}

/// Fires `n` logins of `user` at once, each with `password(i)`; the codes.
async fn login_flood(
    s: &TestApp,
    n: usize,
    user: &'static str,
    password: fn(usize) -> String,
) -> Vec<(i64, String)> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/login.icc", s.base);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let r = http
                    .get(url)
                    .query(&[("userName", user.to_string()), ("password", password(i))])
                    .send()
                    .await
                    .unwrap();
                let retry = common::header(&r, "retry-after");
                let v: Value = r.json().await.unwrap();
                (v["code"].as_i64().unwrap(), retry)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_wrong_logins_cannot_outrun_the_limit() {
    // 200 connections from 127.0.0.1 at once: over the per-address cap
    // (64), which would reset some before they are counted; this test is
    // about the limiter.
    let (s, _alice) = TestApp::start(|c| c.http.max_connections_per_address = 1000).await;
    let max = s.cfg.login.max_failures as u64;
    let hashes = s.state().hasher.clone();
    let (h0, before) = (hashes.runs(), s.accounts_snapshot().await);
    let codes = login_flood(&s, 200, "bob", |i| format!("guess number {i}")).await;
    let bad = codes.iter().filter(|(c, _)| *c == BAD_LOGIN).count() as u64;
    let limited = codes.iter().filter(|(c, _)| *c == TOO_MANY).count() as u64;
    assert_eq!(bad + limited, 200, "{codes:?}");
    assert!(bad <= max, "{bad} guesses were checked (limit {max})");
    let spent = hashes.runs() - h0;
    assert!(
        spent <= max,
        "{spent} password hashes for 200 guesses (limit {max})"
    );
    assert!(codes
        .iter()
        .filter(|(c, _)| *c == TOO_MANY)
        .all(|(_, r)| r.parse::<u64>().is_ok_and(|s| s >= 1)));
    // The right password is refused as well now, and costs no hash.
    let right = Api::new(&s.base)
        .get_json(
            "/login.icc",
            json!({"userName": "bob", "password": common::PASSWORD}),
        )
        .await;
    assert_err(&right, TOO_MANY);
    assert_eq!(hashes.runs() - h0, spent);
    assert_eq!(s.accounts_snapshot().await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_registrations_cannot_outrun_the_limit() {
    // 60 connections at once from one address, near the per-address cap.
    let (s, _alice) = TestApp::start(|c| c.http.max_connections_per_address = 1000).await;
    let admin = claim(&s).await;
    let t = admin
        .post_form(
            "/api/v1/tokens",
            json!({"type": "viewer", "libraries": "lib"}),
        )
        .await;
    let token = data(&t)["token"].as_str().unwrap().to_string();
    let hashes = s.state().hasher.clone();
    let h0 = hashes.runs();
    // 60 registrations race for one valid token: without counting before
    // the hash, each would cost an Argon2 run.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (http, url, token) = (
                http.clone(),
                format!("{}/api/v1/register", s.base),
                token.clone(),
            );
            tokio::spawn(async move {
                let v: Value = http
                    .post(url)
                    .json(&json!({"token": token, "userName": format!("kid{i}"), "password": PW}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["code"].as_i64().unwrap()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == OK).count(), 1, "{codes:?}");
    assert!(
        codes.iter().all(|c| [OK, BAD_LOGIN, TOO_MANY].contains(c)),
        "{codes:?}"
    );
    let spent = hashes.runs() - h0;
    let max = u64::from(s.cfg.login.max_failures);
    assert!(
        spent <= max,
        "{spent} hashes for 60 registrations (limit {max})"
    );
    let users = admin.get_json("/api/v1/users", json!({})).await;
    let kids = data(&users)
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["name"].as_str().unwrap().starts_with("kid"))
        .count();
    assert_eq!(kids, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_wait_in_a_bounded_queue() {
    let (s, _alice) = TestApp::start(|c| {
        c.login.max_failures = 1000;
        c.login.max_pending_checks = 1;
        // 80 connections from 127.0.0.1 at once: over the per-address cap
        // (64), which is not what this test is about.
        c.http.max_connections_per_address = 1000;
    })
    .await;
    let hashes = s.state().hasher.clone();
    let (h0, before) = (hashes.runs(), s.accounts_snapshot().await);
    let codes = login_flood(&s, 80, "nobody", |i| format!("guess number {i}")).await;
    let checked = codes.iter().filter(|(c, _)| *c == BAD_LOGIN).count() as u64;
    let busy: Vec<&(i64, String)> = codes.iter().filter(|(c, _)| *c == TOO_MANY).collect();
    assert_eq!(checked + busy.len() as u64, 80, "{codes:?}");
    assert!(
        !busy.is_empty(),
        "80 checks at once never found the queue of 1 full"
    );
    assert!(busy.iter().all(|(_, r)| r == "1"), "{busy:?}");
    // Exactly the checks let in were hashed; the refused ones cost nothing.
    assert_eq!(hashes.runs() - h0, checked);
    assert_eq!(s.accounts_snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_password_reset_ends_everything_the_old_password_gave() {
    let (s, alice) = TestApp::start(|_| {}).await;
    let admin = claim(&s).await;
    let (key, cookie) = account(&s, &admin, "gran", "uploader").await;
    let a = alice.file_id("a.jpg").await;
    let link = data(&cookie.get_json("/shareFileUrl.icc", json!({"id": a})).await)
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(open_link(&s, &link).await.status(), 200);
    // Someone who learnt gran's password holds a session, a key and a link;
    // the admin resets the password on the console.
    let new_pw = "a brand new family password";
    let (code, out, err) = isync(
        &s,
        &["user", "add", "gran", "--password-stdin"],
        Some(&format!("{new_pw}\n")),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sessions ended") && out.contains("1 access keys"),
        "{out}"
    );
    for api in [&key, &cookie] {
        assert_err(
            &api.get_json("/files.icc", json!({"pageIndex": 0})).await,
            NEED_LOGIN,
        );
    }
    // The link died with the old password.
    common::assert_binary_err_status(open_link(&s, &link).await, 400, BAD_PARAM).await;
    let anon = Api::new(&s.base);
    let login =
        |pw: &'static str| anon.get_json("/login.icc", json!({"userName": "gran", "password": pw}));
    assert_err(&login(PW).await, BAD_LOGIN);
    assert_eq!(login(new_pw).await["code"], OK);
    // The type stayed (no --type given).
    let (_, out, _) = isync(&s, &["admin", "user", "list"], None);
    assert!(out.contains("gran\tuploader"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabling_an_account_again_revives_no_session_key_or_link() {
    let (s, alice) = TestApp::start(|_| {}).await;
    let admin = claim(&s).await;
    let (key, cookie) = account(&s, &admin, "gran", "viewer").await;
    let a = alice.file_id("a.jpg").await;
    let link = data(&key.get_json("/shareFileUrl.icc", json!({"id": a})).await)
        .as_str()
        .unwrap()
        .to_string();
    // Disabled and enabled again while its session and key sat unused.
    for path in ["/api/v1/users/disable", "/api/v1/users/enable"] {
        let v = admin.post_form(path, json!({"user": "gran"})).await;
        assert_eq!(v["code"], OK, "{v}");
    }
    let before = s.accounts_snapshot().await;
    for api in [&key, &cookie] {
        assert_err(
            &api.get_json("/files.icc", json!({"pageIndex": 0})).await,
            NEED_LOGIN,
        );
    }
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/shareFile.icc", s.base))
        .query(&[("shareKey", &link)])
        .send()
        .await
        .unwrap();
    common::assert_binary_err_status(r, 400, BAD_PARAM).await;
    assert_eq!(s.accounts_snapshot().await, before);
    let keys = admin
        .get_json("/api/v1/keys", json!({"user": "gran"}))
        .await;
    assert_eq!(data(&keys), &json!([]), "disabling revoked the keys");
    // Logging in with the password works again.
    let l = Api::new(&s.base)
        .get_json("/login.icc", json!({"userName": "gran", "password": PW}))
        .await;
    assert_eq!(l["code"], OK, "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_manager_grants_only_what_it_holds() {
    let (s, _alice) = TestApp::start(|c| c.watch.enabled = false).await;
    let root = claim(&s).await;
    // A family manager: may manage accounts and grants, sees library `lib`
    // only, and holds no `backup` or `shares`.
    let v = root
        .post_form(
            "/api/v1/types",
            json!({"name": "manager", "perms": "browse share accounts libraries"}),
        )
        .await;
    assert_eq!(v["code"], OK, "{v}");
    let (mgr, _) = account(&s, &root, "mgr", "manager").await;
    let (_, _) = account(&s, &root, "gran", "viewer").await;
    // The key's first use is recorded once: before the snapshot.
    assert_eq!(mgr.get_json("/api/v1/account", json!({})).await["code"], OK);
    let before = s.accounts_snapshot().await;
    for (path, params) in [
        // Promote itself, directly or through a type.
        (
            "/api/v1/users/type",
            json!({"user": "mgr", "type": "admin"}),
        ),
        (
            "/api/v1/types",
            json!({"name": "manager", "perms": "browse share accounts libraries backup shares upload moderate"}),
        ),
        (
            "/api/v1/types",
            json!({"name": "helper", "perms": "browse backup"}),
        ),
        // Invite an admin, or anyone into a library it does not see.
        (
            "/api/v1/tokens",
            json!({"type": "admin", "libraries": "lib"}),
        ),
        (
            "/api/v1/tokens",
            json!({"type": "viewer", "libraries": "other"}),
        ),
        // Give itself or others a library it does not see.
        (
            "/api/v1/libraries/grant",
            json!({"library": "other", "user": "mgr"}),
        ),
        (
            "/api/v1/libraries/grant",
            json!({"library": "other", "user": "gran"}),
        ),
        // Work against the account above it.
        ("/api/v1/users/disable", json!({"user": "root"})),
        (
            "/api/v1/users/type",
            json!({"user": "root", "type": "viewer"}),
        ),
        (
            "/api/v1/libraries/revoke",
            json!({"library": "lib", "user": "root"}),
        ),
        ("/api/v1/keys/revoke", json!({"id": 1})),
        // Turn an account into one it could not create.
        (
            "/api/v1/users/type",
            json!({"user": "gran", "type": "uploader"}),
        ),
    ] {
        let v = mgr.post_form(path, params.clone()).await;
        assert_err(&v, NO_PERMISSION);
        assert_eq!(
            s.accounts_snapshot().await,
            before,
            "{path} {params} changed something"
        );
    }
    // What it holds, it may grant.
    let t = mgr
        .post_form(
            "/api/v1/tokens",
            json!({"type": "viewer", "libraries": "lib"}),
        )
        .await;
    assert_eq!(t["code"], OK, "{t}");
    let v = mgr
        .post_form("/api/v1/users/disable", json!({"user": "gran"}))
        .await;
    assert_eq!(v["code"], OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_password_rule_for_registration() {
    let (s, _alice) = TestApp::start(|_| {}).await;
    let admin = claim(&s).await;
    // Code points, not bytes: 'é' is two bytes in UTF-8.
    for (n, ok) in [(7, false), (8, true), (1024, true), (1025, false)] {
        let t = admin
            .post_form(
                "/api/v1/tokens",
                json!({"type": "viewer", "libraries": "lib"}),
            )
            .await;
        let token = data(&t)["token"].as_str().unwrap().to_string();
        let pw = "é".repeat(n);
        let name = format!("user{n}");
        let before = s.accounts_snapshot().await;
        let v = Api::new(&s.base)
            .post_json(
                "/api/v1/register",
                json!({"token": token, "userName": name, "password": pw}),
            )
            .await;
        if ok {
            assert_eq!(v["code"], OK, "{n}: {v}");
            let l = Api::new(&s.base)
                .post_json("/login.icc", json!({"userName": name, "password": pw}))
                .await;
            assert_eq!(l["code"], OK, "{n}: {l}");
        } else {
            assert_err(&v, BAD_PARAM);
            assert!(v["msg"].as_str().unwrap().contains("8 to 1024"), "{v}");
            assert_eq!(s.accounts_snapshot().await, before, "{n} changed something");
        }
    }
}

/// `GET /shareFile.icc?shareKey=…` without a session: the status, and the
/// body of a 200 (the file's bytes).
async fn open_link(s: &TestApp, key: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/shareFile.icc", s.base))
        .query(&[("shareKey", key)])
        .send()
        .await
        .unwrap()
}

async fn issue_link(api: &Api, file: i64) -> String {
    let v = api.get_json("/shareFileUrl.icc", json!({"id": file})).await;
    data(&v).as_str().unwrap().to_string()
}

/// Live share links made by `user`, counted in the database.
async fn links_of(s: &TestApp, user: &'static str) -> i64 {
    s.db()
        .read_async(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM share_links l JOIN users u ON u.id = l.user_id \
                 WHERE u.name = ?1",
                [user],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap()
}

/// One account issuing link after link (share links used to be evicted
/// least recently used first across all accounts, so alice could end bob's
/// link by issuing `share.max_links` of her own) pushes out only her own
/// links: past `share.max_per_user`, and past `share.max_links` in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_issuing_many_share_links_ends_no_other_accounts_link() {
    let (mut s, alice) = TestApp::start(|c| {
        c.watch.enabled = false;
        c.share.max_per_user = 3;
    })
    .await;
    let bob = s.login("bob").await;
    let c_jpg = bob.file_id("c.jpg").await;
    let bobs = issue_link(&bob, c_jpg).await;
    let c_bytes = common::jpeg(32, 32, 3, None);
    let a = alice.file_id("a.jpg").await;

    let mut hers = Vec::new();
    for _ in 0..40 {
        hers.push(issue_link(&alice, a).await);
    }
    assert_eq!(links_of(&s, "alice").await, 3, "her cap");
    assert_eq!(links_of(&s, "bob").await, 1);
    let r = open_link(&s, &bobs).await;
    assert_eq!(r.status(), 200, "bob's link outlived 40 of alice's");
    assert_eq!(r.bytes().await.unwrap(), c_bytes);
    // Her three newest work; her older ones are gone (and say so).
    for k in &hers[37..] {
        assert_eq!(open_link(&s, k).await.status(), 200);
    }
    for k in [&hers[0], &hers[36]] {
        common::assert_binary_err_status(open_link(&s, k).await, 400, BAD_PARAM).await;
    }
    let listed = alice.get_json("/api/v1/shares", json!({"mine": 1})).await;
    assert_eq!(data(&listed).as_array().unwrap().len(), 3, "{listed}");

    // The total cap: with room for 4 links in all and none per account,
    // the account holding the most gives one up — alice, again.
    s.cfg.share.max_per_user = 1000;
    s.cfg.share.max_links = 4;
    let alice = s.restart().await;
    for _ in 0..40 {
        hers.push(issue_link(&alice, a).await);
    }
    assert_eq!(links_of(&s, "alice").await, 3);
    assert_eq!(links_of(&s, "bob").await, 1);
    let r = open_link(&s, &bobs).await;
    assert_eq!(r.status(), 200, "bob's link outlived 40 more of alice's");
    assert_eq!(r.bytes().await.unwrap(), c_bytes);
    for k in &hers[hers.len() - 3..] {
        assert_eq!(open_link(&s, k).await.status(), 200);
    }
    common::assert_binary_err_status(open_link(&s, &hers[hers.len() - 4]).await, 400, BAD_PARAM)
        .await;
}

/// The admin CLI beside a stopped server works on the database itself
/// (holding the data dir lock), through the real binary: what it does is
/// in the database and in force when the server starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_works_on_the_database_of_a_stopped_server() {
    let (mut s, _alice) = TestApp::start(|c| c.watch.enabled = false).await;
    s.running.take().unwrap().stop().await.unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let (code, out, err) = isync(&s, args, stdin);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(
            !out.contains("waiting for the other isync"),
            "{args:?}: {out}"
        );
        out
    };
    let pw = format!("{PW}\n");
    let out = run(&["admin", "init", "boss"], Some(&pw));
    let boss_key = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("isync_"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let out = run(
        &[
            "admin",
            "token",
            "create",
            "--type",
            "viewer",
            "--library",
            "lib",
        ],
        None,
    );
    let token = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 39 && l.matches('-').count() == 7)
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let out = run(
        &[
            "user",
            "add",
            "carol",
            "--password-stdin",
            "--type",
            "editor",
        ],
        Some(&pw),
    );
    assert!(out.contains("created user carol"), "{out}");
    run(&["admin", "user", "set-type", "bob", "viewer"], None);
    run(&["admin", "user", "disable", "bob"], None);
    run(&["admin", "type", "set", "family", "browse,share"], None);
    run(&["admin", "library", "grant", "other", "alice"], None);
    let out = run(&["admin", "user", "list"], None);
    assert!(
        out.contains("boss\tadmin") && out.contains("carol\teditor") && out.contains("bob\tviewer"),
        "{out}"
    );
    assert!(run(&["admin", "type", "list"], None).contains("family"));
    assert!(run(&["admin", "key", "list", "--user", "boss"], None).contains("boss"));
    let to = s.dir.path().join("cli-backup");
    let out = run(&["backup", "--to", to.to_str().unwrap()], None);
    assert!(out.starts_with("backup written to "), "{out}");
    assert_eq!(isync::backup::generations(&to).len(), 1);

    // In the database, with no server in between.
    let db = rusqlite::Connection::open_with_flags(
        s.cfg.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let users: Vec<(String, String, bool)> = db
        .prepare(
            "SELECT u.name, t.name, u.disabled FROM users u \
             JOIN account_types t ON t.id = u.account_type_id ORDER BY u.name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let has = |n: &str, t: &str, d: bool| users.contains(&(n.into(), t.into(), d));
    assert!(
        has("boss", "admin", false) && has("carol", "editor", false) && has("bob", "viewer", true),
        "{users:?}"
    );
    drop(db);

    // In force once the server is back.
    s.boot().await;
    let boss = Api::with_bearer(&s.base, &boss_key);
    assert_eq!(boss.get_json("/api/v1/users", json!({})).await["code"], OK);
    assert!(!needs_admin(&s).await);
    let v = Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": token, "userName": "gran", "password": PW}),
        )
        .await;
    assert_eq!(data(&v)["user"]["type"], "viewer", "{v}");
    let carol = Api::new(&s.base);
    let l = carol
        .get_json("/login.icc", json!({"userName": "carol", "password": PW}))
        .await;
    assert_eq!(l["code"], OK, "{l}");
    assert_err(
        &Api::new(&s.base)
            .get_json(
                "/login.icc",
                json!({"userName": "bob", "password": common::PASSWORD}),
            )
            .await,
        BAD_LOGIN,
    );
    let alice = s.login("alice").await;
    let roots: Vec<Value> = alice.catalogs("-1").await;
    assert!(roots.iter().any(|c| c["name"] == "other"), "{roots:?}");
}
