//! MEXC's answers as typed values. Amounts are exact decimals: MEXC sends
//! them as strings, and a number is read from its text, never through a
//! float. Ids and times are accepted as strings or numbers (`orderId` is a
//! string in some answers and a number in others).

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An exchange order id, as MEXC spelled it (a string or a number).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderId(pub String);

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(d).map(OrderId)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ServerTime {
    #[serde(deserialize_with = "integer")]
    pub server_time: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeInfo {
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default, deserialize_with = "opt_integer")]
    pub server_time: Option<i64>,
    #[serde(default)]
    pub symbols: Vec<SymbolInfo>,
}

/// One symbol of `exchangeInfo`, with the fields the pre-trade rules read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymbolInfo {
    pub symbol: String,
    /// `1` online, `2` paused, `3` offline (or `ENABLED` in older answers).
    #[serde(default, deserialize_with = "opt_text")]
    pub status: Option<String>,
    #[serde(default)]
    pub base_asset: String,
    #[serde(default)]
    pub quote_asset: String,
    /// Decimal places of a quantity.
    #[serde(default, deserialize_with = "opt_integer")]
    pub base_asset_precision: Option<i64>,
    /// Decimal places of a price.
    #[serde(default, deserialize_with = "opt_integer")]
    pub quote_precision: Option<i64>,
    #[serde(default, deserialize_with = "opt_integer")]
    pub quote_asset_precision: Option<i64>,
    #[serde(default)]
    pub order_types: Vec<String>,
    #[serde(default)]
    pub is_spot_trading_allowed: bool,
    /// Despite its name: the minimum order quantity.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub base_size_precision: Option<Decimal>,
    /// Despite its name: the minimum order amount (notional), in quote.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub quote_amount_precision: Option<Decimal>,
    /// The minimum amount of a MARKET order.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub quote_amount_precision_market: Option<Decimal>,
    /// The maximum order amount, in quote.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub max_quote_amount: Option<Decimal>,
    /// The maximum amount of a MARKET order.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub max_quote_amount_market: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub maker_commission: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub taker_commission: Option<Decimal>,
    /// `1` all, `2` buy only, `3` sell only, `4` close.
    #[serde(default, deserialize_with = "opt_text")]
    pub trade_side_type: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Kept as sent: MEXC documents no filter types for spot.
    #[serde(default)]
    pub filters: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TickerPrice {
    pub symbol: String,
    #[serde(deserialize_with = "decimal")]
    pub price: Decimal,
}

/// The answer to a new order: it has no status and no executed quantity;
/// those come from a lookup.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderAck {
    pub symbol: String,
    pub order_id: OrderId,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub orig_qty: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_integer")]
    pub transact_time: Option<i64>,
}

/// MEXC's order statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeStatus {
    New,
    PartiallyFilled,
    Filled,
    Canceled,
    PartiallyCanceled,
    /// A status MEXC may add later, kept as sent.
    Other(String),
}

impl ExchangeStatus {
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_uppercase().as_str() {
            "NEW" => ExchangeStatus::New,
            "PARTIALLY_FILLED" => ExchangeStatus::PartiallyFilled,
            "FILLED" => ExchangeStatus::Filled,
            "CANCELED" | "CANCELLED" => ExchangeStatus::Canceled,
            "PARTIALLY_CANCELED" | "PARTIALLY_CANCELLED" => ExchangeStatus::PartiallyCanceled,
            _ => ExchangeStatus::Other(text.to_owned()),
        }
    }

    /// Whether the order can change no more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ExchangeStatus::Filled | ExchangeStatus::Canceled | ExchangeStatus::PartiallyCanceled
        )
    }
}

impl<'de> Deserialize<'de> for ExchangeStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(d).map(|s| ExchangeStatus::parse(&s))
    }
}

/// An order as a lookup or a cancel describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderState {
    pub symbol: String,
    pub order_id: OrderId,
    #[serde(default, deserialize_with = "opt_text")]
    pub client_order_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub orig_client_order_id: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    /// The ordered quantity (`origQty`, or `Qty` in some answers).
    #[serde(default, alias = "Qty", deserialize_with = "opt_decimal")]
    pub orig_qty: Option<Decimal>,
    #[serde(default, deserialize_with = "decimal_or_zero")]
    pub executed_qty: Decimal,
    #[serde(default, deserialize_with = "decimal_or_zero")]
    pub cummulative_quote_qty: Decimal,
    pub status: ExchangeStatus,
    #[serde(default, rename = "type", deserialize_with = "opt_text")]
    pub order_type: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub side: Option<String>,
    #[serde(default, deserialize_with = "opt_integer")]
    pub time: Option<i64>,
    #[serde(default, deserialize_with = "opt_integer")]
    pub update_time: Option<i64>,
}

