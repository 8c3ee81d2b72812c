//! Exact decimal amounts: quantities, prices and fees as `DECIMAL(20,8)`.
//!
//! Amounts are parsed from their text, never through a float, and a value the
//! column cannot hold exactly (more than 8 decimal places, more than 12
//! integer digits) is an error rather than something rounded to fit.

use rust_decimal::Decimal;

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
/// Trailing zeros do not count as precision (`0.001000000` is `0.001`).
pub fn parse_amount(text: &str) -> Result<Decimal, AmountError> {
    let text = text.trim();
    let (mantissa, exponent) = split_literal(text).ok_or(AmountError::NotANumber)?;
    let unsigned = mantissa.trim_start_matches(['-', '+']);
    let int_part = unsigned.split('.').next().unwrap_or_default();
    let integer_digits = int_part.trim_start_matches('0').len() as i64 + exponent;
    if integer_digits > INTEGER_DIGITS as i64 {
        return Err(AmountError::TooLarge);
    }
    let parsed = if mantissa.len() == text.len() {
        Decimal::from_str_exact(mantissa)
    } else {
        Decimal::from_scientific(text)
    };
    let value = parsed.map_err(|_| AmountError::TooPrecise)?.normalize();
    if value.scale() > SCALE {
        return Err(AmountError::TooPrecise);
    }
    if value.abs() >= Decimal::from(10_i64.pow(INTEGER_DIGITS as u32)) {
        return Err(AmountError::TooLarge);
    }
    Ok(value)
}

/// Splits `-12.5e-3` into (`-12.5`, -3), checking the literal's grammar.
fn split_literal(text: &str) -> Option<(&str, i64)> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let unsigned = mantissa.strip_prefix(['-', '+']).unwrap_or(mantissa);
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((int_part, frac_part)) => (int_part, Some(frac_part)),
        None => (unsigned, None),
    };
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let well_formed = !int_part.is_empty()
        && all_digits(int_part)
        && frac_part.is_none_or(|frac| !frac.is_empty() && all_digits(frac));
    well_formed.then_some((mantissa, exponent))
}

/// Formats an amount with exactly [`SCALE`] decimal places, as stored.
pub fn format_amount(value: Decimal) -> String {
    let mut value =
        value.round_dp_with_strategy(SCALE, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    value.rescale(SCALE);
    value.to_string()
}

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
    fn formats_with_eight_places() {
        assert_eq!(format_amount(dec("0.001")), "0.00100000");
        assert_eq!(format_amount(dec("50000")), "50000.00000000");
        assert_eq!(format_amount(dec("0.123456785")), "0.12345679");
    }
}
