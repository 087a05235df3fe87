//! Every route × every role (issue 6, security issue #12): each `.icc`
//! endpoint and each `/api/v1/*` route, with every method it answers (HEAD
//! included: a GET route answers it too), called by an anonymous client, a
//! viewer, an uploader, an editor, an admin and an account of a custom type
//! holding only `accounts`. Each call asserts the exact HTTP status and wire
//! code, and compares every table of the database before and after it: a
//! refused call changed nothing, an allowed one changed exactly the tables
//! it should, by the number of rows it should. Methods a route does not
//! answer are 405 and change nothing, and the table is checked against the
//! router itself, so a route added later without a row here fails the test.
//! Real server on 127.0.0.1, real SQLite, real files.

use crate::common;

use common::TestApp;
use common::{data, Api, BAD_LOGIN, NEED_LOGIN, NOT_FOUND, NO_PERMISSION, OK};
use isync::accounts::{self, Actor};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const PW: &str = "a long family password";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Anon,
    Viewer,
    Uploader,
    Editor,
    Admin,
    /// A custom type holding `accounts` and nothing else.
    Keeper,
}

const ROLES: [Role; 6] = [
    Role::Anon,
    Role::Viewer,
    Role::Uploader,
    Role::Editor,
    Role::Admin,
    Role::Keeper,
];

impl Role {
    /// The account name (and its type).
    fn account(self) -> Option<(&'static str, &'static str)> {
        match self {
            Role::Anon => None,
            Role::Viewer => Some(("vi", "viewer")),
            Role::Uploader => Some(("up", "uploader")),
            Role::Editor => Some(("ed", "editor")),
            Role::Admin => Some(("ad", "admin")),
            Role::Keeper => Some(("kp", "keeper")),
        }
    }

    /// Whether the role holds `upload` (its own pending upload to send).
    fn uploads(self) -> bool {
        matches!(self, Role::Uploader | Role::Editor | Role::Admin)
    }
}

/// An expected answer: the HTTP status, and the wire code of a JSON body
/// (`None`: a body that is not the JSON envelope — a file, the welcome
/// page). `head`: the answer to HEAD, the same without a body.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Want {
    status: u16,
    code: Option<i64>,
    head: bool,
}

impl Want {
    fn success(self) -> bool {
        self.status == 200 && self.code.is_none_or(|c| c == OK)
    }
}

const O: Want = Want {
    status: 200,
    code: Some(OK),
    head: false,
};
/// No session: −10001.
const A: Want = Want {
    status: 200,
    code: Some(NEED_LOGIN),
    head: false,
};
/// The role lacks the permission, or may not touch the target: −10002.
const P: Want = Want {
    status: 200,
    code: Some(NO_PERMISSION),
    head: false,
};
/// The target is not the caller's to see: −10004.
const N: Want = Want {
    status: 200,
    code: Some(NOT_FOUND),
    head: false,
};
const BAD: Want = Want {
    status: 200,
    code: Some(BAD_LOGIN),
    head: false,
};
/// A binary endpoint's body (a file).
const RAW: Want = Want {
    status: 200,
    code: None,
    head: false,
};
/// A binary endpoint's refusals (`src/http/error.rs`: 403 for both).
const BIN_A: Want = Want {
    status: 403,
    code: Some(NEED_LOGIN),
    head: false,
};
const BIN_P: Want = Want {
    status: 403,
    code: Some(NO_PERMISSION),
    head: false,
};

/// One call of the matrix: `method path`, in the situation `case`, with the
/// answer each role must get (in [`ROLES`] order) and what an allowed call
/// changes: `(table, change in its row count)`; a table listed with 0 has
/// rows changed in place. Every other table must stay as it was.
struct Row {
    method: Method,
    path: &'static str,
    case: &'static str,
    want: [Want; 6],
    changes: &'static [(&'static str, i64)],
}

