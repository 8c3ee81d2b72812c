use std::str::FromStr;

use super::*;
use crate::domain::order::tests::order as market_order;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// BTCUSDT as MEXC describes it: 6 quantity decimals, 2 price decimals,
/// at least 0.0001 BTC, between 1 and 2 000 000 USDT.
fn btcusdt() -> SymbolInfo {
    serde_json::from_str(
        r#"{"symbol":"BTCUSDT","status":"1","baseAsset":"BTC","quoteAsset":"USDT",
            "baseAssetPrecision":6,"quotePrecision":2,"quoteAssetPrecision":2,
            "orderTypes":["LIMIT","MARKET","LIMIT_MAKER"],"isSpotTradingAllowed":true,
            "baseSizePrecision":"0.0001","quoteAmountPrecision":"1.000000000000000000",
            "maxQuoteAmount":"2000000.000000000000000000","quoteAmountPrecisionMarket":"5",
            "maxQuoteAmountMarket":"100000","tradeSideType":"1","filters":[]}"#,
    )
    .unwrap()
}

fn rules_with(edit: impl FnOnce(&mut SymbolInfo)) -> SymbolRules {
    let mut info = btcusdt();
    edit(&mut info);
    SymbolRules::from(&info)
}

fn limit(side: Side, quantity: &str, price: &str) -> Order {
    let mut order = market_order("BTC/USDT", side, quantity);
    order.order_type = OrderType::Limit;
    order.price = Some(dec(price));
    order
}

fn check(order: &Order, rules: &SymbolRules) -> Result<(), RuleFailure> {
    check_order(order, Some(rules), &Limits::default(), None)
}

fn rule_of(result: Result<(), RuleFailure>) -> (&'static str, String) {
    let failure = result.expect_err("the order passed");
    (failure.rule, failure.to_string())
}

#[test]
fn a_conforming_order_passes_and_slash_symbols_map_to_mexc_spelling() {
    let rules = SymbolRules::from(&btcusdt());
    assert_eq!(check(&limit(Side::Buy, "0.001", "50000.5"), &rules), Ok(()));
    // Trailing zeros are not decimal places.
    assert_eq!(
        check(&limit(Side::Sell, "0.00100000", "50000.50000000"), &rules),
        Ok(())
    );
    let book = RuleBook::from_exchange_info(&ExchangeInfo {
        symbols: vec![btcusdt()],
        ..ExchangeInfo::default()
    });
    assert_eq!(book.len(), 1);
    assert!(book.get("BTC/USDT").is_some());
    assert_eq!(
        book.check(
            &limit(Side::Buy, "0.001", "50000"),
            &Limits::default(),
            None
        ),
        Ok(())
    );
}

#[test]
fn an_unlisted_symbol_fails() {
    let mut order = limit(Side::Buy, "1", "1");
    order.symbol = "DOGE/EUR".into();
    let book = RuleBook::from_exchange_info(&ExchangeInfo {
        symbols: vec![btcusdt()],
        ..ExchangeInfo::default()
    });
    let (rule, text) = rule_of(book.check(&order, &Limits::default(), None));
    assert_eq!(rule, "symbol_listed");
    assert!(text.contains("DOGEEUR"), "{text}");
}

#[test]
fn the_allowlist_is_checked_first() {
    let limits = Limits {
        symbol_allowlist: Some(["ETHUSDT".to_owned(), "MXUSDT".to_owned()].into()),
        ..Limits::default()
    };
    let rules = SymbolRules::from(&btcusdt());
    let (rule, text) = rule_of(check_order(
        &limit(Side::Buy, "0.001", "50000"),
        Some(&rules),
        &limits,
        None,
    ));
    assert_eq!(rule, "symbol_allowlist");
    assert_eq!(
        text,
        "symbol_allowlist: BTCUSDT is not in SYMBOL_ALLOWLIST (ETHUSDT, MXUSDT)"
    );
    let allowed = Limits {
        symbol_allowlist: Some(["BTCUSDT".to_owned()].into()),
        ..Limits::default()
    };
    assert_eq!(
        check_order(
            &limit(Side::Buy, "0.001", "50000"),
            Some(&rules),
            &allowed,
            None
        ),
        Ok(())
    );
}

