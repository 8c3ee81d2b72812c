//! The result the service announces for every order, and the states an
//! order row moves through.
//!
//! One type serves both outputs: JSON on the results channel and flat text
//! fields on the results stream, with the same names and values.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

use super::amount::format_amount;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Recorded, not yet executed.
    Pending,
    /// Sent to the exchange, answer not yet recorded (or open there).
    Submitted,
    /// Live: open at the exchange with part of it filled.
    PartiallyFilled,
    Filled,
    /// Live: cancelled at the exchange, possibly after part of it filled.
    Canceled,
    Rejected,
    Error,
    /// Live: the outcome could not be learnt in time; an operator alert,
    /// still polled, never re-sent.
    Unknown,
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Submitted => "SUBMITTED",
            OrderStatus::PartiallyFilled => "PARTIALLY_FILLED",
            OrderStatus::Filled => "FILLED",
            OrderStatus::Canceled => "CANCELED",
            OrderStatus::Rejected => "REJECTED",
            OrderStatus::Error => "ERROR",
            OrderStatus::Unknown => "UNKNOWN",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Submitted,
            Self::PartiallyFilled,
            Self::Filled,
            Self::Canceled,
            Self::Rejected,
            Self::Error,
            Self::Unknown,
        ]
        .into_iter()
        .find(|status| status.as_str().eq_ignore_ascii_case(text))
    }

    /// A terminal order is never executed again; its result is re-emitted.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Canceled
                | OrderStatus::Rejected
                | OrderStatus::Error
        )
    }

    /// Whether a strategy hears of this status (PENDING and SUBMITTED are
    /// the service's own bookkeeping).
    pub fn is_announced(self) -> bool {
        !matches!(self, OrderStatus::Pending | OrderStatus::Submitted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradingMode {
    /// Deterministic fills at the order's (or a reference) price.
    Paper,
    /// Seeded random fills and slippage.
    Mock,
    /// Real orders on the exchange.
    Live,
    /// Live with `DRY_RUN=true`: checked against the exchange, never sent.
    #[serde(rename = "dry_run")]
    DryRun,
}

impl TradingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TradingMode::Paper => "paper",
            TradingMode::Mock => "mock",
            TradingMode::Live => "live",
            TradingMode::DryRun => "dry_run",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Paper, Self::Mock, Self::Live, Self::DryRun]
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// An execution of (part of) an order, as the venue reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub exchange_order_id: Option<String>,
}

/// What happened to one order, as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionResult {
    #[serde(rename = "type", default = "result_type")]
    pub kind: String,
    pub order_id: String,
    pub status: OrderStatus,
    pub symbol: Option<String>,
    pub side: Option<String>,
    #[serde(serialize_with = "amount_opt")]
    pub quantity: Option<Decimal>,
    #[serde(serialize_with = "amount")]
    pub filled_quantity: Decimal,
    /// The fill price; absent when nothing was filled.
    #[serde(serialize_with = "amount_opt")]
    pub price: Option<Decimal>,
    /// The fee, when it was paid in one asset (or none was paid).
    #[serde(default, serialize_with = "amount_opt")]
    pub fee: Option<Decimal>,
    /// The asset `fee` was paid in, when the venue said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_asset: Option<String>,
    /// Live: the fees per asset, `{"USDT": "0.05000000", "MX": "0.00100000"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fees: Option<BTreeMap<String, String>>,
    /// Unix seconds of the outcome.
    pub timestamp: i64,
    pub client_id: Option<String>,
    pub strategy_id: Option<String>,
    pub bot_id: Option<String>,
    pub error_message: Option<String>,
    pub exchange_order_id: Option<String>,
    /// The id the order carries at the exchange (live orders).
    pub client_order_id: Option<String>,
    pub mode: TradingMode,
    pub traceparent: Option<String>,
    /// The order's state sequence number this result announces: each
    /// change of an order takes the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i32>,
    /// `<order_id>:<seq>`: one id per change, to de-duplicate on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_id: Option<String>,
    /// The stored result again, answering a message re-sent for an order
    /// already announced (on the results channel only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<bool>,
    /// The `result_id` of an earlier result this one corrects: an order
    /// reported not placed that turned up at the exchange after all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<String>,
}

fn result_type() -> String {
    "order_result".to_owned()
}

fn amount<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_amount(*value))
}

fn amount_opt<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => amount(value, serializer),
        None => serializer.serialize_none(),
    }
}

impl ExecutionResult {
    /// A result with the contract's `type` and no fill.
    pub fn new(order_id: String, status: OrderStatus, mode: TradingMode, timestamp: i64) -> Self {
        ExecutionResult {
            kind: result_type(),
            order_id,
            status,
            symbol: None,
            side: None,
            quantity: None,
            filled_quantity: Decimal::ZERO,
            price: None,
            fee: Some(Decimal::ZERO),
            fee_asset: None,
            fees: None,
            timestamp,
            client_id: None,
            strategy_id: None,
            bot_id: None,
            error_message: None,
            exchange_order_id: None,
            client_order_id: None,
            mode,
            traceparent: None,
            seq: None,
            result_id: None,
            replay: None,
            corrects: None,
        }
    }

    /// Marks the result as announcing state `seq` of its order.
    pub fn with_seq(mut self, seq: i32) -> Self {
        self.result_id = Some(format!("{}:{seq}", self.order_id));
        self.seq = Some(seq);
        self
    }

