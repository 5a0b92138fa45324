//! AWS Signature Version 4, computed by the host over the request exactly
//! as it goes on the wire. The guest never sees the secret key.

use hmac::{Hmac, Mac};
use http::HeaderValue;
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// What signing needs; borrowed from the app's credential.
pub struct Key<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
}

/// Sign `request`: add `x-amz-date`, `x-amz-content-sha256`, the session
/// token if any, and `Authorization`.
pub fn sign(request: &mut http::request::Parts, body: &[u8], key: &Key<'_>, now: SystemTime) {
    let (amz_date, date) = timestamps(now);
    let payload_hash = hex::encode(Sha256::digest(body));
    let h = &mut request.headers;
    h.insert(
        "x-amz-date",
        HeaderValue::from_str(&amz_date).expect("ascii date"),
    );
    h.insert(
        "x-amz-content-sha256",
        HeaderValue::from_str(&payload_hash).expect("hex"),
    );
    if let Some(token) = key.session_token
        && let Ok(v) = HeaderValue::from_str(token)
    {
        h.insert("x-amz-security-token", v);
    }
    if !h.contains_key(http::header::HOST)
        && let Some(host) = authority(&request.uri)
        && let Ok(v) = HeaderValue::from_str(&host)
    {
        h.insert(http::header::HOST, v);
    }
    let signature = signature(request, &payload_hash, key, &amz_date, &date);
    let value = format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
        key.access_key_id, key.region, key.service, signature.signed_headers, signature.signature
    );
    let mut v = HeaderValue::from_str(&value).expect("ascii authorization");
    v.set_sensitive(true);
    request.headers.insert(http::header::AUTHORIZATION, v);
}

/// A computed signature and the headers it covers.
pub struct Signature {
    /// `host;x-amz-date;...`
    pub signed_headers: String,
    /// Hex HMAC.
    pub signature: String,
}

/// The signature of `request` as it stands (headers already set).
pub fn signature(
    request: &http::request::Parts,
    payload_hash: &str,
    key: &Key<'_>,
    amz_date: &str,
    date: &str,
) -> Signature {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n == "host" || n == "content-type" || n.starts_with("x-amz-")
        })
        .map(|(name, value)| {
            let v = String::from_utf8_lossy(value.as_bytes());
            (
                name.as_str().to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.sort();
    let mut canonical_headers = String::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, (name, value)) in headers.iter().enumerate() {
        // Repeated headers are joined with commas, in order.
        if i > 0 && headers[i - 1].0 == *name {
            canonical_headers.pop();
            canonical_headers.push(',');
            canonical_headers.push_str(value);
            canonical_headers.push('\n');
            continue;
        }
        canonical_headers.push_str(&format!("{name}:{value}\n"));
        names.push(name);
    }
    let signed_headers = names.join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method.as_str(),
        canonical_path(request.uri.path()),
        canonical_query(request.uri.query().unwrap_or("")),
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let scope = format!("{date}/{}/{}/aws4_request", key.region, key.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", key.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, key.region.as_bytes());
    let k_service = hmac(&k_region, key.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    Signature {
        signed_headers,
        signature: hex::encode(hmac(&k_signing, string_to_sign.as_bytes())),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn authority(uri: &http::Uri) -> Option<String> {
    uri.authority().map(|a| a.as_str().to_string())
}

/// `YYYYMMDDTHHMMSSZ` and `YYYYMMDD` for `now`.
pub fn timestamps(now: SystemTime) -> (String, String) {
    let t = time::OffsetDateTime::from(now);
    let date = format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
    let amz = format!("{date}T{:02}{:02}{:02}Z", t.hour(), t.minute(), t.second());
    (amz, date)
}

/// RFC 3986 encoding with AWS's unreserved set.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Non-S3 services encode each path segment of the (already encoded) path
/// once more.
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

fn canonical_query(query: &str) -> String {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&decode(k)), uri_encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    // AWS's published SigV4 test suite, case `get-vanilla`: GET / on
    // example.amazonaws.com at 20150830T123600Z, region us-east-1, service
    // `service`, signed headers host;x-amz-date.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let key = Key {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: None,
            region: "us-east-1",
            service: "service",
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let (amz, date) = timestamps(now);
        assert_eq!(amz, "20150830T123600Z");
        let (mut parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        parts
            .headers
            .insert("host", "example.amazonaws.com".parse().unwrap());
        parts.headers.insert("x-amz-date", amz.parse().unwrap());
        let empty = hex::encode(Sha256::digest(b""));
        let sig = signature(&parts, &empty, &key, &amz, &date);
        assert_eq!(sig.signed_headers, "host;x-amz-date");
        assert_eq!(
            sig.signature,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        // Case `get-vanilla-query-order-key-case`: the query is sorted first.
        let (mut parts, ()) = http::Request::get("/?Param2=value2&Param1=value1")
            .body(())
            .unwrap()
            .into_parts();
        parts
            .headers
            .insert("host", "example.amazonaws.com".parse().unwrap());
        parts.headers.insert("x-amz-date", amz.parse().unwrap());
        let sig = signature(&parts, &empty, &key, &amz, &date);
        assert_eq!(
            sig.signature,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn query_is_sorted_and_encoded() {
        assert_eq!(canonical_query("b=2&a=x+y&c"), "a=x%20y&b=2&c=");
        assert_eq!(canonical_path("/a b/c"), "/a%20b/c");
    }
}
