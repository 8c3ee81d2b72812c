//! Properties of amount parsing and fill arithmetic, checked against an
//! oracle that moves the decimal point by hand on the literal's digits.

use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

/// A literal of the documented grammar, from its parts.
fn literal() -> impl Strategy<Value = (String, String, Option<String>, Option<i64>)> {
    (
        prop_oneof![Just(""), Just("+"), Just("-")].prop_map(str::to_owned),
        "[0-9]{1,24}",
        proptest::option::of("[0-9]{1,24}"),
        proptest::option::of(prop_oneof![-40_i64..=40, -1200_i64..=1200]),
    )
}

/// What the column holds of `sign int.frac × 10^exp`: the plain literal
/// with at most 12 integer digits and 8 places, or the error.
fn oracle(sign: &str, int: &str, frac: &str, exp: i64) -> Result<Decimal, AmountError> {
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + exp;
    let (whole, fraction) = if point <= 0 {
        (
            String::new(),
            format!("{}{digits}", "0".repeat((-point) as usize)),
        )
    } else if point as usize >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        (format!("{digits}{zeros}"), String::new())
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        (whole.to_owned(), fraction.to_owned())
    };
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    if whole.is_empty() && fraction.is_empty() {
        return Ok(Decimal::ZERO);
    }
    if whole.len() > 12 {
        return Err(AmountError::TooLarge);
    }
    if fraction.len() > 8 {
        return Err(AmountError::TooPrecise);
    }
    let sign = if sign == "-" { "-" } else { "" };
    let whole = if whole.is_empty() { "0" } else { whole };
    let fraction = if fraction.is_empty() { "0" } else { fraction };
    Ok(Decimal::from_str(&format!("{sign}{whole}.{fraction}")).expect("a plain decimal"))
}

/// A positive amount the column holds, of any scale up to 8.
fn column_amount() -> impl Strategy<Value = Decimal> {
    (0_u32..=SCALE).prop_flat_map(|scale| {
        (1_i128..10_i128.pow(12 + scale))
            .prop_map(move |mantissa| Decimal::from_i128_with_scale(mantissa, scale))
    })
}

proptest! {
    #[test]
    fn grammar_literals_parse_exactly_when_the_column_holds_them(
        (sign, int, frac, exp) in literal(),
        upper in any::<bool>(),
        exp_plus in any::<bool>(),
    ) {
        let mut text = format!("{sign}{int}");
        if let Some(frac) = &frac {
            text = format!("{text}.{frac}");
        }
        if let Some(exp) = exp {
            let e = if upper { "E" } else { "e" };
            let plus = if exp_plus && exp >= 0 { "+" } else { "" };
            text = format!("{text}{e}{plus}{exp}");
        }
        let expected = oracle(&sign, &int, frac.as_deref().unwrap_or(""), exp.unwrap_or(0));
        prop_assert_eq!(parse_amount(&text), expected, "{}", text);
    }

    #[test]
    fn any_text_parses_without_panic_and_what_is_accepted_round_trips(
        text in prop_oneof![any::<String>(), "[-+ 0-9.eE]{0,30}"],
    ) {
        if let Ok(value) = parse_amount(&text) {
            prop_assert!(value.scale() <= SCALE, "{}", text);
            prop_assert!(value.abs() < Decimal::from(1_000_000_000_000_i64), "{}", text);
            prop_assert_eq!(parse_amount(&format_amount(value)), Ok(value));
            prop_assert_eq!(parse_amount(&value.to_string()), Ok(value));
        }
    }

    #[test]
    fn fills_are_refused_exactly_when_the_notional_cannot_be_stored(
        quantity in column_amount(),
        price in column_amount(),
        fee_bps in 0_i64..=100,
    ) {
        let fee_rate = Decimal::new(fee_bps, 4);
        let notional = (quantity * price).round_dp(8);
        match fill_amounts(quantity, price, fee_rate) {
            Ok(amounts) => {
                prop_assert!(notional < Decimal::from(1_000_000_000_000_i64));
                prop_assert_eq!(amounts.price, price);
                prop_assert_eq!(amounts.notional, notional);
                prop_assert!(amounts.fee >= Decimal::ZERO && amounts.fee <= amounts.notional);
                prop_assert_eq!(parse_amount(&format_amount(amounts.fee)), Ok(amounts.fee));
            }
            Err(reason) => {
                prop_assert!(notional >= Decimal::from(1_000_000_000_000_i64), "{}", reason);
                prop_assert!(reason.starts_with("notional "), "{}", reason);
            }
        }
    }
}
