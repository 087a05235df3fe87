//! Refusing cross-site requests (CSRF). A browser attaches the `session`
//! cookie to requests that any page it shows makes to this server — a form
//! posted by a page of another site, of another port of the same host (the
//! same "site", which `SameSite` does not cover), or a sandboxed original
//! served here. So a request that changes something, authenticated by the
//! cookie (or by nothing: a login, a registration), must come from one of
//! this server's own pages.
//!
//! Browsers say where a request comes from: `Sec-Fetch-Site` (modern
//! browsers, on secure origins), `Origin` (on every request that is not a
//! plain GET/HEAD, `null` from a sandboxed or privacy-sensitive context),
//! else `Referer`. The first one present decides, compared with the `Host`
//! the request was sent to (as Go's `http.CrossOriginProtection` does).
//! Requests carrying none — the iOS app, curl — are not from a browser
//! page and pass. An access key (`Authorization: Bearer`) is never
//! attached by a browser on its own, so requests using one pass too.

use crate::error::Error;
use crate::http::error::ApiError;
use crate::http::state::bearer_key;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// GET endpoints that change something: a login creates a session (a
/// foreign page could log the browser into the attacker's account), and
/// `shareFileUrl.icc` creates a share link (and may push out the least
/// recently used one).
const STATE_CHANGING_GETS: &[&str] = &["/login.icc", "/shareFileUrl.icc"];

/// Middleware: answers a cross-site state-changing request with −10002
/// and a message saying why, before any handler runs.
pub(crate) async fn guard(req: Request, next: Next) -> Response {
    if let Err(why) = check(req.method(), req.uri().path(), req.headers()) {
        log::warn!(
            "refused a cross-site request: {} {:?}: {why}",
            req.method(),
            req.uri().path()
        );
        return ApiError(Error::NoPermission(format!(
            "cross-site request refused: {why}; use this server's own pages, the app, or an \
             access key (Authorization: Bearer)"
        )))
        .into_response();
    }
    next.run(req).await
}

/// Whether a request may go on; `Err` says why not. Pure, for unit tests.
pub(crate) fn check(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), String> {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !STATE_CHANGING_GETS.contains(&path);
    if safe || bearer_key(headers).is_some() {
        return Ok(());
    }
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(site) = text("sec-fetch-site") {
        return match site {
            // `none`: typed into the address bar, a bookmark.
            "same-origin" | "none" => Ok(()),
            other => Err(format!("the browser says it comes from a {other} page")),
        };
    }
    let host = text(header::HOST.as_str()).unwrap_or("");
    let (what, from) = match (text("origin"), text(header::REFERER.as_str())) {
        (Some(o), _) => ("Origin", o),
        (None, Some(r)) => ("Referer", r),
        (None, None) => return Ok(()),
    };
    match authority(from) {
        Some(a) if !host.is_empty() && a.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(format!(
            "{what} {from:?} is not this server ({host:?})",
            from = from.chars().take(200).collect::<String>()
        )),
    }
}

/// `host[:port]` of an `http(s)://` URL or origin; None for `null`, other
/// schemes and anything unparsable.
fn authority(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    // Userinfo (`user@host`) never appears in an Origin; in a Referer it
    // would only hide the real host.
    (!auth.is_empty() && !auth.contains('@')).then_some(auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str, pairs: &[(&str, &str)]) -> Result<(), String> {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "pi.local:5000".parse().unwrap());
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        check(&method, path, &h)
    }

    #[test]
    fn same_origin_and_non_browser_requests_pass() {
        for pairs in [
            vec![],
            vec![("origin", "http://pi.local:5000")],
            vec![("origin", "http://PI.local:5000")],
            vec![("referer", "http://pi.local:5000/")],
            vec![("referer", "http://pi.local:5000/?x=1#y")],
            vec![("sec-fetch-site", "same-origin")],
            vec![("sec-fetch-site", "none")],
            // A browser-made request with an access key.
            vec![
                ("origin", "http://evil.example"),
                ("authorization", "Bearer isync_abc"),
            ],
        ] {
            assert_eq!(
                req(Method::POST, "/api/v1/tokens", &pairs),
                Ok(()),
                "{pairs:?}"
            );
        }
        // Plain reads are never refused.
        for path in ["/files.icc", "/downFile.icc", "/api/v1/users"] {
            assert_eq!(
                req(Method::GET, path, &[("origin", "http://evil.example")]),
                Ok(())
            );
        }
    }

    #[test]
    fn foreign_null_and_other_port_requests_are_refused() {
        for pairs in [
            vec![("origin", "http://evil.example")],
            vec![("origin", "null")],
            // Same host, another port: same site, not same origin.
            vec![("origin", "http://pi.local:8080")],
            vec![("origin", "http://pi.local")],
            vec![("origin", "file://")],
            vec![("referer", "http://evil.example/pi.local:5000")],
            vec![("referer", "http://pi.local:5000@evil.example/")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            // Sec-Fetch-Site wins over a matching Origin.
            vec![
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://pi.local:5000"),
            ],
            // Origin wins over a matching Referer.
            vec![
                ("origin", "http://evil.example"),
                ("referer", "http://pi.local:5000/"),
            ],
            vec![("authorization", "Basic x"), ("origin", "null")],
        ] {
            for (m, path) in [
                (Method::POST, "/api/v1/tokens"),
                (Method::DELETE, "/whatever"),
                (Method::GET, "/login.icc"),
                (Method::GET, "/shareFileUrl.icc"),
            ] {
                let r = req(m.clone(), path, &pairs);
                assert!(r.is_err(), "{m} {path} {pairs:?}");
            }
        }
    }
}
