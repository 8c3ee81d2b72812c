//! When an order says it was issued: unix seconds, unix milliseconds or
//! RFC 3339, and only inside a fixed window.
//!
//! The invariant: every timestamp an order carries lies in
//! [2009-01-01T00:00:00Z, 2100-01-01T00:00:00Z). Inside that window seconds
//! (1 230 768 000 ..< 4 102 444 800) and milliseconds (1 000 times those) do
//! not overlap, so the unit of a number is never a guess; any other number
//! (microseconds, nanoseconds, negative or tiny values) is out of range and
//! rejected, never rescaled into a plausible date.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;

/// The first instant an order may carry: 2009-01-01T00:00:00Z.
pub const EARLIEST_TIMESTAMP_SECS: i64 = 1_230_768_000;
/// The first instant after the window: 2100-01-01T00:00:00Z.
pub const END_TIMESTAMP_SECS: i64 = 4_102_444_800;

/// Reads a timestamp as the contract allows it, or says why it cannot.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    // A number by JSON's grammar, however large, is never a date.
    let numeric =
        serde_json::from_str::<serde_json::Number>(text).is_ok() || text.parse::<Decimal>().is_ok();
    let millis = match numeric.then(|| read_number(text)) {
        Some(number) => number.and_then(number_millis).ok_or_else(|| {
            let shown: String = text.chars().take(40).collect();
            format!(
                "timestamp {shown} is out of range: expected unix seconds or milliseconds from 2009-01-01 to 2100-01-01"
            )
        })?,
        None => DateTime::parse_from_rfc3339(text)
            .map_err(|_| {
                "timestamp is not unix seconds, unix milliseconds or ISO-8601".to_owned()
            })?
            .timestamp_millis(),
    };
    let window = EARLIEST_TIMESTAMP_SECS * 1_000..END_TIMESTAMP_SECS * 1_000;
    if !window.contains(&millis) {
        return Err(format!(
            "timestamp {text} is out of range: expected a time from 2009-01-01 to 2100-01-01"
        ));
    }
    Utc.timestamp_millis_opt(millis)
        .single()
        .ok_or_else(|| format!("timestamp {text} is out of range"))
}

/// A number in plain or scientific notation; `None` when it has no decimal
/// value (too many digits, or an exponent past what a decimal holds).
fn read_number(text: &str) -> Option<Decimal> {
    text.parse::<Decimal>()
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
}

/// Milliseconds of a number that is seconds or milliseconds in the window.
fn number_millis(number: Decimal) -> Option<i64> {
    let (earliest, end) = (
        Decimal::from(EARLIEST_TIMESTAMP_SECS),
        Decimal::from(END_TIMESTAMP_SECS),
    );
    let thousand = Decimal::ONE_THOUSAND;
    let millis = if number >= earliest && number < end {
        number.checked_mul(thousand)?
    } else if number >= earliest * thousand && number < end * thousand {
        number
    } else {
        return None;
    };
    i64::try_from(millis.trunc()).ok()
}

/// How far `issued_at` lies ahead of `now`, when more than `tolerance`: a
/// reason to reject an order stamped in the future.
pub fn issued_in_future(
    issued_at: DateTime<Utc>,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Option<String> {
    let ahead = issued_at - now;
    (ahead > tolerance).then(|| {
        format!(
            "timestamp is {} s in the future, more than the {} s allowed",
            ahead.num_seconds(),
            tolerance.num_seconds()
        )
    })
}

/// Why an order issued at `issued_at` is too old to execute at `now`
/// (`ORDER_MAX_AGE_SECS`): the one staleness rule, for a new order and for
/// a live order about to be sent.
pub fn stale_reason(
    issued_at: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Option<String> {
    let age = now - issued_at;
    (age > max_age).then(|| {
        format!(
            "stale: issued {} s ago, more than ORDER_MAX_AGE_SECS={}",
            age.num_seconds(),
            max_age.num_seconds()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_stale_only_past_its_maximum_age() {
        let now = Utc::now();
        let max = Duration::seconds(30);
        assert_eq!(stale_reason(now - Duration::seconds(30), now, max), None);
        let reason = stale_reason(now - Duration::seconds(31), now, max).unwrap();
        assert!(
            reason.contains("31 s ago") && reason.contains("=30"),
            "{reason}"
        );
    }

    fn millis(text: &str) -> Result<i64, String> {
        parse_timestamp(text).map(|t| t.timestamp_millis())
    }

    #[test]
    fn seconds_milliseconds_and_rfc3339_inside_the_window_are_read() {
        assert_eq!(millis("1764124800"), Ok(1_764_124_800_000));
        assert_eq!(millis("1764124800.5"), Ok(1_764_124_800_500));
        assert_eq!(millis("1764124800123"), Ok(1_764_124_800_123));
        assert_eq!(millis("2025-11-26T02:40:00Z"), Ok(1_764_124_800_000));
        assert_eq!(millis("1230768000"), Ok(1_230_768_000_000));
        assert_eq!(millis("4102444799999"), Ok(4_102_444_799_999));
    }

    #[test]
    fn numbers_outside_the_window_are_out_of_range_not_rescaled() {
        for text in [
            "1732620000000000",
            "1732620000000000000",
            "-1732620000",
            "-99999999999999999999",
            "0",
            "86400",
            "1230767999",
            "4102444800",
            "4102444800000",
            "1e300",
        ] {
            let reason = millis(text).expect_err(text);
            assert!(reason.contains("out of range"), "{text}: {reason}");
        }
    }

    #[test]
    fn dates_outside_the_window_are_out_of_range() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2008-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            let reason = millis(text).expect_err(text);
            assert!(reason.contains("out of range"), "{text}: {reason}");
        }
        for text in ["yesterday", "--1", "1e", ""] {
            assert!(
                millis(text).is_err_and(|r| r.contains("ISO-8601")),
                "{text}"
            );
        }
    }

    #[test]
    fn the_future_is_measured_against_a_tolerance() {
        let now = Utc.timestamp_opt(1_764_124_800, 0).unwrap();
        let later = now + Duration::seconds(90);
        assert_eq!(issued_in_future(later, now, Duration::seconds(120)), None);
        let reason = issued_in_future(later, now, Duration::seconds(30));
        assert_eq!(
            reason.as_deref(),
            Some("timestamp is 90 s in the future, more than the 30 s allowed")
        );
    }
}
