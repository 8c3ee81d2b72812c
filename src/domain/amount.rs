//! Exact decimal amounts: quantities, prices and fees as `DECIMAL(20,8)`.
//!
//! Amounts are parsed from their text, never through a float, and a value the
//! column cannot hold exactly (more than 8 decimal places, more than 12
//! integer digits) is an error rather than something rounded to fit. What a
//! fill derives (price, notional, fee) is rounded to 8 places and must then
//! fit the same columns: [`fill_amounts`] is the one place that says so.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places the amount columns keep.
pub const SCALE: u32 = 8;
/// Integer digits a `DECIMAL(20,8)` column holds.
const INTEGER_DIGITS: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("is not a decimal number")]
    NotANumber,
    #[error("has more than {SCALE} decimal places")]
    TooPrecise,
    #[error("is too large (at most {INTEGER_DIGITS} integer digits)")]
    TooLarge,
}

/// Parses a decimal literal (`0.001`, `-1`, `1e-3`) exactly.
///
/// The grammar, after trimming whitespace, is
/// `[+-]?digits(.digits)?([eE][+-]?digits)?`. Trailing zeros do not count as
/// precision (`0.001000000` is `0.001`), nor leading zeros as integer digits,
/// and zero is zero whatever its exponent (`0e400`).
pub fn parse_amount(text: &str) -> Result<Decimal, AmountError> {
    let literal = Literal::read(text.trim()).ok_or(AmountError::NotANumber)?;
    if literal.digits.is_empty() {
        return Ok(Decimal::ZERO);
    }
    if literal.point > INTEGER_DIGITS as i64 {
        return Err(AmountError::TooLarge);
    }
    let places = literal.digits.len() as i64 - literal.point;
    if places > i64::from(SCALE) {
        return Err(AmountError::TooPrecise);
    }
    // At most 12 + 8 significant digits remain: far inside an i128.
    let mut mantissa: i128 = 0;
    for digit in literal.digits.bytes() {
        mantissa = mantissa * 10 + i128::from(digit - b'0');
    }
    for _ in places..0 {
        mantissa *= 10;
    }
    if literal.negative {
        mantissa = -mantissa;
    }
    let scale = u32::try_from(places.max(0)).map_err(|_| AmountError::TooPrecise)?;
    Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| AmountError::TooLarge)
}

/// A decimal literal reduced to its significant digits: the value is
/// `±0.digits × 10^point`.
struct Literal {
    negative: bool,
    /// No leading or trailing zeros; empty for zero.
    digits: String,
    point: i64,
}

impl Literal {
    /// Reads `[+-]?digits(.digits)?([eE][+-]?digits)?`, or nothing.
    fn read(text: &str) -> Option<Self> {
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], Some(&text[at + 1..])),
            None => (text, None),
        };
        let negative = mantissa.starts_with('-');
        let unsigned = mantissa.strip_prefix(['-', '+']).unwrap_or(mantissa);
        let (int_part, frac_part) = match unsigned.split_once('.') {
            Some((int_part, frac_part)) => (int_part, Some(frac_part)),
            None => (unsigned, None),
        };
        let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int_part) || frac_part.is_some_and(|frac| !all_digits(frac)) {
            return None;
        }
        let exponent = match exponent {
            Some(text) => read_exponent(text)?,
            None => 0,
        };
        let int_part = int_part.trim_start_matches('0');
        let frac_part = frac_part.unwrap_or_default();
        let (digits, point) = if int_part.is_empty() {
            let significant = frac_part.trim_start_matches('0');
            let leading = (frac_part.len() - significant.len()) as i64;
            (significant.trim_end_matches('0').to_owned(), -leading)
        } else {
            let joined = format!("{int_part}{frac_part}");
            let trimmed = joined.trim_end_matches('0').to_owned();
            (trimmed, int_part.len() as i64)
        };
        Some(Literal {
            negative,
            digits,
            point: point.saturating_add(exponent),
        })
    }
}

