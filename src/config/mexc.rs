//! The MEXC settings: where the exchange is, how long a request may take,
//! the `recvWindow` signed requests carry, and where paper fills get their
//! prices. Plain values: the application builds the client from them.

use std::time::Duration;

use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};

use super::env::Env;
use super::redact::redact_url;
use crate::domain::{normalise_symbol, parse_amount};

/// How the client reaches MEXC, and the gates and limits of live trading.
#[derive(Debug, Clone)]
pub struct MexcSettings {
    /// `MEXC_BASE_URL`: https, or http to a loopback address (a local fake).
    pub base_url: String,
    /// `MEXC_TIMEOUT_MS`: bounds connecting and each whole request.
    pub timeout: Duration,
    /// `MEXC_RECV_WINDOW_MS`: MEXC refuses 60 000 and more.
    pub recv_window_ms: u64,
    /// `MEXC_API_KEY` (or `_FILE`).
    pub api_key: Option<SecretString>,
    /// `MEXC_API_SECRET` (or `_FILE`).
    pub api_secret: Option<SecretString>,
    /// `CONFIRM_LIVE_TRADING`: the second key, beside `DRY_RUN=false`.
    pub confirm_live_trading: bool,
    /// `MEXC_MAX_ORDERS_PER_SEC`: across the fleet (MEXC allows 12).
    pub max_orders_per_sec: u32,
    /// `LIVE_ORDER_TTL_SECS`: an open order older than this is cancelled.
    pub order_ttl: Duration,
    /// `LIVE_RESOLVE_DEADLINE_SECS`: an order whose outcome is still not
    /// known after this is UNKNOWN (an operator alert).
    pub resolve_deadline: Duration,
    /// `SYMBOL_ALLOWLIST`: normalised symbols live orders may trade; empty:
    /// any the exchange lists.
    pub symbol_allowlist: Vec<String>,
    /// `MAX_ORDER_NOTIONAL`: the largest quantity × price sent.
    pub max_order_notional: Option<Decimal>,
    /// `LIVE_CLIENT_ID_NAMESPACE`: part of every client order id, so the ids
    /// of one deployment never meet another's (or an earlier database's).
    pub client_id_namespace: String,
    /// `LIVE_LEASE_SECS`: how long a replica's claim on an order in flight
    /// lasts unrenewed; after it another replica takes over (lookup first).
    pub lease: Duration,
    /// `LIVE_ABSENCE_WINDOW_SECS`: beyond `timestamp + recvWindow`, how
    /// long an order MEXC denies stays in flight before searches of the
    /// account's orders and trades may report it not placed.
    pub absence_window: Duration,
    /// `LIVE_RESEND_NOT_PLACED`: send an order reported not placed again.
    pub resend_not_placed: bool,
    /// `LIVE_WATCH_NOT_PLACED_SECS`: how long an order reported not placed
    /// is still looked for.
    pub watch_not_placed: Duration,
    /// `LIVE_MAX_SEND_ATTEMPTS`: requests for one order at most.
    pub max_send_attempts: u32,
    /// `MEXC_RATE_LIMIT_KEY`: names the request budget shared by every
    /// deployment of one MEXC account; unset, a digest of the API key.
    pub rate_limit_key: Option<String>,
    /// `LIVE_RECONCILE_INTERVAL_MS`: how often each replica looks for
    /// orders in flight that are due for a lookup.
    pub reconcile_interval: Duration,
    /// `CANCEL_OPEN_ORDERS_ON_HALT`: a trading halt also cancels the open
    /// exchange orders it covers.
    pub cancel_open_orders_on_halt: bool,
    /// `MEXC_WS_URL`: the user data stream's websocket; `None` when the
    /// stream is off (`LIVE_USER_STREAM=false`, or a custom
    /// `MEXC_BASE_URL` without a `MEXC_WS_URL` to match).
    pub ws_url: Option<String>,
    /// `LIVE_STREAM_POLL_SECS`: while the stream is healthy, how often an
    /// order MEXC has described is still looked up.
    pub stream_poll: Duration,
    /// `LIVE_STREAM_SILENCE_SECS`: nothing on the stream for this long (not
    /// even the answer to a `PING`, sent after half of it) and the
    /// connection is replaced.
    pub stream_silence: Duration,
    /// `LIVE_EXCHANGE_CHECK_SECS`: how often one replica compares MEXC's
    /// orders with ours.
    pub exchange_check: Duration,
    /// `LIVE_CANCEL_ORPHANS`: cancel an open exchange order with this
    /// service's client id form and no row (off: alert only).
    pub cancel_orphans: bool,
}

