//! Pre-trade rules: whether MEXC would take an order, decided from
//! `exchangeInfo` and the service's own limits before anything is sent.
//! Pure: no I/O, no clock.
//!
//! MEXC's field names mislead: `baseAssetPrecision` is the number of
//! decimal places of a quantity and `quotePrecision` that of a price, while
//! `baseSizePrecision` is the *minimum quantity* and `quoteAmountPrecision`
//! the *minimum order amount* (notional, in the quote asset);
//! `maxQuoteAmount` is the maximum amount. MARKET orders have their own
//! amounts (`quoteAmountPrecisionMarket`, `maxQuoteAmountMarket`) when MEXC
//! gives them. A failure names its rule and the values involved.

use std::collections::{BTreeSet, HashMap};

use rust_decimal::Decimal;

use super::mexc_symbol;
use super::model::{ExchangeInfo, SymbolInfo};
use crate::domain::{Order, OrderType, Side};

/// The service's own limits on live orders.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Symbols (MEXC's spelling) that may be traded; `None`: any symbol.
    pub symbol_allowlist: Option<BTreeSet<String>>,
    /// The largest notional (quantity × price, in quote) of one order.
    pub max_order_notional: Option<Decimal>,
}

/// Why an order may not be sent: the rule, and the values that broke it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {detail}")]
pub struct RuleFailure {
    pub rule: &'static str,
    pub detail: String,
}

fn fail(rule: &'static str, detail: String) -> Result<(), RuleFailure> {
    Err(RuleFailure { rule, detail })
}

/// Which sides MEXC takes orders for (`tradeSideType`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sides {
    Both,
    BuyOnly,
    SellOnly,
    /// `4`, "close": no new orders.
    Neither,
    Unrecognised(String),
}

/// One symbol's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolRules {
    pub symbol: String,
    status: Option<String>,
    spot_trading_allowed: bool,
    sides: Sides,
    order_types: Vec<String>,
    quantity_decimals: Option<u32>,
    price_decimals: Option<u32>,
    min_quantity: Option<Decimal>,
    min_notional: Option<Decimal>,
    max_notional: Option<Decimal>,
    min_notional_market: Option<Decimal>,
    max_notional_market: Option<Decimal>,
}

/// A positive limit; MEXC sends `0` for "none".
fn positive(value: Option<Decimal>) -> Option<Decimal> {
    value.filter(|v| *v > Decimal::ZERO)
}

fn decimals(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

impl From<&SymbolInfo> for SymbolRules {
    fn from(info: &SymbolInfo) -> Self {
        let sides = match info.trade_side_type.as_deref().map(str::trim) {
            None | Some("1") => Sides::Both,
            Some("2") => Sides::BuyOnly,
            Some("3") => Sides::SellOnly,
            Some("4") => Sides::Neither,
            Some(other) => Sides::Unrecognised(other.to_owned()),
        };
        SymbolRules {
            symbol: info.symbol.clone(),
            status: info.status.clone(),
            spot_trading_allowed: info.is_spot_trading_allowed,
            sides,
            order_types: info
                .order_types
                .iter()
                .map(|t| t.to_ascii_uppercase())
                .collect(),
            quantity_decimals: decimals(info.base_asset_precision),
            price_decimals: decimals(info.quote_precision),
            min_quantity: positive(info.base_size_precision),
            min_notional: positive(info.quote_amount_precision),
            max_notional: positive(info.max_quote_amount),
            min_notional_market: positive(info.quote_amount_precision_market),
            max_notional_market: positive(info.max_quote_amount_market),
        }
    }
}

/// The rules of every symbol of one `exchangeInfo` answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleBook {
    symbols: HashMap<String, SymbolRules>,
}

impl RuleBook {
    pub fn from_exchange_info(info: &ExchangeInfo) -> Self {
        RuleBook {
            symbols: info
                .symbols
                .iter()
                .map(|s| (mexc_symbol(&s.symbol), SymbolRules::from(s)))
                .collect(),
        }
    }