fn row(
    method: &str,
    path: &'static str,
    case: &'static str,
    want: [Want; 6],
    changes: &'static [(&'static str, i64)],
) -> Row {
    Row {
        method: method.parse().unwrap(),
        path,
        case,
        want,
        changes,
    }
}

/// The matrix, GET and POST; [`with_head`] adds a HEAD row for every GET.
fn matrix() -> Vec<Row> {
    let browse = [A, O, O, O, O, P];
    let upload = [A, P, O, O, O, P];
    let moderate = [A, P, P, O, O, P];
    let anyone = [O; 6];
    let logged_in = [A, O, O, O, O, O];
    let accounts = [A, P, P, P, O, O];
    let admin_only = [A, P, P, P, O, P];
    vec![
        // The iSync API.
        row(
            "GET",
            "/login.icc",
            "own password (anon: unknown user)",
            [BAD, O, O, O, O, O],
            &[("users", 0)],
        ),
        row(
            "POST",
            "/login.icc",
            "own password (anon: unknown user)",
            [BAD, O, O, O, O, O],
            &[("users", 0)],
        ),
        row("POST", "/logout.icc", "a session of its own", anyone, &[]),
        row("GET", "/helpInfo.icc", "own", browse, &[]),
        row(
            "POST",
            "/updateHelpInfo.icc",
            "own (type 0)",
            browse,
            &[("users", 0)],
        ),
        row(
            "POST",
            "/updateHelpInfo.icc",
            "a file it did not upload",
            moderate,
            &[("files", 0)],
        ),
        row("GET", "/catalogs.icc", "roots", browse, &[]),
        row("GET", "/files.icc", "first page", browse, &[]),
        row(
            "GET",
            "/thumbnail.icc",
            "a.jpg",
            [BIN_A, RAW, RAW, RAW, RAW, BIN_P],
            &[],
        ),
        row(
            "GET",
            "/downFile.icc",
            "a.jpg",
            [BIN_A, RAW, RAW, RAW, RAW, BIN_P],
            &[],
        ),
        row(
            "GET",
            "/viewFile.icc",
            "a.jpg (its original)",
            [BIN_A, RAW, RAW, RAW, RAW, BIN_P],
            &[],
        ),
        row(
            "GET",
            "/shareFileUrl.icc",
            "a.jpg",
            [A, O, O, O, O, P],
            &[("share_links", 1)],
        ),
        row(
            "GET",
            "/shareFile.icc",
            "the admin's link (the key is the credential)",
            [RAW; 6],
            &[("share_links", 0)],
        ),
        row(
            "POST",
            "/uploadFileInfo.icc",
            "into the library root",
            upload,
            &[("files", 1)],
        ),
        row("GET", "/uploadingInfo.icc", "own", upload, &[]),
        row(
            "POST",
            "/uploadFile.icc",
            "its own pending upload (else the admin's)",
            upload,
            &[("files", 0)],
        ),
        row(
            "POST",
            "/createCatalog.icc",
            "in the library root",
            upload,
            &[("catalogs", 1)],
        ),
        row(
            "POST",
            "/updateCatalog.icc",
            "a folder it did not create",
            moderate,
            &[("catalogs", 0)],
        ),
        row(
            "POST",
            "/updateFile.icc",
            "a file it did not upload",
            moderate,
            &[("files", 0)],
        ),
        row(
            "POST",
            "/deleteFiles.icc",
            "a file it did not upload",
            moderate,
            &[("files", -1), ("trash", 1)],
        ),
        row(
            "POST",
            "/deleteCatalog.icc",
            "a folder it did not create",
            moderate,
            &[("catalogs", -1), ("trash", 1)],
        ),
        // The admin API.
        row("GET", "/", "welcome page", [RAW; 6], &[]),
        row("GET", "/api/v1/info", "", anyone, &[]),
        row(
            "POST",
            "/api/v1/register",
            "a fresh viewer token",
            anyone,
            &[
                ("users", 1),
                ("access_keys", 1),
                ("registration_tokens", -1),
                ("user_roots", 1),
            ],
        ),
        row("GET", "/api/v1/account", "", logged_in, &[]),
        row("GET", "/api/v1/keys", "own", logged_in, &[]),
        row(
            "GET",
            "/api/v1/keys",
            "?user= another account",
            accounts,
            &[],
        ),
        row(
            "POST",
            "/api/v1/keys",
            "a new key of its own",
            logged_in,
            &[("access_keys", 1)],
        ),
        row(
            "POST",
            "/api/v1/keys/revoke",
            "its own key",
            logged_in,
            &[("access_keys", -1)],
        ),
        row(
            "POST",
            "/api/v1/keys/revoke",
            "a viewer's key",
            [A, N, N, N, O, P],
            &[("access_keys", -1)],
        ),
        row("GET", "/api/v1/users", "", accounts, &[]),
        row(
            "POST",
            "/api/v1/users/type",
            "a keeper made `nobody`",
            accounts,
            &[("users", 0)],
        ),
        row(
            "POST",
            "/api/v1/users/disable",
            "a keeper",
            accounts,
            &[("users", 0)],
        ),
        row(
            "POST",
            "/api/v1/users/disable",
            "a viewer",
            admin_only,
            &[("users", 0)],
        ),
        row(
            "POST",
            "/api/v1/users/enable",
            "a disabled keeper",
            accounts,
            &[("users", 0)],
        ),
        row("GET", "/api/v1/types", "", accounts, &[]),
        row(
            "POST",
            "/api/v1/types",
            "new, perms `accounts`",
            accounts,
            &[("account_types", 1)],
        ),
        row(
            "POST",
            "/api/v1/types",
            "new, perms `browse`",
            admin_only,
            &[("account_types", 1)],
        ),
        row(
            "POST",
            "/api/v1/types/delete",
            "an unused `accounts` type",
            accounts,
            &[("account_types", -1)],
        ),
        row("GET", "/api/v1/tokens", "", accounts, &[]),
        row(
            "POST",
            "/api/v1/tokens",
            "viewer, library lib",
            admin_only,
            &[("registration_tokens", 1)],
        ),
        row(
            "POST",
            "/api/v1/tokens",
            "keeper, no library",
            accounts,
            &[("registration_tokens", 1)],
        ),
        row(
            "POST",
            "/api/v1/tokens/delete",
            "a keeper token",
            accounts,
            &[("registration_tokens", -1)],
        ),
        row("GET", "/api/v1/libraries", "", admin_only, &[]),
        row(
            "POST",
            "/api/v1/libraries/grant",
            "lib to an account without it",
            admin_only,
            &[("user_roots", 1)],
        ),
        row(
            "POST",
            "/api/v1/libraries/revoke",
            "lib from a viewer",
            admin_only,
            &[("user_roots", -1)],
        ),
        row("GET", "/api/v1/backup", "", admin_only, &[]),
        row(
            "POST",
            "/api/v1/backup",
            "",
            admin_only,
            &[("backup_runs", 1)],
        ),
        row("GET", "/api/v1/shares", "own", logged_in, &[]),
        row(
            "POST",
            "/api/v1/shares/revoke",
            "the admin's link",
            [A, N, N, N, O, N],
            &[("share_links", -1)],
        ),
    ]
}

