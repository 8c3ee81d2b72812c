//! What can go wrong in a call to MEXC, as the kinds a caller branches on,
//! and the pure function that sorts an answer into them.
//!
//! The one distinction that matters with real money: `Rejected`,
//! `UnknownOrder`, `Signature`, `TimeOutsideWindow` and `RateLimited` are
//! answers MEXC gave *instead* of applying the request; `Unknown` means the
//! request may or may not have been applied (a timeout, a reset connection,
//! a 5xx, an answer that cannot be read, a code this client does not know),
//! and only a lookup can tell. Nothing here holds or prints a secret.

use std::time::Duration;

/// How long to wait after a 429 or 418 that carried no usable
/// `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MexcError {
    /// MEXC refused the order for a business reason; nothing was placed.
    #[error("MEXC rejected the request: {} (code {code}: {msg})", kind.meaning())]
    Rejected {
        code: i64,
        msg: String,
        kind: RejectKind,
    },
    /// MEXC knows no such order (`-2011`, `-2013`). Right after an order is
    /// accepted MEXC may answer this for a few seconds: it is not proof
    /// that the order does not exist.
    #[error("MEXC knows no such order (code {code}: {msg})")]
    UnknownOrder { code: i64, msg: String },
    /// The signature, the key or its permissions were refused, or the
    /// address is blocked: every further signed request will fail the same
    /// way until an operator acts, so the caller stops sending (a circuit
    /// breaker) instead of failing order after order.
    #[error("MEXC refused the credentials (code {code}: {msg})")]
    Signature { code: i64, msg: String },
    /// The request's timestamp fell outside `recvWindow` (`700003`); the
    /// clock has been measured again, a retry may pass.
    #[error("MEXC found the request's timestamp outside recvWindow: {msg}")]
    TimeOutsideWindow { msg: String },
    /// Too many requests (429) or an address ban (418): send nothing more
    /// before `retry_after` has passed.
    #[error("MEXC rate limit: retry after {} ms{}", retry_after.as_millis(), if *banned { " (address banned)" } else { "" })]
    RateLimited { retry_after: Duration, banned: bool },
    /// A signed endpoint was called without an API key and secret.
    #[error("MEXC_API_KEY and MEXC_API_SECRET are needed for this request")]
    NoCredentials,
    /// MEXC's clock was never measured and cannot be now: the request was
    /// not sent.
    #[error("MEXC's clock cannot be measured, nothing was sent: {reason}")]
    ClockUnavailable { reason: String },
    /// The request may or may not have been applied: look it up.
    #[error("MEXC outcome unknown: {reason}")]
    Unknown { reason: String },
}

impl MexcError {
    /// Whether the request was certainly not applied by MEXC.
    pub fn certainly_not_applied(&self) -> bool {
        !matches!(self, MexcError::Unknown { .. })
    }

    /// Whether this stops all signed requests until an operator acts.
    pub fn is_credentials_problem(&self) -> bool {
        matches!(self, MexcError::Signature { .. } | MexcError::NoCredentials)
    }

    /// MEXC's code, when it gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            MexcError::Rejected { code, .. }
            | MexcError::UnknownOrder { code, .. }
            | MexcError::Signature { code, .. } => Some(*code),
            MexcError::TimeOutsideWindow { .. } => Some(700_003),
            _ => None,
        }
    }

    pub(super) fn unknown(reason: impl Into<String>) -> Self {
        MexcError::Unknown {
            reason: reason.into(),
        }
    }
}

/// Why MEXC rejected an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// 10101
    InsufficientBalance,
    /// 30002
    BelowMinimumAmount,
    /// 30003
    AboveMaximumAmount,
    /// 30004
    InsufficientPosition,
    /// 30005
    Oversold,
    /// 30010
    NoValidPrice,
    /// 30016, 30000
    TradingDisabled,
    /// 30019, 30018
    MarketOrdersDisabled,
    /// 30020, 70011
    NoSymbolPermission,
    /// 30027, 30032
    PositionLimitReached,
    /// 30028
    SellingSuspended,
    /// 30029
    OrderLimitReached,
    /// 30001
    SideNotAllowed,
    /// 30041
    OrderTypeNotAllowed,
    /// 10007, 30014, 30021, 730001
    SymbolNotSupported,
    /// 10096
    TooManyDecimals,
    /// 10095, 10097, 10102
    InvalidAmount,
    /// 10098
    RiskControl,
    /// 700004, 33333, 44444
    InvalidParameter,
    /// 30051: named by the issue that asked for live trading; MEXC's spot
    /// v3 code table does not list it.
    Refused,
}