/// `[+-]?digits`, saturating: an exponent past a billion decides the value's
/// fate as surely as the exact one would.
fn read_exponent(text: &str) -> Option<i64> {
    const LIMIT: i64 = 1_000_000_000;
    let negative = text.starts_with('-');
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits
        .bytes()
        .fold(0_i64, |acc, b| (acc * 10 + i64::from(b - b'0')).min(LIMIT));
    Some(if negative { -magnitude } else { magnitude })
}

/// Formats an amount with exactly [`SCALE`] decimal places, as stored.
pub fn format_amount(value: Decimal) -> String {
    let mut value = to_scale(value);
    value.rescale(SCALE);
    value.to_string()
}

/// Rounds a computed amount to the [`SCALE`] places the columns keep.
fn to_scale(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointAwayFromZero)
}

/// The amounts a fill derives, rounded to the [`SCALE`] places the columns
/// keep; every one fits `DECIMAL(20,8)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillAmounts {
    /// Greater than zero.
    pub price: Decimal,
    /// `quantity × price`.
    pub notional: Decimal,
    /// `notional × fee_rate`; never negative, and zero when it rounds to less
    /// than one unit of the eighth place.
    pub fee: Decimal,
}

/// What a fill of `quantity` at `price` with `fee_rate` of the notional
/// derives, or why an order that derives it must be rejected: this is the one
/// bound on derived amounts, used by validation (with a fee rate of zero,
/// when the price is known) and by every executor.
pub fn fill_amounts(
    quantity: Decimal,
    price: Decimal,
    fee_rate: Decimal,
) -> Result<FillAmounts, String> {
    let price = to_scale(price);
    if price <= Decimal::ZERO {
        return Err(format!("fill price {price} is not greater than 0"));
    }
    let quantity = stored("quantity", Some(quantity))?;
    let price = stored("fill price", Some(price))?;
    let exact_notional = quantity.checked_mul(price);
    let notional = stored("notional", exact_notional.map(to_scale))?;
    let fee = stored(
        "fee",
        exact_notional
            .and_then(|notional| notional.checked_mul(fee_rate))
            .map(to_scale),
    )?;
    if fee < Decimal::ZERO {
        return Err(format!("fee {fee} is negative"));
    }
    Ok(FillAmounts {
        price,
        notional,
        fee,
    })
}