/// MEXC's endpoints, when `MEXC_BASE_URL` and `MEXC_WS_URL` are not set.
pub const DEFAULT_BASE_URL: &str = "https://api.mexc.com";
pub const DEFAULT_WS_URL: &str = "wss://wbs-api.mexc.com/ws";

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
        api_key: env.secret("MEXC_API_KEY").map(|(key, _)| key),
        api_secret: env.secret("MEXC_API_SECRET").map(|(secret, _)| secret),
        confirm_live_trading: env.flag("CONFIRM_LIVE_TRADING", false),
        max_orders_per_sec: env.ranged("MEXC_MAX_ORDERS_PER_SEC", 10, 1..=12),
        order_ttl: Duration::from_secs(env.ranged("LIVE_ORDER_TTL_SECS", 300, 1..=86_400)),
        resolve_deadline: Duration::from_secs(env.ranged(
            "LIVE_RESOLVE_DEADLINE_SECS",
            120,
            1..=86_400,
        )),
        symbol_allowlist: symbol_allowlist(env),
        max_order_notional: max_order_notional(env),
        client_id_namespace: env.text("LIVE_CLIENT_ID_NAMESPACE", "execution-service"),
        lease: Duration::from_secs(env.ranged("LIVE_LEASE_SECS", 30, 5..=3_600)),
        absence_window: absence_window(env),
        resend_not_placed: env.flag("LIVE_RESEND_NOT_PLACED", false),
        watch_not_placed: Duration::from_secs(env.ranged(
            "LIVE_WATCH_NOT_PLACED_SECS",
            86_400,
            0..=7 * 86_400,
        )),
        max_send_attempts: env.ranged("LIVE_MAX_SEND_ATTEMPTS", 2, 1..=5),
        rate_limit_key: env
            .var("MEXC_RATE_LIMIT_KEY")
            .map(|key| key.trim().to_owned())
            .filter(|key| !key.is_empty()),
        reconcile_interval: Duration::from_millis(env.ranged(
            "LIVE_RECONCILE_INTERVAL_MS",
            250,
            10..=60_000,
        )),
        cancel_open_orders_on_halt: env.flag("CANCEL_OPEN_ORDERS_ON_HALT", true),
        ws_url: ws_url(env),
        stream_poll: Duration::from_secs(env.ranged("LIVE_STREAM_POLL_SECS", 60, 1..=3_600)),
        stream_silence: Duration::from_secs(env.ranged("LIVE_STREAM_SILENCE_SECS", 45, 2..=300)),
        exchange_check: Duration::from_secs(env.ranged(
            "LIVE_EXCHANGE_CHECK_SECS",
            300,
            5..=86_400,
        )),
        cancel_orphans: env.flag("LIVE_CANCEL_ORPHANS", false),
    }
}

/// `MEXC_WS_URL` when the user data stream is on (`LIVE_USER_STREAM`,
/// default true): wss (ws only to this machine), a path allowed. Unset, it
/// is MEXC's own, unless `MEXC_BASE_URL` names another exchange: a key
/// created there means nothing at MEXC's websocket, so the stream stays off
/// (said at start-up) rather than failing forever.
fn ws_url(env: &mut Env<'_>) -> Option<String> {
    const NAME: &str = "MEXC_WS_URL";
    const EXPECTED: &str =
        "a wss:// URL without query or credentials (ws:// only to a loopback address)";
    let on = env.flag("LIVE_USER_STREAM", true);
    let given = env
        .var(NAME)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let custom_base = env
        .var("MEXC_BASE_URL")
        .is_some_and(|base| base.trim().trim_end_matches('/') != DEFAULT_BASE_URL);
    let text = match given {
        Some(text) => text,
        None if custom_base => return None,
        None => DEFAULT_WS_URL.to_owned(),
    };
    let problem = match url::Url::parse(&text) {
        Err(err) => Some(err.to_string()),
        Ok(url) => ws_url_problem(&url),
    };
    if let Some(problem) = problem {
        env.invalid(NAME, redact_url(&text), &format!("{EXPECTED} ({problem})"));
    }
    on.then_some(text)
}