impl RejectKind {
    /// A short meaning, for results and logs.
    pub fn meaning(self) -> &'static str {
        match self {
            RejectKind::InsufficientBalance => "insufficient balance",
            RejectKind::BelowMinimumAmount => "below the symbol's minimum order amount",
            RejectKind::AboveMaximumAmount => "above the symbol's maximum order amount",
            RejectKind::InsufficientPosition => "insufficient position",
            RejectKind::Oversold => "oversold: more than is held",
            RejectKind::NoValidPrice => "no valid trade price",
            RejectKind::TradingDisabled => "trading disabled for the symbol",
            RejectKind::MarketOrdersDisabled => "market orders disabled for the symbol",
            RejectKind::NoSymbolPermission => "no permission to trade the symbol",
            RejectKind::PositionLimitReached => "maximum position reached: buying suspended",
            RejectKind::SellingSuspended => "risk control: selling suspended",
            RejectKind::OrderLimitReached => "maximum number of open orders reached",
            RejectKind::SideNotAllowed => "this side is not allowed for the symbol now",
            RejectKind::OrderTypeNotAllowed => "order type not allowed for the symbol",
            RejectKind::SymbolNotSupported => "symbol not supported by the API",
            RejectKind::TooManyDecimals => "too many decimal places",
            RejectKind::InvalidAmount => "invalid amount",
            RejectKind::RiskControl => "refused by MEXC's risk control",
            RejectKind::InvalidParameter => "invalid or missing parameter",
            RejectKind::Refused => "order refused",
        }
    }
}

/// What a MEXC error code means for the caller; `None` for a code this
/// client does not know (its outcome is then unknown).
pub fn classify_code(code: i64, msg: &str) -> Option<MexcError> {
    let msg = msg.to_owned();
    let reject = |kind| MexcError::Rejected {
        code,
        msg: msg.clone(),
        kind,
    };
    Some(match code {
        -2011 | -2013 => MexcError::UnknownOrder { code, msg },
        // Signature, key, permission or address: nothing signed will pass.
        602 | 401 | 403 | 10072 | 700001 | 700002 | 700005..=700008 => {
            MexcError::Signature { code, msg }
        }
        700003 => MexcError::TimeOutsideWindow { msg },
        429 => MexcError::RateLimited {
            retry_after: DEFAULT_RETRY_AFTER,
            banned: false,
        },
        10101 => reject(RejectKind::InsufficientBalance),
        30002 => reject(RejectKind::BelowMinimumAmount),
        30003 => reject(RejectKind::AboveMaximumAmount),
        30004 => reject(RejectKind::InsufficientPosition),
        30005 => reject(RejectKind::Oversold),
        30010 => reject(RejectKind::NoValidPrice),
        30000 | 30016 => reject(RejectKind::TradingDisabled),
        30018 | 30019 => reject(RejectKind::MarketOrdersDisabled),
        30020 | 70011 => reject(RejectKind::NoSymbolPermission),
        30027 | 30032 => reject(RejectKind::PositionLimitReached),
        30028 => reject(RejectKind::SellingSuspended),
        30029 => reject(RejectKind::OrderLimitReached),
        30001 => reject(RejectKind::SideNotAllowed),
        30041 => reject(RejectKind::OrderTypeNotAllowed),
        10007 | 30014 | 30021 | 730001 => reject(RejectKind::SymbolNotSupported),
        10096 => reject(RejectKind::TooManyDecimals),
        10095 | 10097 | 10102 => reject(RejectKind::InvalidAmount),
        10098 => reject(RejectKind::RiskControl),
        700004 | 33333 | 44444 => reject(RejectKind::InvalidParameter),
        30051 => reject(RejectKind::Refused),
        _ => return None,
    })
}

/// Sorts a failed answer: its HTTP status, its `Retry-After` header and its
/// body. Never called for an answer that was read as success.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str) -> MexcError {
    match status {
        429 | 418 => {
            return MexcError::RateLimited {
                retry_after: parse_retry_after(retry_after),
                banned: status == 418,
            };
        }
        // The WAF blocked the address, or the key lacks access.
        401 | 403 => {
            let (code, msg) = api_error(body).unwrap_or((i64::from(status), snippet(body)));
            return MexcError::Signature { code, msg };
        }
        // MEXC: "It is important to NOT treat this as a failure operation;
        // the execution status is UNKNOWN and could have been a success."
        500..=599 => {
            return MexcError::unknown(format!("HTTP {status}: {}", snippet(body)));
        }
        _ => {}
    }
    match api_error(body) {
        Some((code, msg)) => classify_code(code, &msg).unwrap_or_else(|| {
            MexcError::unknown(format!("HTTP {status}, unmapped code {code}: {msg}"))
        }),
        None => MexcError::unknown(format!(
            "HTTP {status}: unreadable answer: {}",
            snippet(body)
        )),
    }
}

/// `{"code": .., "msg": ..}`, the shape of MEXC's errors (the code as a
/// number or as text).
pub(super) fn api_error(body: &str) -> Option<(i64, String)> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let code = match value.get("code")? {
        serde_json::Value::Number(n) => n.to_string().parse().ok()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let msg = value
        .get("msg")
        .or_else(|| value.get("message"))
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_owned();
    Some((code, msg))
}

/// `Retry-After` in whole seconds; anything else waits the default.
pub fn parse_retry_after(header: Option<&str>) -> Duration {
    header
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// The start of a body, for a message.
fn snippet(body: &str) -> String {
    const MAX: usize = 200;
    let trimmed = body.trim();
    match trimmed.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &trimmed[..end]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests;
