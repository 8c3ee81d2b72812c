//! The transport under the client: its TLS set-up, and how a request that
//! got no complete answer is described.

use std::sync::Arc;

use super::client::BuildError;
use super::error::MexcError;

/// rustls with the ring provider and the Mozilla roots built in, so TLS
/// works in a container without a certificate store.
pub(super) fn tls_config() -> Result<rustls::ClientConfig, BuildError> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| BuildError(format!("TLS: {err}")))?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A request that got no complete answer: it may have been applied.
pub(super) fn transport_error(err: reqwest::Error) -> MexcError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    let mut reason = what.to_owned();
    let err = err.without_url();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    MexcError::unknown(reason)
}