#[test]
fn a_symbol_that_is_not_online_fails() {
    for (status, shown) in [
        ("2", "status 2 (paused)"),
        ("3", "status 3 (offline)"),
        ("HALT", "status HALT"),
    ] {
        let rules = rules_with(|s| s.status = Some(status.into()));
        let (rule, text) = rule_of(check(&limit(Side::Buy, "0.001", "50000"), &rules));
        assert_eq!(rule, "symbol_status");
        assert!(text.contains(shown), "{text}");
    }
    let rules = rules_with(|s| s.status = None);
    assert_eq!(
        rule_of(check(&limit(Side::Buy, "0.001", "50000"), &rules)).0,
        "symbol_status"
    );
    let enabled = rules_with(|s| s.status = Some("ENABLED".into()));
    assert_eq!(check(&limit(Side::Buy, "0.001", "50000"), &enabled), Ok(()));
}

#[test]
fn spot_trading_must_be_allowed() {
    let rules = rules_with(|s| s.is_spot_trading_allowed = false);
    let (rule, text) = rule_of(check(&limit(Side::Buy, "0.001", "50000"), &rules));
    assert_eq!(rule, "spot_trading_allowed");
    assert!(
        text.contains("isSpotTradingAllowed is false for BTCUSDT"),
        "{text}"
    );
}

#[test]
fn buy_only_and_sell_only_symbols_refuse_the_other_side() {
    let buy_only = rules_with(|s| s.trade_side_type = Some("2".into()));
    assert_eq!(
        check(&limit(Side::Buy, "0.001", "50000"), &buy_only),
        Ok(())
    );
    let (rule, text) = rule_of(check(&limit(Side::Sell, "0.001", "50000"), &buy_only));
    assert_eq!(rule, "trade_side");
    assert!(
        text.contains("SELL BTCUSDT refused: tradeSideType is 2, buy orders only"),
        "{text}"
    );

    let sell_only = rules_with(|s| s.trade_side_type = Some("3".into()));
    assert_eq!(
        check(&limit(Side::Sell, "0.001", "50000"), &sell_only),
        Ok(())
    );
    assert_eq!(
        rule_of(check(&limit(Side::Buy, "0.001", "50000"), &sell_only)).0,
        "trade_side"
    );

    for closed in ["4", "9"] {
        let rules = rules_with(|s| s.trade_side_type = Some(closed.into()));
        assert_eq!(
            rule_of(check(&limit(Side::Buy, "0.001", "50000"), &rules)).0,
            "trade_side"
        );
        assert_eq!(
            rule_of(check(&limit(Side::Sell, "0.001", "50000"), &rules)).0,
            "trade_side"
        );
    }
}

#[test]
fn the_order_type_must_be_offered() {
    let rules = rules_with(|s| s.order_types = vec!["LIMIT".into(), "LIMIT_MAKER".into()]);
    let (rule, text) = rule_of(check(&market_order("BTCUSDT", Side::Buy, "0.001"), &rules));
    assert_eq!(rule, "order_type");
    assert!(
        text.contains("MARKET is not among BTCUSDT's order types (LIMIT, LIMIT_MAKER)"),
        "{text}"
    );
}

#[test]
fn quantity_decimals_follow_base_asset_precision() {
    let rules = SymbolRules::from(&btcusdt());
    let (rule, text) = rule_of(check(&limit(Side::Buy, "0.0012345", "50000"), &rules));
    assert_eq!(rule, "quantity_decimals");
    assert_eq!(
        text,
        "quantity_decimals: quantity 0.0012345 has 7 decimal places, BTCUSDT allows 6 (baseAssetPrecision)"
    );
}

