//! `http/params.rs`: request parameters from the query string and a form
//! or JSON body (spec §1.1), and their typed readers (§1.3).
//!
//! Input: a mode byte (form or JSON body), then the query string, `\n`,
//! the body. Checks:
//! - the query wins over the body, and every query pair's first value is
//!   what `raw` returns; url-encoding the pairs again and reading them
//!   gives the same (parse → serialise → parse);
//! - a JSON object body's strings, numbers and booleans are its values
//!   (unless the query has the key), anything else is absent; a body that
//!   is not an object (or not JSON) is reported by `check()`;
//! - the typed readers agree with the parsers and keep their promises:
//!   an int prints and parses back to itself, a timestamp lies in years
//!   1–9999, a float is finite, an id list is non-empty, one id per comma,
//!   and round-trips; text lengths are within the asked bounds.
#![no_main]

use isync::http::params::{parse_float, parse_ids, parse_int, parse_ts, Params};
use isync_fuzz::params;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_value(p: &Params, key: &str) {
    let raw = p.raw(key);
    assert_eq!(p.opt_int(key), raw.and_then(parse_int));
    assert_eq!(p.req_int(key).ok(), raw.and_then(parse_int));
    assert_eq!(p.opt_ts(key), raw.and_then(parse_ts));
    assert_eq!(p.opt_ids(key), raw.and_then(parse_ids));
    assert_eq!(p.req_ids(key).ok(), raw.and_then(parse_ids));
    assert_eq!(p.req_str(key).ok(), raw);
    let Some(v) = raw else {
        assert!(p.req_text(key, 0, usize::MAX).is_err(), "missing {key:?}");
        return;
    };
    if let Some(n) = parse_int(v) {
        assert_eq!(parse_int(&n.to_string()), Some(n));
    }
    if let Some(t) = parse_ts(v) {
        assert!(
            (-62_135_596_800..=253_402_300_799).contains(&t),
            "timestamp {t}"
        );
    }
    if let Some(f) = parse_float(v) {
        assert!(f.is_finite());
    }
    if let Some(ids) = parse_ids(v) {
        assert!(!ids.is_empty());
        assert_eq!(ids.len(), v.split(',').count());
        let again = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        assert_eq!(parse_ids(&again), Some(ids));
    }
    let chars = v.chars().count();
    for (min, max) in [(1, 10), (0, 1024), (chars, chars)] {
        match p.req_text(key, min, max) {
            Ok(t) => assert!(t == v && (min..=max).contains(&chars)),
            Err(_) => assert!(!(min..=max).contains(&chars)),
        }
        assert_eq!(p.opt_text(key, max), (chars <= max).then_some(v));
    }
}

fuzz_target!(|data: &[u8]| {
    let ([mode], rest) = params::<1>(data);
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (query, body) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
    let json = mode & 1 == 1;

    let mut p = Params::default();
    p.add_urlencoded(query);
    if json {
        p.add_json(body);
    } else {
        p.add_urlencoded(body);
    }

    let mut keys: Vec<String> = ["ids", "id", "name", "memo", "maxPerPage", "time", ""]
        .map(String::from)
        .to_vec();
    let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(query).ok();
    if let Some(pairs) = &pairs {
        for (k, v) in pairs {
            let first = pairs
                .iter()
                .find(|(k2, _)| k2 == k)
                .map(|(_, v)| v.as_str());
            assert_eq!(p.raw(k), first, "query key {k:?} (value {v:?})");
            keys.push(k.clone());
        }
        let encoded = serde_urlencoded::to_string(pairs).expect("pairs of strings encode");
        let mut again = Params::default();
        again.add_urlencoded(encoded.as_bytes());
        for (k, _) in pairs {
            assert_eq!(
                again.raw(k),
                p.raw(k),
                "{k:?} after re-encoding as {encoded:?}"
            );
        }
    }
    let query_has = |k: &str| {
        pairs
            .as_ref()
            .is_some_and(|ps| ps.iter().any(|(q, _)| q == k))
    };

    if json && !body.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(obj)) => {
                for (k, v) in &obj {
                    if query_has(k) {
                        continue;
                    }
                    let want = match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(i64::from(*b).to_string()),
                        _ => None,
                    };
                    assert_eq!(p.raw(k), want.as_deref(), "JSON key {k:?}");
                    keys.push(k.clone());
                }
                if pairs.is_some() {
                    assert!(p.check().is_ok());
                }
            }
            _ => assert!(p.check().is_err(), "a body that is no JSON object"),
        }
    }
    for k in &keys {
        check_value(&p, k);
    }
});