    pub fn get(&self, symbol: &str) -> Option<&SymbolRules> {
        self.symbols.get(&mexc_symbol(symbol))
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// [`check_order`] with this book's rules for the order's symbol.
    pub fn check(
        &self,
        order: &Order,
        limits: &Limits,
        reference_price: Option<Decimal>,
    ) -> Result<(), RuleFailure> {
        check_order(order, self.get(&order.symbol), limits, reference_price)
    }
}

/// Checks an order against its symbol's rules (`None`: MEXC does not list
/// the symbol) and the service's limits. A MARKET order's notional is
/// taken at its own price, else at `reference_price` (a recent ticker
/// price); when neither is known, MEXC's amount limits are left to MEXC,
/// but `MAX_ORDER_NOTIONAL` fails closed.
pub fn check_order(
    order: &Order,
    rules: Option<&SymbolRules>,
    limits: &Limits,
    reference_price: Option<Decimal>,
) -> Result<(), RuleFailure> {
    let symbol = mexc_symbol(&order.symbol);
    if let Some(allowed) = &limits.symbol_allowlist
        && !allowed.contains(&symbol)
    {
        return fail(
            "symbol_allowlist",
            format!("{symbol} is not in SYMBOL_ALLOWLIST ({})", join(allowed)),
        );
    }
    let Some(rules) = rules else {
        return fail("symbol_listed", format!("MEXC does not list {symbol}"));
    };
    check_symbol(order, rules)?;
    check_amounts(order, rules)?;
    let price = match order.order_type {
        OrderType::Limit => order.price,
        OrderType::Market => order.price.or(reference_price),
    };
    let notional = price.and_then(|p| order.quantity.checked_mul(p));
    check_notional(order, rules, limits, notional)
}

/// Whether the symbol trades at all, on this side, with this order type.
fn check_symbol(order: &Order, rules: &SymbolRules) -> Result<(), RuleFailure> {
    let symbol = &rules.symbol;
    match rules.status.as_deref().map(str::trim) {
        Some(status)
            if ["1", "ENABLED", "TRADING"].contains(&status.to_ascii_uppercase().as_str()) => {}
        Some(status) => {
            let meaning = match status {
                "2" => " (paused)",
                "3" => " (offline)",
                _ => "",
            };
            return fail(
                "symbol_status",
                format!("{symbol} has status {status}{meaning}, not 1 (online)"),
            );
        }
        None => return fail("symbol_status", format!("MEXC gave no status for {symbol}")),
    }
    if !rules.spot_trading_allowed {
        return fail(
            "spot_trading_allowed",
            format!("isSpotTradingAllowed is false for {symbol}"),
        );
    }
    let side_allowed = matches!(
        (&rules.sides, order.side),
        (Sides::Both, _) | (Sides::BuyOnly, Side::Buy) | (Sides::SellOnly, Side::Sell)
    );
    if !side_allowed {
        let sides = match &rules.sides {
            Sides::BuyOnly => "2, buy orders only".to_owned(),
            Sides::SellOnly => "3, sell orders only".to_owned(),
            Sides::Neither => "4, close: no new orders".to_owned(),
            Sides::Unrecognised(value) => format!("{value}, not one this service knows"),
            Sides::Both => "1".to_owned(),
        };
        return fail(
            "trade_side",
            format!(
                "{} {symbol} refused: tradeSideType is {sides}",
                order.side.as_str()
            ),
        );
    }
    let order_type = order.order_type.as_str();
    if !rules.order_types.is_empty() && !rules.order_types.iter().any(|t| t == order_type) {
        return fail(
            "order_type",
            format!(
                "{order_type} is not among {symbol}'s order types ({})",
                rules.order_types.join(", ")
            ),
        );
    }
    Ok(())
}

/// Decimal places and the minimum quantity.
fn check_amounts(order: &Order, rules: &SymbolRules) -> Result<(), RuleFailure> {
    let symbol = &rules.symbol;
    let quantity = order.quantity.normalize();
    if let Some(allowed) = rules.quantity_decimals
        && quantity.scale() > allowed
    {
        return fail(
            "quantity_decimals",
            format!(
                "quantity {quantity} has {} decimal places, {symbol} allows {allowed} (baseAssetPrecision)",
                quantity.scale()
            ),
        );
    }
    if order.order_type == OrderType::Limit
        && let (Some(price), Some(allowed)) = (order.price, rules.price_decimals)
    {
        let price = price.normalize();
        if price.scale() > allowed {
            return fail(
                "price_decimals",
                format!(
                    "price {price} has {} decimal places, {symbol} allows {allowed} (quotePrecision)",
                    price.scale()
                ),
            );
        }
    }
    if let Some(min) = rules.min_quantity
        && quantity < min
    {
        return fail(
            "min_quantity",
            format!(
                "quantity {quantity} is below {symbol}'s minimum {} (baseSizePrecision)",
                min.normalize()
            ),
        );
    }
    Ok(())
}

/// MEXC's minimum and maximum amount, and `MAX_ORDER_NOTIONAL`.
fn check_notional(
    order: &Order,
    rules: &SymbolRules,
    limits: &Limits,
    notional: Option<Decimal>,
) -> Result<(), RuleFailure> {
    let symbol = &rules.symbol;
    let market = order.order_type == OrderType::Market;
    let (min, min_field) = match (market, rules.min_notional_market) {
        (true, Some(min)) => (Some(min), "quoteAmountPrecisionMarket"),
        _ => (rules.min_notional, "quoteAmountPrecision"),
    };
    let (max, max_field) = match (market, rules.max_notional_market) {
        (true, Some(max)) => (Some(max), "maxQuoteAmountMarket"),
        _ => (rules.max_notional, "maxQuoteAmount"),
    };
    if let Some(notional) = notional {
        let notional = notional.normalize();
        if let Some(min) = min
            && notional < min
        {
            return fail(
                "min_notional",
                format!(
                    "notional {notional} is below {symbol}'s minimum {} ({min_field})",
                    min.normalize()
                ),
            );
        }
        if let Some(max) = max
            && notional > max
        {
            return fail(
                "max_notional",
                format!(
                    "notional {notional} is above {symbol}'s maximum {} ({max_field})",
                    max.normalize()
                ),
            );
        }
    }
    if let Some(limit) = limits.max_order_notional {
        match notional {
            Some(notional) if notional > limit => {
                return fail(
                    "max_order_notional",
                    format!(
                        "notional {} is above MAX_ORDER_NOTIONAL {}",
                        notional.normalize(),
                        limit.normalize()
                    ),
                );
            }
            Some(_) => {}
            None => {
                return fail(
                    "max_order_notional",
                    format!(
                        "the notional of this MARKET order is unknown (no price, no reference price), so MAX_ORDER_NOTIONAL {} cannot be checked",
                        limit.normalize()
                    ),
                );
            }
        }
    }
    Ok(())
}

fn join(symbols: &BTreeSet<String>) -> String {
    symbols.iter().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