#[test]
fn price_decimals_follow_quote_precision() {
    let rules = SymbolRules::from(&btcusdt());
    let (rule, text) = rule_of(check(&limit(Side::Buy, "0.001", "50000.123"), &rules));
    assert_eq!(rule, "price_decimals");
    assert_eq!(
        text,
        "price_decimals: price 50000.123 has 3 decimal places, BTCUSDT allows 2 (quotePrecision)"
    );
}

#[test]
fn the_minimum_quantity_is_base_size_precision() {
    let rules = SymbolRules::from(&btcusdt());
    let (rule, text) = rule_of(check(&limit(Side::Buy, "0.00009", "50000"), &rules));
    assert_eq!(rule, "min_quantity");
    assert_eq!(
        text,
        "min_quantity: quantity 0.00009 is below BTCUSDT's minimum 0.0001 (baseSizePrecision)"
    );
    // "0" means no minimum.
    let none = rules_with(|s| s.base_size_precision = Some(Decimal::ZERO));
    assert_eq!(check(&limit(Side::Buy, "0.00009", "50000"), &none), Ok(()));
}

#[test]
fn the_notional_must_lie_between_mexcs_minimum_and_maximum() {
    let rules = SymbolRules::from(&btcusdt());
    let (rule, text) = rule_of(check(&limit(Side::Buy, "0.0001", "5"), &rules));
    assert_eq!(rule, "min_notional");
    assert_eq!(
        text,
        "min_notional: notional 0.0005 is below BTCUSDT's minimum 1 (quoteAmountPrecision)"
    );
    let (rule, text) = rule_of(check(&limit(Side::Buy, "50", "50000"), &rules));
    assert_eq!(rule, "max_notional");
    assert_eq!(
        text,
        "max_notional: notional 2500000 is above BTCUSDT's maximum 2000000 (maxQuoteAmount)"
    );
}

#[test]
fn market_orders_use_the_market_amounts_at_the_reference_price() {
    let rules = SymbolRules::from(&btcusdt());
    let order = market_order("BTCUSDT", Side::Buy, "0.0001");
    // 0.0001 × 40 000 = 4 < 5, the MARKET minimum.
    let (rule, text) = rule_of(check_order(
        &order,
        Some(&rules),
        &Limits::default(),
        Some(dec("40000")),
    ));
    assert_eq!(rule, "min_notional");
    assert!(text.contains("(quoteAmountPrecisionMarket)"), "{text}");
    let big = market_order("BTCUSDT", Side::Buy, "3");
    let (rule, text) = rule_of(check_order(
        &big,
        Some(&rules),
        &Limits::default(),
        Some(dec("40000")),
    ));
    assert_eq!(rule, "max_notional");
    assert!(text.contains("(maxQuoteAmountMarket)"), "{text}");
    // Without any price MEXC's amounts are left to MEXC.
    assert_eq!(
        check_order(&order, Some(&rules), &Limits::default(), None),
        Ok(())
    );
}

#[test]
fn max_order_notional_is_enforced_and_fails_closed_without_a_price() {
    let rules = SymbolRules::from(&btcusdt());
    let limits = Limits {
        max_order_notional: Some(dec("1000")),
        ..Limits::default()
    };
    assert_eq!(
        check_order(
            &limit(Side::Buy, "0.02", "50000"),
            Some(&rules),
            &limits,
            None
        ),
        Ok(())
    );
    let (rule, text) = rule_of(check_order(
        &limit(Side::Buy, "0.021", "50000"),
        Some(&rules),
        &limits,
        None,
    ));
    assert_eq!(rule, "max_order_notional");
    assert_eq!(
        text,
        "max_order_notional: notional 1050 is above MAX_ORDER_NOTIONAL 1000"
    );
    let market = market_order("BTCUSDT", Side::Sell, "0.01");
    assert_eq!(
        rule_of(check_order(&market, Some(&rules), &limits, None)).0,
        "max_order_notional"
    );
    assert_eq!(
        check_order(&market, Some(&rules), &limits, Some(dec("50000"))),
        Ok(())
    );
}