/// `value` when it fits `DECIMAL(20,8)`; `None` stands for a computation
/// that overflowed.
fn stored(name: &str, value: Option<Decimal>) -> Result<Decimal, String> {
    let limit = Decimal::from(10_i64.pow(INTEGER_DIGITS as u32));
    match value {
        Some(value) if value.abs() < limit && value.scale() <= SCALE => Ok(value),
        Some(value) => Err(format!(
            "{name} {value} does not fit DECIMAL(20,8) (at most {INTEGER_DIGITS} integer digits)"
        )),
        None => Err(format!(
            "{name} is too large to compute and does not fit DECIMAL(20,8)"
        )),
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn parses_plain_and_scientific_literals_exactly() {
        assert_eq!(parse_amount("0.001"), Ok(dec("0.001")));
        assert_eq!(parse_amount(" 50000 "), Ok(dec("50000")));
        assert_eq!(parse_amount("1e-3"), Ok(dec("0.001")));
        assert_eq!(parse_amount("1.5E2"), Ok(dec("150")));
        assert_eq!(parse_amount("-1"), Ok(dec("-1")));
        assert_eq!(parse_amount("0.00100000"), Ok(dec("0.001")));
        assert_eq!(parse_amount("000123.4500"), Ok(dec("123.45")));
        assert_eq!(parse_amount("0"), Ok(Decimal::ZERO));
        assert_eq!(
            parse_amount("999999999999.99999999"),
            Ok(dec("999999999999.99999999"))
        );
    }

    #[test]
    fn rejects_what_the_column_cannot_hold() {
        assert_eq!(parse_amount("0.000000001"), Err(AmountError::TooPrecise));
        assert_eq!(parse_amount("1e-9"), Err(AmountError::TooPrecise));
        assert_eq!(parse_amount("1000000000000"), Err(AmountError::TooLarge));
        assert_eq!(parse_amount("1e30"), Err(AmountError::TooLarge));
        assert_eq!(parse_amount("1e400"), Err(AmountError::TooLarge));
        assert_eq!(parse_amount("1e-400"), Err(AmountError::TooPrecise));
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        for text in [
            "abc", "", "1.", ".5", "1_000", "0x10", "1e", "--1", "NaN", "inf", "1,5",
        ] {
            assert_eq!(parse_amount(text), Err(AmountError::NotANumber), "{text:?}");
        }
    }

    #[test]
    fn zeros_and_exponents_count_by_value_not_by_spelling() {
        assert_eq!(parse_amount("0e400"), Ok(Decimal::ZERO));
        assert_eq!(parse_amount("-0.0e-400"), Ok(Decimal::ZERO));
        let padded = format!("1.{}", "0".repeat(40));
        assert_eq!(parse_amount(&padded), Ok(Decimal::ONE));
        let leading = format!("{}5", "0".repeat(40));
        assert_eq!(parse_amount(&leading), Ok(dec("5")));
        assert_eq!(parse_amount("100000e-5"), Ok(Decimal::ONE));
        assert_eq!(parse_amount("0.00000000123e3"), Ok(dec("0.00000123")));
        assert_eq!(
            parse_amount("1e99999999999999999999"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            parse_amount("1e-99999999999999999999"),
            Err(AmountError::TooPrecise)
        );
    }

    #[test]
    fn fills_derive_rounded_amounts_that_fit_the_columns() {
        let amounts = fill_amounts(dec("0.001"), dec("50000.123456789"), dec("0.001"));
        assert_eq!(
            amounts,
            Ok(FillAmounts {
                price: dec("50000.12345679"),
                notional: dec("50.00012346"),
                fee: dec("0.05000012"),
            })
        );
        let dust = fill_amounts(dec("0.00000001"), dec("0.01"), dec("0.001"));
        assert_eq!(dust.map(|a| a.fee), Ok(Decimal::ZERO));
    }

    #[test]
    fn fills_whose_amounts_the_columns_cannot_hold_are_refused() {
        let notional = fill_amounts(dec("1000000"), dec("12000000"), Decimal::ZERO);
        assert_eq!(
            notional,
            Err(
                "notional 12000000000000 does not fit DECIMAL(20,8) (at most 12 integer digits)"
                    .to_owned()
            )
        );
        let fee = fill_amounts(dec("1000"), dec("1000"), dec("10000000"));
        assert!(
            fee.as_ref().is_err_and(|r| r.starts_with("fee ")),
            "{fee:?}"
        );
        let price = fill_amounts(Decimal::ONE, dec("1e12"), Decimal::ZERO);
        assert!(price.is_err_and(|r| r.starts_with("fill price ")));
        let zero = fill_amounts(Decimal::ONE, dec("0.000000004"), Decimal::ZERO);
        assert_eq!(
            zero,
            Err("fill price 0.00000000 is not greater than 0".to_owned())
        );
        let rebate = fill_amounts(Decimal::ONE, Decimal::ONE, dec("-0.001"));
        assert!(rebate.is_err_and(|r| r.contains("negative")));
        let overflow = fill_amounts(dec("999999999999"), Decimal::MAX, Decimal::ONE);
        assert!(overflow.is_err());
    }

    #[test]
    fn formats_with_eight_places() {
        assert_eq!(format_amount(dec("0.001")), "0.00100000");
        assert_eq!(format_amount(dec("50000")), "50000.00000000");
        assert_eq!(format_amount(dec("0.123456785")), "0.12345679");
    }
}