/// Adds a HEAD row after every GET row: the same handler runs (axum
/// answers HEAD on a GET route), so the same status and the same changes;
/// no body, so no code to read.
fn with_head(rows: Vec<Row>) -> Vec<Row> {
    let mut out = Vec::new();
    for r in rows {
        let head = (r.method == Method::GET).then(|| Row {
            method: Method::HEAD,
            path: r.path,
            case: r.case,
            want: r.want.map(|w| Want { head: true, ..w }),
            changes: r.changes,
        });
        out.push(r);
        out.extend(head);
    }
    out
}

/// `(method, path)` of every route `src/http/mod.rs` serves: the
/// `.route(…)` calls of `router()` and the two prefixes of `prefixed`.
fn served_routes() -> BTreeSet<(String, String)> {
    let src = include_str!("../../src/http/mod.rs");
    let start = src.find("fn router(").expect("router()");
    let end = src.find(".fallback(prefixed)").expect("fallback");
    let mut out = BTreeSet::new();
    for chunk in src[start..end].split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).expect("a path literal");
        let code: String = chunk
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        if code.contains("get(") {
            out.insert(("GET".into(), path.into()));
            out.insert(("HEAD".into(), path.into()));
        }
        if code.contains("post(") {
            out.insert(("POST".into(), path.into()));
        }
    }
    for prefix in ["/downFile.ic", "/shareFile.ic"] {
        assert!(src.contains(&format!("path.starts_with(\"{prefix}\")")));
        for m in ["GET", "HEAD"] {
            out.insert((m.into(), format!("{prefix}c")));
        }
    }
    out
}