impl OrderState {
    /// The average fill price, `cummulativeQuoteQty / executedQty`.
    pub fn average_price(&self) -> Option<Decimal> {
        if self.executed_qty.is_zero() {
            return None;
        }
        self.cummulative_quote_qty.checked_div(self.executed_qty)
    }
}

/// One fill of `myTrades`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trade {
    pub symbol: String,
    /// MEXC's trade id: one fill, one id.
    #[serde(deserialize_with = "text")]
    pub id: String,
    pub order_id: OrderId,
    #[serde(deserialize_with = "decimal")]
    pub price: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub qty: Decimal,
    #[serde(default, deserialize_with = "decimal_or_zero")]
    pub quote_qty: Decimal,
    #[serde(default, deserialize_with = "decimal_or_zero")]
    pub commission: Decimal,
    #[serde(default, deserialize_with = "opt_text")]
    pub commission_asset: Option<String>,
    #[serde(default, deserialize_with = "opt_integer")]
    pub time: Option<i64>,
    #[serde(default)]
    pub is_buyer: Option<bool>,
    #[serde(default)]
    pub is_maker: Option<bool>,
    #[serde(default, deserialize_with = "opt_text")]
    pub client_order_id: Option<String>,
}

// Readers that take a string or a number alike. They go through
// `serde_json::Value`, which keeps a number's exact text.

fn value_text(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    value_text(Value::deserialize(d)?)
        .ok_or_else(|| serde::de::Error::custom("expected a string or a number"))
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(value_text(Value::deserialize(d)?).filter(|s| !s.is_empty()))
}

fn parse_decimal<E: serde::de::Error>(text: &str) -> Result<Decimal, E> {
    let text = text.trim();
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| E::custom(format!("{text:?} is not a decimal number")))
}

fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    parse_decimal(&text(d)?)
}

fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    match opt_text(d)? {
        Some(text) => parse_decimal(&text).map(Some),
        None => Ok(None),
    }
}

fn decimal_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    Ok(opt_decimal(d)?.unwrap_or_default())
}

fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let text = text(d)?;
    text.trim()
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a whole number")))
}

