//! The MEXC settings: where the exchange is, how long a request may take,
//! the `recvWindow` signed requests carry, and where paper fills get their
//! prices. Plain values: the application builds the client from them.

use std::time::Duration;

use super::env::Env;
use super::redact::redact_url;

/// How the client reaches MEXC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MexcSettings {
    /// `MEXC_BASE_URL`: https, or http to a loopback address (a local fake).
    pub base_url: String,
    /// `MEXC_TIMEOUT_MS`: bounds connecting and each whole request.
    pub timeout: Duration,
    /// `MEXC_RECV_WINDOW_MS`: MEXC refuses 60 000 and more.
    pub recv_window_ms: u64,
}

/// Where a paper fill of a MARKET order without a price gets its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperPriceSource {
    /// `PAPER_REFERENCE_PRICES` only: offline, deterministic.
    Reference,
    /// MEXC's public ticker, with the reference prices as the fallback.
    Mexc,
}

pub(super) fn mexc_settings(env: &mut Env<'_>) -> MexcSettings {
    MexcSettings {
        base_url: base_url(env),
        timeout: Duration::from_millis(env.ranged("MEXC_TIMEOUT_MS", 5_000, 100..=60_000)),
        recv_window_ms: env.ranged("MEXC_RECV_WINDOW_MS", 5_000, 1..=59_999),
    }
}

pub(super) fn paper_price_source(env: &mut Env<'_>) -> PaperPriceSource {
    match env
        .choice("PAPER_PRICE_SOURCE", "reference", &["reference", "mexc"])
        .as_str()
    {
        "mexc" => PaperPriceSource::Mexc,
        _ => PaperPriceSource::Reference,
    }
}

/// `MEXC_BASE_URL` without a trailing slash. The API key travels in a
/// header, so plain http is accepted only to this machine.
fn base_url(env: &mut Env<'_>) -> String {
    const NAME: &str = "MEXC_BASE_URL";
    const EXPECTED: &str =
        "an https:// URL without path, query or credentials (http:// only to a loopback address)";
    let text = env.text(NAME, "https://api.mexc.com").trim().to_owned();
    let problem = match url::Url::parse(&text) {
        Err(err) => Some(err.to_string()),
        Ok(url) => base_url_problem(&url),
    };
    if let Some(problem) = problem {
        env.invalid(NAME, redact_url(&text), &format!("{EXPECTED} ({problem})"));
    }
    text.trim_end_matches('/').to_owned()
}

fn base_url_problem(url: &url::Url) -> Option<String> {
    let loopback = match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Some("no host".to_owned()),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Some("plain http leaves this machine".to_owned()),
        other => return Some(format!("the scheme is {other:?}")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("it carries credentials".to_owned());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Some("it has a path, query or fragment".to_owned());
    }
    if url.port() == Some(0) {
        return Some("port 0".to_owned());
    }
    None
}