    /// The JSON document for the results channel, and the same fields as
    /// text for the results streams (absent ones left out, strings as they
    /// are, anything else as its JSON text), by name.
    pub fn rendered(&self) -> (String, Vec<(&'static str, String)>) {
        let json = serde_json::to_string(self)
            .unwrap_or_else(|err| format!(r#"{{"type":"order_result","error":"{err}"}}"#));
        (json, self.fields())
    }

    /// The stream fields, in the order of their names.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let text = |value: &Option<String>| value.clone();
        let amount = |value: Option<Decimal>| value.map(format_amount);
        let fees = self
            .fees
            .as_ref()
            .and_then(|fees| serde_json::to_string(fees).ok());
        let fields: [(&'static str, Option<String>); 24] = [
            ("bot_id", text(&self.bot_id)),
            ("client_id", text(&self.client_id)),
            ("client_order_id", text(&self.client_order_id)),
            ("corrects", text(&self.corrects)),
            ("error_message", text(&self.error_message)),
            ("exchange_order_id", text(&self.exchange_order_id)),
            ("fee", amount(self.fee)),
            ("fee_asset", text(&self.fee_asset)),
            ("fees", fees),
            ("filled_quantity", amount(Some(self.filled_quantity))),
            ("mode", Some(self.mode.as_str().to_owned())),
            ("order_id", Some(self.order_id.clone())),
            ("price", amount(self.price)),
            ("quantity", amount(self.quantity)),
            ("replay", self.replay.map(|replay| replay.to_string())),
            ("result_id", text(&self.result_id)),
            ("seq", self.seq.map(|seq| seq.to_string())),
            ("side", text(&self.side)),
            ("status", Some(self.status.as_str().to_owned())),
            ("strategy_id", text(&self.strategy_id)),
            ("symbol", text(&self.symbol)),
            ("timestamp", Some(self.timestamp.to_string())),
            ("traceparent", text(&self.traceparent)),
            ("type", Some(self.kind.clone())),
        ];
        fields
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect()
    }

    /// Reads a result back from its JSON (for clients and tests).
    pub fn from_json(text: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::str::FromStr;

    fn filled() -> ExecutionResult {
        let mut result = ExecutionResult::new(
            "o-1".into(),
            OrderStatus::Filled,
            TradingMode::Paper,
            1_764_124_800,
        );
        result.quantity = Some(Decimal::from_str("0.001").unwrap());
        result.filled_quantity = Decimal::from_str("0.001").unwrap();
        result.price = Some(Decimal::from(50_000));
        result.fee = Some(Decimal::from_str("0.05").unwrap());
        result
    }

    #[test]
    fn json_has_the_contract_fields_and_exact_amounts() {
        let json: Value = serde_json::from_str(&filled().rendered().0).unwrap();
        assert_eq!(json["type"], "order_result");
        assert_eq!(json["status"], "FILLED");
        assert_eq!(json["quantity"], "0.00100000");
        assert_eq!(json["price"], "50000.00000000");
        assert_eq!(json["fee"], "0.05000000");
        assert_eq!(json["mode"], "paper");
        assert!(json["timestamp"].is_i64());
    }

    #[test]
    fn fields_are_text_and_skip_absent_values() {
        let (_, fields) = filled().rendered();
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("timestamp"), Some("1764124800"));
        assert_eq!(get("filled_quantity"), Some("0.00100000"));
        assert_eq!(get("error_message"), None);
    }

    /// The fields as the JSON document has them: what `fields` must give.
    fn fields_of_json(result: &ExecutionResult) -> Vec<(String, String)> {
        let Value::Object(map) = serde_json::to_value(result).unwrap() else {
            panic!("a result is an object");
        };
        map.into_iter()
            .filter_map(|(name, value)| match value {
                Value::Null => None,
                Value::String(text) => Some((name, text)),
                other => Some((name, other.to_string())),
            })
            .collect()
    }

    #[test]
    fn stream_fields_are_the_json_documents_fields() {
        let mut full = filled().with_seq(3);
        full.symbol = Some("BTCUSDT".into());
        full.side = Some("BUY".into());
        full.client_id = Some("c".into());
        full.strategy_id = Some("s".into());
        full.bot_id = Some("b".into());
        full.error_message = Some("no \"quote\" \u{e9}".into());
        full.exchange_order_id = Some("x-1".into());
        full.client_order_id = Some("co-1".into());
        full.fee = None;
        full.fee_asset = Some("USDT".into());
        full.fees = Some(BTreeMap::from([
            ("MX".to_owned(), "0.00100000".to_owned()),
            ("USDT".to_owned(), "0.05000000".to_owned()),
        ]));
        full.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        full.replay = Some(true);
        full.corrects = Some("o-1:2".into());
        full.mode = TradingMode::DryRun;
        full.status = OrderStatus::PartiallyFilled;
        for result in [
            ExecutionResult::new("o-2".into(), OrderStatus::Rejected, TradingMode::Mock, -1),
            filled(),
            full,
        ] {
            let fields: Vec<(String, String)> = result
                .rendered()
                .1
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            assert_eq!(fields, fields_of_json(&result));
        }
    }

    #[test]
    fn json_round_trips() {
        let result = filled();
        assert_eq!(
            ExecutionResult::from_json(result.rendered().0.as_bytes()).unwrap(),
            result
        );
    }

    #[test]
    fn statuses_know_which_are_terminal() {
        assert!(OrderStatus::Filled.is_terminal());
        assert!(!OrderStatus::Pending.is_terminal());
        assert_eq!(OrderStatus::parse("rejected"), Some(OrderStatus::Rejected));
    }
}