/// Every row of every table, by table (rows as text, sorted).
async fn snapshot(s: &TestApp) -> BTreeMap<String, Vec<String>> {
    s.db()
        .read_async(|c| {
            let tables: Vec<String> = c
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = BTreeMap::new();
            for t in tables {
                let mut st = c.prepare(&format!("SELECT * FROM {t} ORDER BY 1"))?;
                let n = st.column_count();
                let mut rows = st.query([])?;
                let mut v = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut line = String::new();
                    for i in 0..n {
                        match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Text(b) => {
                                line.push_str(&format!(" {:?}", String::from_utf8_lossy(b)))
                            }
                            v => line.push_str(&format!(" {v:?}")),
                        }
                    }
                    v.push(line);
                }
                out.insert(t, v);
            }
            Ok(out)
        })
        .await
        .unwrap()
}

/// Which tables differ, and by how many rows.
fn diff(
    before: &BTreeMap<String, Vec<String>>,
    after: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, i64> {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    before
        .iter()
        .filter(|(t, rows)| after[*t] != **rows)
        .map(|(t, rows)| (t.clone(), after[t].len() as i64 - rows.len() as i64))
        .collect()
}

/// What a call sends: query parameters (GET/HEAD, and uploadFile's), a form
/// body (POST), or a raw body with its content type.
struct Call {
    client: Api,
    query: Value,
    form: Option<Value>,
    raw: Option<(&'static str, Vec<u8>)>,
}

/// The server, its admin (who sets the scene and is not under test), the
/// role clients and the fixtures' ids.
struct Scene {
    s: TestApp,
    root: Api,
    /// Per role: (access key client, session cookie client).
    clients: Vec<Option<(Api, Api)>>,
    a_jpg: i64,
    lib_root: i64,
    /// A password hash for accounts made on the console side.
    hash: String,
    /// Numbers fresh names.
    n: usize,
    /// Counts cells (key and cookie clients alternate).
    cells: usize,
}

impl Scene {
    fn fresh(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}{}", self.n)
    }

    /// The role's client; key and cookie alternate from call to call.
    fn client(&self, role: Role) -> Api {
        let i = ROLES.iter().position(|r| *r == role).unwrap();
        match &self.clients[i] {
            None => Api::new(&self.s.base),
            Some((key, cookie)) => {
                if self.cells % 2 == 0 {
                    key.clone()
                } else {
                    cookie.clone()
                }
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&isync::db::Db) -> T + Send + 'static,
    ) -> T {
        let db = self.s.db().clone();
        tokio::task::spawn_blocking(move || f(&db)).await.unwrap()
    }

    /// An account made on the console: `kind`, optionally disabled and
    /// granted `lib`; its name and id.
    async fn victim(&mut self, kind: &'static str, disabled: bool, lib: bool) -> (String, i64) {
        let name = self.fresh("victim");
        let (n, hash) = (name.clone(), self.hash.clone());
        let id = self
            .blocking(move |db| {
                let u = accounts::add_or_reset_user(db, &n, &hash, Some(kind)).unwrap();
                if lib {
                    accounts::set_grant(db, Actor::Console, "lib", &n, true).unwrap();
                }
                if disabled {
                    accounts::set_disabled(db, Actor::Console, &n, true).unwrap();
                }
                u.id.0
            })
            .await;
        (name, id)
    }

    /// A new access key of `user`; its id.
    async fn key_of(&self, user: i64) -> i64 {
        self.blocking(move |db| {
            accounts::create_key(db, isync::model::UserId(user), "spare")
                .unwrap()
                .0
                .id
        })
        .await
    }

    /// A folder made by the admin in the library root.
    async fn folder(&mut self) -> i64 {
        let name = self.fresh("folder");
        let v = self
            .root
            .post_form(
                "/createCatalog.icc",
                json!({"parentId": self.lib_root, "name": name}),
            )
            .await;
        data(&v)["id"].as_i64().unwrap()
    }

    /// A pending upload of 10 bytes announced by `by` into the library root.
    async fn pending(&mut self, by: &Api) -> i64 {
        let name = format!("{}.jpg", self.fresh("upload"));
        let v = by
            .post_form(
                "/uploadFileInfo.icc",
                json!({"cid": self.lib_root, "name": name, "size": 10, "type": 1, "ext": "jpg"}),
            )
            .await;
        data(&v)["id"].as_i64().unwrap()
    }

    /// A complete file uploaded by the admin.
    async fn file(&mut self) -> i64 {
        let root = self.root.clone();
        let id = self.pending(&root).await;
        let (ctype, body) = origin_part();
        let r = root
            .send_raw(
                Method::POST,
                &format!("/uploadFile.icc?id={id}&obp=0"),
                ctype,
                body,
            )
            .await;
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], OK, "{v}");
        id
    }

    /// A share link made by the admin, last used a second ago (so a use
    /// visibly moves it).
    async fn link(&self) -> (i64, String) {
        let v = self
            .root
            .get_json("/shareFileUrl.icc", json!({"id": self.a_jpg}))
            .await;
        let key = data(&v).as_str().unwrap().to_string();
        let id = self
            .blocking(|db| {
                db.write(|tx| {
                    tx.execute("UPDATE share_links SET used_ms = used_ms - 1000", [])?;
                    Ok(tx.query_row("SELECT max(id) FROM share_links", [], |r| r.get(0))?)
                })
                .unwrap()
            })
            .await;
        (id, key)
    }

    /// Sets the scene for one cell; what to send.
    async fn prepare(&mut self, r: &Row, role: Role) -> Call {
        self.cells += 1;
        let (name, _) = role.account().unwrap_or(("nobody-at-all", ""));
        let client = self.client(role);
        let mut call = Call {
            client: client.clone(),
            query: json!({}),
            form: None,
            raw: None,
        };
        let post = r.method == Method::POST;
        let params = match (r.path, r.case) {
            ("/login.icc", _) => {
                // A fresh client: logging in needs no session. The last
                // login (in seconds) a minute back, so this one shows.
                call.client = Api::new(&self.s.base);
                self.blocking(move |db| {
                    db.write(|tx| {
                        tx.execute(
                            "UPDATE users SET last_login = last_login - 60 WHERE name = ?1",
                            [name],
                        )?;
                        Ok(())
                    })
                    .unwrap()
                })
                .await;
                json!({"userName": name, "password": PW})
            }
            ("/logout.icc", _) => {
                if role != Role::Anon {
                    call.client = Api::new(&self.s.base);
                    let l = call
                        .client
                        .get_json("/login.icc", json!({"userName": name, "password": PW}))
                        .await;
                    assert_eq!(l["code"], OK, "{l}");
                }
                json!({})
            }
            ("/helpInfo.icc", _) => json!({"type": 0}),
            ("/updateHelpInfo.icc", "own (type 0)") => {
                json!({"type": 0, "helpInt": self.n as i64})
            }
            ("/updateHelpInfo.icc", _) => {
                json!({"type": 2, "id": self.a_jpg, "helpText": self.fresh("help")})
            }
            ("/catalogs.icc", _) => json!({"pids": "-1"}),
            ("/files.icc", _) => json!({"pageIndex": 0}),
            ("/thumbnail.icc", _) => json!({"id": self.a_jpg, "level": 0}),
            ("/viewFile.icc", _) => json!({"id": self.a_jpg}),
            ("/downFile.icc", _) => json!({"id": self.a_jpg}),
            ("/shareFileUrl.icc", _) => json!({"id": self.a_jpg}),
            ("/shareFile.icc", _) => json!({"shareKey": self.link().await.1}),
            ("/uploadFileInfo.icc", _) => {
                json!({"cid": self.lib_root, "name": format!("{}.jpg", self.fresh("new")),
                       "size": 10, "type": 1, "ext": "jpg"})
            }
            ("/uploadingInfo.icc", _) => json!({}),
            ("/uploadFile.icc", _) => {
                let by = if role.uploads() {
                    client.clone()
                } else {
                    self.root.clone()
                };
                let id = self.pending(&by).await;
                call.raw = Some(origin_part());
                call.query = json!({"id": id, "obp": 0});
                return call;
            }
            ("/createCatalog.icc", _) => {
                json!({"parentId": self.lib_root, "name": self.fresh("made")})
            }
            ("/updateCatalog.icc", _) => {
                json!({"id": self.folder().await, "memo": self.fresh("memo")})
            }
            ("/updateFile.icc", _) => json!({"id": self.a_jpg, "memo": self.fresh("memo")}),
            ("/deleteFiles.icc", _) => json!({"ids": self.file().await.to_string()}),
            ("/deleteCatalog.icc", _) => json!({"ids": self.folder().await.to_string()}),
            ("/", _) | ("/api/v1/info", _) | ("/api/v1/account", _) => json!({}),
            ("/api/v1/register", _) => {
                let t = self
                    .blocking(|db| {
                        accounts::create_token(
                            db,
                            Actor::Console,
                            "viewer",
                            &["lib".into()],
                            None,
                            None,
                        )
                        .unwrap()
                        .token
                    })
                    .await;
                json!({"token": t, "userName": self.fresh("joined"), "password": PW})
            }
            ("/api/v1/keys", "own") => json!({}),
            ("/api/v1/keys", "?user= another account") => {
                json!({"user": self.victim("viewer", false, false).await.0})
            }
            ("/api/v1/keys", _) => json!({"label": self.fresh("device")}),
            ("/api/v1/keys/revoke", "its own key") => {
                let owner = match role {
                    Role::Anon => self.victim("viewer", false, false).await.1,
                    _ => self.s_user_id(name).await,
                };
                json!({"id": self.key_of(owner).await})
            }
            ("/api/v1/keys/revoke", _) => {
                let (_, uid) = self.victim("viewer", false, false).await;
                json!({"id": self.key_of(uid).await})
            }
            ("/api/v1/users", _) | ("/api/v1/types", "") | ("/api/v1/tokens", "") => json!({}),
            ("/api/v1/users/type", _) => {
                json!({"user": self.victim("keeper", false, false).await.0, "type": "nobody"})
            }
            ("/api/v1/users/disable", "a keeper") => {
                json!({"user": self.victim("keeper", false, false).await.0})
            }
            ("/api/v1/users/disable", _) => {
                json!({"user": self.victim("viewer", false, false).await.0})
            }
            ("/api/v1/users/enable", _) => {
                json!({"user": self.victim("keeper", true, false).await.0})
            }
            ("/api/v1/types", "new, perms `accounts`") => {
                json!({"name": self.fresh("type"), "perms": "accounts"})
            }
            ("/api/v1/types", _) => json!({"name": self.fresh("type"), "perms": "browse"}),
            ("/api/v1/types/delete", _) => {
                let name = self.fresh("unused");
                let n = name.clone();
                self.blocking(move |db| {
                    accounts::upsert_type(db, Actor::Console, &n, "accounts").unwrap()
                })
                .await;
                json!({"name": name})
            }
            ("/api/v1/tokens", "viewer, library lib") => {
                json!({"type": "viewer", "libraries": "lib"})
            }
            ("/api/v1/tokens", _) => json!({"type": "keeper"}),
            ("/api/v1/tokens/delete", _) => {
                let id = self
                    .blocking(|db| {
                        accounts::create_token(db, Actor::Console, "keeper", &[], None, None)
                            .unwrap()
                            .id
                    })
                    .await;
                json!({"id": id})
            }
            ("/api/v1/libraries", _) | ("/api/v1/backup", _) => json!({}),
            ("/api/v1/libraries/grant", _) => {
                json!({"library": "lib", "user": self.victim("viewer", false, false).await.0})
            }
            ("/api/v1/libraries/revoke", _) => {
                json!({"library": "lib", "user": self.victim("viewer", false, true).await.0})
            }
            ("/api/v1/shares", _) => json!({}),
            ("/api/v1/shares/revoke", _) => json!({"id": self.link().await.0}),
            other => unreachable!("no scene for {other:?}"),
        };
        if post {
            call.form = Some(params);
        } else {
            call.query = params;
        }
        call
    }

    async fn s_user_id(&self, name: &'static str) -> i64 {
        self.blocking(move |db| {
            db.read(|c| Ok(isync::db::users::by_name(c, name)?.unwrap().id.0))
                .unwrap()
        })
        .await
    }
}