fn opt_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match opt_text(d)? {
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a whole number"))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_parse_from_strings_and_numbers() {
        let text: OrderAck = serde_json::from_str(
            r#"{"symbol":"MXUSDT","orderId":"06a480e69e604477bfb48dddd5f0b750","orderListId":-1,
                "price":"0.1","origQty":"50","type":"LIMIT","side":"BUY","transactTime":1666676533741}"#,
        )
        .unwrap();
        assert_eq!(text.order_id.0, "06a480e69e604477bfb48dddd5f0b750");
        assert_eq!(text.price, Some(Decimal::new(1, 1)));
        let number: OrderAck =
            serde_json::from_str(r#"{"symbol":"MXUSDT","orderId":1196315350023612316}"#).unwrap();
        assert_eq!(number.order_id.0, "1196315350023612316");
    }

    #[test]
    fn a_looked_up_order_reads_exactly() {
        let state: OrderState = serde_json::from_str(
            r#"{"symbol":"LTCBTC","orderId":1,"orderListId":-1,"clientOrderId":"myOrder1",
                "price":"0.1","Qty":"1.0","executedQty":"0.3","cummulativeQuoteQty":"0.0301",
                "status":"PARTIALLY_FILLED","timeInForce":"GTC","type":"LIMIT","side":"BUY",
                "stopPrice":"0.0","time":1499827319559,"updateTime":"1499827319560","isWorking":true}"#,
        )
        .unwrap();
        assert_eq!(state.order_id.0, "1");
        assert_eq!(state.orig_qty, Some(Decimal::new(10, 1)));
        assert_eq!(state.executed_qty, Decimal::new(3, 1));
        assert_eq!(state.status, ExchangeStatus::PartiallyFilled);
        assert_eq!(state.update_time, Some(1499827319560));
        assert_eq!(
            state.average_price(),
            Some(Decimal::new(301, 4) / Decimal::new(3, 1))
        );
        assert!(!state.status.is_final());
        assert!(ExchangeStatus::parse("PARTIALLY_CANCELED").is_final());
        assert_eq!(
            ExchangeStatus::parse("EXPIRED"),
            ExchangeStatus::Other("EXPIRED".into())
        );
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let ticker: TickerPrice =
            serde_json::from_str(r#"{"symbol":"BTCUSDT","price":0.30000000000000004}"#).unwrap();
        assert_eq!(ticker.price.to_string(), "0.30000000000000004");
        let ticker: TickerPrice =
            serde_json::from_str(r#"{"symbol":"BTCUSDT","price":"184.34"}"#).unwrap();
        assert_eq!(ticker.price, Decimal::new(18434, 2));
        assert!(serde_json::from_str::<TickerPrice>(r#"{"symbol":"X","price":"abc"}"#).is_err());
    }

    #[test]
    fn exchange_info_reads_the_documented_symbol() {
        let info: ExchangeInfo = serde_json::from_str(
            r#"{"timezone":"CST","serverTime":"1647519277579","rateLimits":[],"exchangeFilters":[],
                "symbols":[{"symbol":"TOMO3LUSDT","status":"ENABLED","baseAsset":"TOMO3L",
                "baseAssetPrecision":2,"quoteAsset":"USDT","quotePrecision":3,"quoteAssetPrecision":3,
                "baseCommissionPrecision":2,"quoteCommissionPrecision":3,"orderTypes":["LIMIT","LIMIT_MAKER"],
                "quoteOrderQtyMarketAllowed":false,"isSpotTradingAllowed":false,"isMarginTradingAllowed":false,
                "quoteAmountPrecision":"5","baseSizePrecision":"0.0001","permissions":["SPOT","LIMIT"],
                "filters":[],"maxQuoteAmount":"5000000","makerCommission":"0.002","takerCommission":"0.002",
                "tradeSideType":"1"}]}"#,
        )
        .unwrap();
        assert_eq!(info.server_time, Some(1647519277579));
        let symbol = &info.symbols[0];
        assert_eq!(symbol.status.as_deref(), Some("ENABLED"));
        assert_eq!(symbol.base_asset_precision, Some(2));
        assert_eq!(symbol.quote_precision, Some(3));
        assert_eq!(symbol.base_size_precision, Some(Decimal::new(1, 4)));
        assert_eq!(symbol.quote_amount_precision, Some(Decimal::from(5)));
        assert_eq!(symbol.max_quote_amount, Some(Decimal::from(5_000_000)));
        assert_eq!(symbol.trade_side_type.as_deref(), Some("1"));
        assert!(!symbol.is_spot_trading_allowed);
        // A numeric status and missing optional fields are fine too.
        let sparse: SymbolInfo =
            serde_json::from_str(r#"{"symbol":"BTCUSDT","status":1}"#).unwrap();
        assert_eq!(sparse.status.as_deref(), Some("1"));
        assert_eq!(sparse.max_quote_amount, None);
    }

    #[test]
    fn trades_read_their_ids_and_fees() {
        let trades: Vec<Trade> = serde_json::from_str(
            r#"[{"symbol":"BNBBTC","id":"fad2af9e942049b6adbda1a271f990c6","orderId":"bb41e5663e124046bd9497a3f5692f39",
                 "orderListId":-1,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",
                 "commission":"10.10000000","commissionAsset":"BNB","time":1499865549590,"isBuyer":true,
                 "isMaker":false,"isBestMatch":true,"isSelfTrade":true,"clientOrderId":null},
                {"symbol":"BNBBTC","id":77,"orderId":12,"price":"1","qty":"2"}]"#,
        )
        .unwrap();
        assert_eq!(trades[0].id, "fad2af9e942049b6adbda1a271f990c6");
        assert_eq!(trades[0].commission, Decimal::new(101, 1));
        assert_eq!(trades[0].commission_asset.as_deref(), Some("BNB"));
        assert_eq!(trades[0].client_order_id, None);
        assert_eq!(trades[1].id, "77");
        assert_eq!(trades[1].order_id.0, "12");
        assert_eq!(trades[1].commission, Decimal::ZERO);
    }
}
