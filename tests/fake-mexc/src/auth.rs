//! Signed requests checked as MEXC documents them: the API key, then the
//! HMAC-SHA256 signature over totalParams (the query string followed by
//! the body, each without its `signature`), then `recvWindow` (below
//! 60 000) and the timestamp
//! (`timestamp < serverTime + 1000 && serverTime - timestamp <= recvWindow`).

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::http::{Reply, Request};
use super::{API_KEY, API_SECRET};

/// The key, the signature over totalParams and the timestamp, in the
/// order and with the codes MEXC documents.
pub fn authenticate(
    request: &Request,
    params: &HashMap<String, String>,
    server: i64,
) -> Result<(), Reply> {
    match request.headers.get("x-mexc-apikey") {
        None => return Err(Reply::error(400, 400, "api key required")),
        Some(key) if key != API_KEY => {
            return Err(Reply::error(400, 10072, "invalid access key"));
        }
        Some(_) => {}
    }
    let (query, query_signature) = without_signature(&request.query);
    let (body, body_signature) = without_signature(&request.body);
    let Some(signature) = query_signature.or(body_signature) else {
        return Err(Reply::error(
            400,
            700002,
            "Signature for this request is not valid.",
        ));
    };
    let expected = signature_of(&query, &body);
    if signature != expected {
        return Err(Reply::error(
            400,
            700002,
            "Signature for this request is not valid.",
        ));
    }
    let recv_window: i64 = match params.get("recvWindow") {
        None => 5_000,
        Some(text) => text
            .parse()
            .map_err(|_| Reply::error(400, 33333, "param is error"))?,
    };
    if recv_window >= 60_000 {
        return Err(Reply::error(400, 700005, "recvWindow must less than 60000"));
    }
    let Some(timestamp) = params.get("timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return Err(Reply::error(400, 44444, "param cannot be null"));
    };
    if !(timestamp < server + 1_000 && server - timestamp <= recv_window) {
        return Err(Reply::error(
            400,
            700003,
            "Timestamp for this request is outside of the recvWindow.",
        ));
    }
    Ok(())
}

/// Every parameter of the query string and the body (the query wins).
pub fn params(request: &Request) -> HashMap<String, String> {
    let mut params: HashMap<String, String> = url::form_urlencoded::parse(request.body.as_bytes())
        .into_owned()
        .collect();
    params.extend(url::form_urlencoded::parse(request.query.as_bytes()).into_owned());
    params
}

/// `text` without its `signature=` pair, and the signature.
fn without_signature(text: &str) -> (String, Option<String>) {
    let mut signature = None;
    let rest: Vec<&str> = text
        .split('&')
        .filter(|pair| match pair.strip_prefix("signature=") {
            Some(value) => {
                signature = Some(value.to_owned());
                false
            }
            None => true,
        })
        .collect();
    (rest.join("&"), signature)
}

/// MEXC's signature: HMAC-SHA256 keyed with the secret over totalParams
/// (the query string followed directly by the body), lowercase hex.
pub fn signature_of(query: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(API_SECRET.as_bytes()).expect("any key length");
    mac.update(query.as_bytes());
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}