/// A multipart body with a 10-byte `origin` part.
fn origin_part() -> (&'static str, Vec<u8>) {
    (
        "multipart/form-data; boundary=XyZ",
        b"--XyZ\r\nContent-Disposition: form-data; name=\"origin\"; filename=\"origin\"\r\n\r\n\
          0123456789\r\n--XyZ--\r\n"
            .to_vec(),
    )
}

async fn send(method: &Method, path: &str, call: Call) -> reqwest::Response {
    let api = &call.client;
    let mut rq = api
        .http
        .request(method.clone(), api.url(path))
        .query(&call.query);
    if let Some(form) = &call.form {
        rq = rq.form(form);
    }
    if let Some((ctype, body)) = call.raw {
        rq = rq.header(reqwest::header::CONTENT_TYPE, ctype).body(body);
    }
    rq.send().await.expect("request")
}

/// Sets up the accounts under test: each role's account gets library `lib`
/// through a token of its type, a key (first use recorded) and a session.
async fn scene() -> Scene {
    let (s, alice) = TestApp::start(|c| {
        // No watcher or offline checks: nothing may change rows behind a
        // call's back.
        c.watch.enabled = false;
        c.watch.offline_check_secs = 3600;
        // Nor the thumbnail pre-render, which records a failed render on
        // the file's row whenever it gets to it.
        c.scan.prerender_threads = 0;
        // The anonymous logins are failures; they must not lock 127.0.0.1.
        c.login.max_failures = 1000;
        c.backup.keep = 100;
    })
    .await;
    let v = Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": "init", "userName": "root", "password": PW}),
        )
        .await;
    let root = Api::with_bearer(&s.base, data(&v)["accessKey"].as_str().unwrap());
    for (name, perms) in [("keeper", "accounts"), ("nobody", "")] {
        let db = s.db().clone();
        tokio::task::spawn_blocking(move || {
            accounts::upsert_type(&db, Actor::Console, name, perms).unwrap()
        })
        .await
        .unwrap();
    }
    let mut clients = Vec::new();
    for role in ROLES {
        let Some((name, kind)) = role.account() else {
            clients.push(None);
            continue;
        };
        let t = root
            .post_form("/api/v1/tokens", json!({"type": kind, "libraries": "lib"}))
            .await;
        let v = Api::new(&s.base)
            .post_json(
                "/api/v1/register",
                json!({"token": data(&t)["token"], "userName": name, "password": PW}),
            )
            .await;
        assert_eq!(data(&v)["user"]["type"], kind, "{v}");
        let key = Api::with_bearer(&s.base, data(&v)["accessKey"].as_str().unwrap());
        // The key's first use is recorded once: here, not in a cell.
        assert_eq!(key.get_json("/api/v1/account", json!({})).await["code"], OK);
        let cookie = Api::new(&s.base);
        let l = cookie
            .get_json("/login.icc", json!({"userName": name, "password": PW}))
            .await;
        assert_eq!(l["code"], OK, "{l}");
        clients.push(Some((key, cookie)));
    }
    let a_jpg = alice.file_id("a.jpg").await;
    let lib_root = common::root_id(&alice).await;
    Scene {
        s,
        root,
        clients,
        a_jpg,
        lib_root,
        hash: isync::auth::hash_password(PW),
        n: 0,
        cells: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_every_method_every_role() {
    let rows = with_head(matrix());
    // The matrix covers exactly what the router serves.
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let served = served_routes();
    assert_eq!(
        covered,
        served,
        "not in the matrix: {:?}; not served: {:?}",
        served.difference(&covered).collect::<Vec<_>>(),
        covered.difference(&served).collect::<Vec<_>>()
    );

    let mut sc = scene().await;
    let mut cells = 0;
    for r in &rows {
        for (i, role) in ROLES.into_iter().enumerate() {
            let want = r.want[i];
            let what = format!("{} {} ({}) as {role:?}", r.method, r.path, r.case);
            let call = sc.prepare(r, role).await;
            let before = snapshot(&sc.s).await;
            let resp = send(&r.method, r.path, call).await;
            let status = resp.status().as_u16();
            let ctype = common::header(&resp, "content-type");
            let body = resp.bytes().await.unwrap();
            let text = String::from_utf8_lossy(&body);
            assert_eq!(status, want.status, "{what}: {text}");
            match (want.head, want.code) {
                (false, Some(code)) => {
                    assert!(ctype.starts_with("application/json"), "{what}: {ctype}");
                    let v: Value = serde_json::from_slice(&body)
                        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
                    assert_eq!(v["code"], code, "{what}: {v}");
                    if code != OK {
                        let msg = v["msg"].as_str().unwrap_or("");
                        assert!(!msg.trim().is_empty(), "{what}: no msg: {v}");
                    }
                }
                (true, _) => assert!(body.is_empty(), "{what}: a body for HEAD"),
                (false, None) => {
                    assert!(!body.is_empty(), "{what}: an empty body");
                    assert!(!ctype.starts_with("application/json"), "{what}: {text}");
                }
            }
            if r.path == "/api/v1/backup" && r.method == Method::POST {
                // Compare once the backup it may have started is done.
                let b = sc.s.state().backups.clone();
                tokio::task::spawn_blocking(move || b.wait_idle())
                    .await
                    .unwrap();
            }
            let changed = diff(&before, &snapshot(&sc.s).await);
            let expected: BTreeMap<String, i64> = if want.success() {
                r.changes.iter().map(|(t, d)| (t.to_string(), *d)).collect()
            } else {
                BTreeMap::new()
            };
            assert_eq!(changed, expected, "{what} changed the wrong rows");
            cells += 1;
        }
    }
    assert_eq!(cells, rows.len() * ROLES.len());

    // Methods a route does not answer are 405, even for the admin, and
    // change nothing.
    let paths: BTreeSet<&String> = served.iter().map(|(_, p)| p).collect();
    let before = snapshot(&sc.s).await;
    let admin = sc.client(Role::Admin);
    for path in paths {
        for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"] {
            if served.contains(&(m.to_string(), path.clone())) {
                continue;
            }
            let r = admin
                .http
                .request(m.parse().unwrap(), admin.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405, "{m} {path}");
        }
    }
    assert_eq!(diff(&before, &snapshot(&sc.s).await), BTreeMap::new());
}
