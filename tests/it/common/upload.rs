//! Upload helpers shared by the upload test files: multipart bodies, test
//! payloads, and the three upload calls (spec §6.14–6.16).

use super::{data, Api};
use serde_json::{json, Value};
use std::io::Write;

pub const BOUNDARY: &str = "isyncTestBoundary7MA4YWxkTrZu0gW";

/// A multipart body: (field name, filename, bytes) per part.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, file, bytes) in parts {
        write!(
            b,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\""
        )
        .unwrap();
        if let Some(f) = file {
            write!(b, "; filename=\"{f}\"").unwrap();
        }
        b.extend_from_slice(b"\r\nContent-Type: application/octet-stream\r\n\r\n");
        b.extend_from_slice(bytes);
        b.extend_from_slice(b"\r\n");
    }
    write!(b, "--{BOUNDARY}--\r\n").unwrap();
    b
}

/// `n` bytes of a pattern made from `seed` (xorshift).
pub fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The id of the first root catalog `api` sees.
pub async fn first_root(api: &Api) -> i64 {
    super::id(&api.catalogs("-1").await[0])
}

/// `uploadFileInfo.icc` with `params` (cid, name, size, type, ext…); the
/// raw reply.
pub async fn announce(api: &Api, params: Value) -> Value {
    api.post_form("/uploadFileInfo.icc", params).await
}

/// `uploadFile.icc` with `query` and one `origin` part; the raw reply.
pub async fn send_origin(api: &Api, query: Value, bytes: &[u8]) -> Value {
    send_parts(api, query, &[("origin", Some("origin"), bytes)]).await
}

/// `uploadFile.icc` with `query` and `parts`; the raw reply (HTTP 200).
pub async fn send_parts(api: &Api, query: Value, parts: &[(&str, Option<&str>, &[u8])]) -> Value {
    let r = api
        .http
        .post(api.url("/uploadFile.icc"))
        .query(&query)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart(parts))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// `uploadingInfo.icc`: the pending files.
pub async fn uploading(api: &Api) -> Vec<Value> {
    let v = api.get_json("/uploadingInfo.icc", json!({})).await;
    data(&v).as_array().unwrap().clone()
}

/// The stored origin size `uploadingInfo.icc` reports for `id` (None when
/// it is not pending).
pub async fn stored_origin(api: &Api, id: i64) -> Option<i64> {
    uploading(api)
        .await
        .iter()
        .find(|f| f["id"] == id)
        .map(|f| f["uploadingOriginSize"].as_i64().unwrap())
}
