//! Request signing and client order ids: pure functions, no I/O.
//!
//! MEXC signs `totalParams`, the query string followed directly by the
//! request body (no `&` between them), with HMAC-SHA256 under the API
//! secret, as lowercase hex. The text signed must be byte for byte the text
//! sent, so parameters are encoded once, here, and sent as encoded.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Longest `newClientOrderId` this service sends.
pub const CLIENT_ORDER_ID_LEN: usize = 32;
/// What every client order id of this service starts with, so that an
/// operator recognises its orders among others on the account.
const CLIENT_ORDER_ID_PREFIX: &str = "es";

/// HMAC-SHA256 keyed with the API secret. Its state stands for the secret,
/// so it never prints.
#[derive(Clone)]
pub struct Signer(Hmac<Sha256>);

impl Signer {
    /// A signer for `secret` (HMAC takes a key of any length).
    pub fn new(secret: &str) -> Result<Self, hmac::digest::InvalidLength> {
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map(Signer)
    }

    /// The signature of `query` followed directly by `body`, lowercase hex.
    pub fn sign(&self, query: &str, body: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(query.as_bytes());
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

/// Parameters in the order they were added, URL-encoded once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(String);

impl Params {
    pub fn new() -> Self {
        Params::default()
    }

    /// Appends `name=value` (the value form-encoded).
    pub fn add(mut self, name: &str, value: impl AsRef<str>) -> Self {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(name);
        self.0.push('=');
        self.0.extend(url::form_urlencoded::byte_serialize(
            value.as_ref().as_bytes(),
        ));
        self
    }

    /// Appends `name=value` when there is a value.
    pub fn add_opt(self, name: &str, value: Option<impl AsRef<str>>) -> Self {
        match value {
            Some(value) => self.add(name, value),
            None => self,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `newClientOrderId` of an order: derived from the order id and the
/// deployment's namespace only, so every replica, every retry and every
/// restart sends the same id for the same order, while a database reset
/// that reuses order ids (under a new namespace) never matches an order of
/// the old one. `es` and 30 lowercase hex digits of SHA-256: alphanumeric,
/// 32 characters, 120 bits.
pub fn client_order_id(namespace: &str, order_id: &str) -> String {
    let mut hash = Sha256::new();
    // Lengths first, so no two (namespace, order id) pairs hash alike.
    hash.update((namespace.len() as u64).to_be_bytes());
    hash.update(namespace.as_bytes());
    hash.update((order_id.len() as u64).to_be_bytes());
    hash.update(order_id.as_bytes());
    let digest = hex::encode(hash.finalize());
    let digits = CLIENT_ORDER_ID_LEN - CLIENT_ORDER_ID_PREFIX.len();
    format!("{CLIENT_ORDER_ID_PREFIX}{}", &digest[..digits])
}

/// Whether a client order id has the form this service gives its orders
/// (of this deployment or another one sharing the account).
pub fn is_service_client_id(id: &str) -> bool {
    id.len() == CLIENT_ORDER_ID_LEN
        && id.starts_with(CLIENT_ORDER_ID_PREFIX)
        && id[CLIENT_ORDER_ID_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "45d0b3c26f2644f19bfb98b07741b2f5";
    fn sign(secret: &str, query: &str, body: &str) -> String {
        Signer::new(secret).unwrap().sign(query, body)
    }

    const PARAMS: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=11&recvWindow=5000&timestamp=1644489390087";

    #[test]
    fn signs_the_documented_example() {
        assert_eq!(
            sign(SECRET, PARAMS, ""),
            "fd3e4e8543c5188531eb7279d68ae7d26a573d0fc5ab0d18eb692451654d837a"
        );
        // The same text as a body, or split between query and body, signs alike.
        assert_eq!(sign(SECRET, "", PARAMS), sign(SECRET, PARAMS, ""));
        let (query, body) = PARAMS.split_at(30);
        assert_eq!(sign(SECRET, query, body), sign(SECRET, PARAMS, ""));
    }

    #[test]
    fn the_documented_mixed_example_has_no_ampersand_between_query_and_body() {
        assert_eq!(
            sign(
                SECRET,
                "symbol=BTCUSDT&side=BUY&type=LIMIT",
                "quantity=1&price=11&recvWindow=5000&timestamp=1644489390087"
            ),
            "d1a676610ceb39174c8039b3f548357994b2a34139a8addd33baadba65684592"
        );
    }

    #[test]
    fn params_keep_their_order_and_are_encoded_once() {
        let params = Params::new()
            .add("symbol", "BTCUSDT")
            .add("quantity", "0.001")
            .add_opt("price", None::<&str>)
            .add("note", "a,b c&d");
        assert_eq!(
            params.as_str(),
            "symbol=BTCUSDT&quantity=0.001&note=a%2Cb+c%26d"
        );
    }

    #[test]
    fn client_order_ids_are_short_alphanumeric_and_deterministic() {
        let id = client_order_id("prod-eu", "order-42");
        assert_eq!(id.len(), CLIENT_ORDER_ID_LEN);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        assert!(id.starts_with("es"));
        assert_eq!(id, client_order_id("prod-eu", "order-42"));
        assert_ne!(id, client_order_id("prod-eu", "order-43"));
        assert_ne!(id, client_order_id("staging", "order-42"));
        // The namespace and the order id cannot trade characters.
        assert_ne!(
            client_order_id("ab", "c"),
            client_order_id("a", "bc"),
            "boundaries between namespace and order id matter"
        );
        // Any order id, however long or exotic, gives a valid id.
        let long = client_order_id("", &"ü/x ".repeat(100));
        assert_eq!(long.len(), CLIENT_ORDER_ID_LEN);
        assert!(long.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn the_service_knows_its_own_client_ids_and_only_those() {
        assert!(is_service_client_id(&client_order_id("prod", "o-1")));
        for other in [
            "",
            "es",
            "esB9CA7B3C4517DADAA0911C3F877F2B",
            "xsb9ca7b3c4517dadaa0911c3f877f2b",
            "esb9ca7b3c4517dadaa0911c3f877f2",
            "esb9ca7b3c4517dadaa0911c3f877f2bb",
            "web_1736417034",
        ] {
            assert!(!is_service_client_id(other), "{other:?}");
        }
    }

    #[test]
    fn client_order_ids_are_stable_across_releases() {
        // Changing the derivation would orphan every order in flight.
        assert_eq!(
            client_order_id("ns", "ord-1"),
            "esb9ca7b3c4517dadaa0911c3f877f2b"
        );
    }
}