fn ws_url_problem(url: &url::Url) -> Option<String> {
    let (secure, plain) = match url.scheme() {
        "wss" => (true, false),
        "ws" => (false, true),
        other => return Some(format!("the scheme is {other:?}")),
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Some("no host".to_owned()),
    };
    if plain && !secure && !loopback {
        return Some("plain ws leaves this machine".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("it carries credentials".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Some("it has a query or fragment (the listenKey is added)".to_owned());
    }
    if url.port() == Some(0) {
        return Some("port 0".to_owned());
    }
    None
}

/// `LIVE_ABSENCE_WINDOW_SECS`. `LIVE_ABSENCE_GRACE_SECS`, its
/// predecessor, counted denials toward proving absence, which no number of
/// them does: a deployment still setting it is stopped, not reinterpreted.
fn absence_window(env: &mut Env<'_>) -> Duration {
    if let Some(old) = env.var("LIVE_ABSENCE_GRACE_SECS") {
        env.invalid(
            "LIVE_ABSENCE_GRACE_SECS",
            old,
            "unset: it is replaced by LIVE_ABSENCE_WINDOW_SECS (searches of the order list and trades past that window, not counted denials, report an order not placed)",
        );
    }
    Duration::from_secs(env.ranged("LIVE_ABSENCE_WINDOW_SECS", 90, 1..=3_600))
}

/// What real orders need beyond `TRADING_MODE=live`: `DRY_RUN=false`,
/// `CONFIRM_LIVE_TRADING=true` and both credentials. The missing ones, when
/// real orders are asked for; none when they are not (dry run or another
/// mode).
pub fn missing_for_real_orders(
    mexc: &MexcSettings,
    live: bool,
    dry_run: bool,
) -> Vec<&'static str> {
    if !live || dry_run {
        return Vec::new();
    }
    let mut missing = Vec::new();
    if !mexc.confirm_live_trading {
        missing.push("CONFIRM_LIVE_TRADING=true");
    }
    let set = |secret: &Option<SecretString>| {
        secret
            .as_ref()
            .is_some_and(|s| !s.expose_secret().trim().is_empty())
    };
    if !set(&mexc.api_key) {
        missing.push("MEXC_API_KEY (or MEXC_API_KEY_FILE)");
    }
    if !set(&mexc.api_secret) {
        missing.push("MEXC_API_SECRET (or MEXC_API_SECRET_FILE)");
    }
    missing
}

/// `SYMBOL_ALLOWLIST=BTCUSDT,ETH/USDT`, normalised.
fn symbol_allowlist(env: &mut Env<'_>) -> Vec<String> {
    let text = env.text("SYMBOL_ALLOWLIST", "");
    let mut symbols = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let symbol = normalise_symbol(item);
        if symbol.is_empty() || !symbol.chars().any(|c| c.is_ascii_alphabetic()) {
            env.invalid("SYMBOL_ALLOWLIST", item, "symbols separated by commas");
        } else {
            symbols.push(symbol);
        }
    }
    symbols
}

/// `MAX_ORDER_NOTIONAL`, a positive exact decimal, when set.
fn max_order_notional(env: &mut Env<'_>) -> Option<Decimal> {
    let text = env
        .var("MAX_ORDER_NOTIONAL")
        .filter(|v| !v.trim().is_empty())?;
    match parse_amount(&text) {
        Ok(value) if value > Decimal::ZERO => Some(value),
        _ => {
            env.invalid(
                "MAX_ORDER_NOTIONAL",
                &text,
                "a positive decimal (the quote currency's amount)",
            );
            None
        }
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
    let text = env.text(NAME, DEFAULT_BASE_URL).trim().to_owned();
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
