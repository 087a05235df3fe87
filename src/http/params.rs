//! Request parameters from the query string, a form body or a JSON object
//! body (spec §1.1), and their validation (spec §1.3). Parsing never fails
//! the request by itself: a malformed body is remembered and reported by
//! `check()`, so authentication is still checked first (rule 1).

use crate::error::Error;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use std::collections::HashMap;

/// Largest parameter body accepted (a helpText, a memo, an id list).
pub(crate) const MAX_PARAM_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Params {
    map: HashMap<String, String>,
    problem: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut p = Params::default();
        if let Some(q) = req.uri().query() {
            p.add_urlencoded(q.as_bytes());
        }
        let ctype = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let ctype = ctype.split(';').next().unwrap_or("").trim().to_string();
        let is_json = ctype == "application/json" || ctype.ends_with("+json");
        let is_form = ctype == "application/x-www-form-urlencoded";
        if is_json || is_form {
            // Size is bounded by the router's DefaultBodyLimit.
            match Bytes::from_request(req, state).await {
                Ok(body) if is_json => p.add_json(&body),
                Ok(body) => p.add_urlencoded(&body),
                Err(_) => {
                    p.problem = Some(format!(
                        "request body unreadable or larger than {MAX_PARAM_BODY_BYTES} bytes"
                    ))
                }
            }
        }
        Ok(p)
    }
}

/// Parses an `int` (spec §1.3): optional sign, surrounding spaces.
pub fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

/// Parses a timestamp: seconds, fractions truncated, years 1…9999.
pub fn parse_ts(s: &str) -> Option<i64> {
    const MIN: f64 = -62_135_596_800.0; // 0001-01-01
    const MAX: f64 = 253_402_300_799.0; // 9999-12-31T23:59:59
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && (MIN..=MAX).contains(&v)).then(|| v.trunc() as i64)
}

pub fn parse_float(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Parses an `ids` list: at least one item, every item an int.
pub fn parse_ids(s: &str) -> Option<Vec<i64>> {
    let v: Option<Vec<i64>> = s.split(',').map(parse_int).collect();
    v.filter(|v| !v.is_empty())
}

impl Params {
    /// Adds pairs not already present: the query string is added first, so
    /// it wins over a body (spec §1.1).
    pub fn add_urlencoded(&mut self, raw: &[u8]) {
        match serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    self.map.entry(k).or_insert(v);
                }
            }
            Err(_) => self.problem = Some("malformed url-encoded parameters".into()),
        }
    }

    pub fn add_json(&mut self, body: &[u8]) {
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(obj)) => {
                for (k, v) in obj {
                    let s = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => (b as i64).to_string(),
                        // Nulls, arrays and objects are no valid value.
                        _ => continue,
                    };
                    self.map.entry(k).or_insert(s);
                }
            }
            Ok(_) => self.problem = Some("the JSON body must be an object".into()),
            Err(e) => self.problem = Some(format!("the JSON body is not valid JSON: {e}")),
        }
    }

    /// Reports a malformed body (call after the session check).
    pub fn check(&self) -> Result<(), Error> {
        match &self.problem {
            Some(p) => Err(Error::BadParam(p.clone())),
            None => Ok(()),
        }
    }

    pub fn raw(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn req_str(&self, key: &str) -> Result<&str, Error> {
        self.raw(key)
            .ok_or_else(|| Error::BadParam(format!("missing parameter {key}")))
    }

    /// A required string of `min..=max` code points.
    pub fn req_text(&self, key: &str, min: usize, max: usize) -> Result<&str, Error> {
        let v = self.req_str(key)?;
        let n = v.chars().count();
        if n < min || n > max {
            return Err(Error::BadParam(format!(
                "{key} must be {min} to {max} characters long (got {n})"
            )));
        }
        Ok(v)
    }

    /// An optional string; too long counts as absent (rule 3).
    pub fn opt_text(&self, key: &str, max: usize) -> Option<&str> {
        self.raw(key).filter(|v| v.chars().count() <= max)
    }

    pub fn req_int(&self, key: &str) -> Result<i64, Error> {
        let v = self.req_str(key)?;
        parse_int(v).ok_or_else(|| Error::BadParam(format!("{key} must be an integer, got {v:?}")))
    }

    /// An optional int; an invalid value counts as absent (rule 3).
    pub fn opt_int(&self, key: &str) -> Option<i64> {
        self.raw(key).and_then(parse_int)
    }

    pub fn opt_ts(&self, key: &str) -> Option<i64> {
        self.raw(key).and_then(parse_ts)
    }

    pub(crate) fn opt_float(&self, key: &str) -> Option<f64> {
        self.raw(key).and_then(parse_float)
    }

    pub fn req_ids(&self, key: &str) -> Result<Vec<i64>, Error> {
        let v = self.req_str(key)?;
        parse_ids(v).ok_or_else(|| {
            Error::BadParam(format!(
                "{key} must be a comma-separated list of integers, got {v:?}"
            ))
        })
    }

    pub fn opt_ids(&self, key: &str) -> Option<Vec<i64>> {
        self.raw(key).and_then(parse_ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_and_ids() {
        assert_eq!(parse_int(" -12 "), Some(-12));
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("1.5"), None);
        assert_eq!(parse_int("99999999999999999999"), None);
        assert_eq!(parse_ids("3, 7 ,12"), Some(vec![3, 7, 12]));
        assert_eq!(parse_ids("1_0"), None);
        assert_eq!(parse_ids(""), None);
        assert_eq!(parse_ids("1,,2"), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1500000000.9"), Some(1_500_000_000));
        assert_eq!(parse_ts("-62135596800"), Some(-62_135_596_800));
        assert_eq!(parse_ts("1e20"), None);
        assert_eq!(parse_ts("NaN"), None);
        assert_eq!(parse_ts("inf"), None);
    }

    #[test]
    fn json_and_form_merge_with_query_winning() {
        let mut p = Params::default();
        p.add_urlencoded(b"a=1&b=q");
        p.add_json(br#"{"b": "json", "c": 5, "d": null, "e": [1]}"#);
        assert_eq!(p.raw("a"), Some("1"));
        assert_eq!(p.raw("b"), Some("q"));
        assert_eq!(p.raw("c"), Some("5"));
        assert_eq!(p.raw("d"), None);
        assert_eq!(p.raw("e"), None);
        assert!(p.check().is_ok());

        let mut p = Params::default();
        p.add_json(b"[1,2]");
        assert!(matches!(p.check(), Err(Error::BadParam(_))));
        let mut p = Params::default();
        p.add_json(b"{not json");
        assert!(p.check().is_err());
    }

    #[test]
    fn optional_invalid_is_absent() {
        let mut p = Params::default();
        p.add_urlencoded(b"maxPerPage=abc&memo=xx");
        assert_eq!(p.opt_int("maxPerPage"), None);
        assert_eq!(p.opt_text("memo", 1), None);
        assert_eq!(p.opt_text("memo", 2), Some("xx"));
        assert!(p.req_int("missing").is_err());
    }
}
