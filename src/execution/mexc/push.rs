//! The frames of MEXC's user data stream: protobuf `PushDataV3ApiWrapper`
//! messages, written here from the field numbers MEXC publishes
//! (`PushDataV3ApiWrapper.proto`, `PrivateOrdersV3Api.proto`,
//! `PrivateDealsV3Api.proto`), and read into the same typed answers a REST
//! lookup gives: an order push is an [`OrderState`], a deal push a
//! [`Trade`]. Amounts are read from their text, never through a float; a
//! frame whose amounts or status do not read is an error naming its
//! channel, never a silently empty event.

use std::str::FromStr;

use prost::Message;
use rust_decimal::Decimal;

use super::{ExchangeStatus, OrderId, OrderState, Trade};

/// The private orders channel: one push per change of an order.
pub const ORDERS_CHANNEL: &str = "spot@private.orders.v3.api.pb";
/// The private deals channel: one push per fill.
pub const DEALS_CHANNEL: &str = "spot@private.deals.v3.api.pb";

/// `PushDataV3ApiWrapper`: the channel, one body, and the symbol and times.
/// Bodies of the public channels are not read (their tags are skipped).
#[derive(Clone, PartialEq, Message)]
pub struct Wrapper {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(oneof = "Body", tags = "304, 306, 307")]
    pub body: Option<Body>,
    #[prost(string, optional, tag = "3")]
    pub symbol: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub symbol_id: Option<String>,
    #[prost(int64, optional, tag = "5")]
    pub create_time: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    pub send_time: Option<i64>,
}

/// The wrapper's `body`, for the private channels.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "304")]
    PrivateOrders(PrivateOrders),
    #[prost(message, tag = "306")]
    PrivateDeals(PrivateDeals),
    #[prost(message, tag = "307")]
    PrivateAccount(PrivateAccount),
}

/// `PrivateOrdersV3Api` (the fields this service reads and the ones beside
/// them, so that a frame re-encodes as it came).
#[derive(Clone, PartialEq, Message)]
pub struct PrivateOrders {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub client_id: String,
    #[prost(string, tag = "3")]
    pub price: String,
    #[prost(string, tag = "4")]
    pub quantity: String,
    #[prost(string, tag = "5")]
    pub amount: String,
    #[prost(string, tag = "6")]
    pub avg_price: String,
    /// 1 LIMIT, 2 POST_ONLY, 3 IOC, 4 FOK, 5 MARKET, 100 stop.
    #[prost(int32, tag = "7")]
    pub order_type: i32,
    /// 1 buy, 2 sell.
    #[prost(int32, tag = "8")]
    pub trade_type: i32,
    #[prost(bool, tag = "9")]
    pub is_maker: bool,
    #[prost(string, tag = "10")]
    pub remain_amount: String,
    #[prost(string, tag = "11")]
    pub remain_quantity: String,
    #[prost(string, optional, tag = "12")]
    pub last_deal_quantity: Option<String>,
    #[prost(string, tag = "13")]
    pub cumulative_quantity: String,
    #[prost(string, tag = "14")]
    pub cumulative_amount: String,
    /// 1 new, 2 filled, 3 partially filled, 4 canceled, 5 partially canceled.
    #[prost(int32, tag = "15")]
    pub status: i32,
    #[prost(int64, tag = "16")]
    pub create_time: i64,
}

/// `PrivateDealsV3Api`.
#[derive(Clone, PartialEq, Message)]
pub struct PrivateDeals {
    #[prost(string, tag = "1")]
    pub price: String,
    #[prost(string, tag = "2")]
    pub quantity: String,
    #[prost(string, tag = "3")]
    pub amount: String,
    #[prost(int32, tag = "4")]
    pub trade_type: i32,
    #[prost(bool, tag = "5")]
    pub is_maker: bool,
    #[prost(bool, tag = "6")]
    pub is_self_trade: bool,
    #[prost(string, tag = "7")]
    pub trade_id: String,
    #[prost(string, tag = "8")]
    pub client_order_id: String,
    #[prost(string, tag = "9")]
    pub order_id: String,
    #[prost(string, tag = "10")]
    pub fee_amount: String,
    #[prost(string, tag = "11")]
    pub fee_currency: String,
    #[prost(int64, tag = "12")]
    pub time: i64,
}

/// `PrivateAccountV3Api`: balance changes; subscribed to by nobody here,
/// read only so that such a frame is known rather than undecodable.
#[derive(Clone, PartialEq, Message)]
pub struct PrivateAccount {
    #[prost(string, tag = "1")]
    pub vcoin_name: String,
}

/// What one frame of the stream says.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// An order changed: its state as a lookup would describe it, and the
    /// client order id it carries.
    Order {
        client_order_id: String,
        state: OrderState,
    },
    /// A fill, with the client order id of its order.
    Deal {
        client_order_id: String,
        trade: Trade,
    },
    /// A frame of a channel this service does not act on (an account
    /// change, a public channel): counted, not applied.
    Other { channel: String },
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a frame of channel {channel:?} does not decode: {reason}")]
pub struct FrameError {
    /// The channel, when the wrapper itself decoded; `?` otherwise.
    pub channel: String,
    pub reason: String,
}

impl FrameError {
    fn new(channel: &str, reason: impl Into<String>) -> Self {
        FrameError {
            channel: channel.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Reads one binary frame.
pub fn decode(frame: &[u8]) -> Result<Push, FrameError> {
    let wrapper = Wrapper::decode(frame).map_err(|e| FrameError::new("?", e.to_string()))?;
    let channel = wrapper.channel.as_str();
    let symbol = wrapper.symbol.clone().unwrap_or_default();
    match wrapper.body {
        Some(Body::PrivateOrders(order)) => order_push(channel, symbol, order),
        Some(Body::PrivateDeals(deal)) => deal_push(channel, symbol, deal),
        Some(Body::PrivateAccount(_)) => Ok(Push::Other {
            channel: channel.to_owned(),
        }),
        None if channel == ORDERS_CHANNEL || channel == DEALS_CHANNEL => {
            Err(FrameError::new(channel, "the frame carries no body"))
        }
        None => Ok(Push::Other {
            channel: channel.to_owned(),
        }),
    }
}

fn order_push(channel: &str, symbol: String, order: PrivateOrders) -> Result<Push, FrameError> {
    let amount = |name: &str, text: &str| amount(channel, name, text);
    let status = match order.status {
        1 => ExchangeStatus::New,
        2 => ExchangeStatus::Filled,
        3 => ExchangeStatus::PartiallyFilled,
        4 => ExchangeStatus::Canceled,
        5 => ExchangeStatus::PartiallyCanceled,
        other => return Err(FrameError::new(channel, format!("order status {other}"))),
    };
    if order.client_id.is_empty() {
        // Placed without one (on the website): not this service's.
        return Ok(Push::Other {
            channel: channel.to_owned(),
        });
    }
    if symbol.is_empty() {
        return Err(FrameError::new(channel, "the frame names no symbol"));
    }
    let state = OrderState {
        symbol,
        order_id: OrderId(order.id),
        client_order_id: Some(order.client_id.clone()),
        orig_client_order_id: None,
        price: optional_amount(channel, "price", &order.price)?,
        orig_qty: optional_amount(channel, "quantity", &order.quantity)?,
        executed_qty: amount("cumulativeQuantity", &order.cumulative_quantity)?,
        cummulative_quote_qty: amount("cumulativeAmount", &order.cumulative_amount)?,
        status,
        order_type: Some(order_type_name(order.order_type).to_owned()),
        side: side_name(order.trade_type).map(str::to_owned),
        time: Some(order.create_time).filter(|t| *t > 0),
        update_time: None,
    };
    Ok(Push::Order {
        client_order_id: order.client_id,
        state,
    })
}

fn deal_push(channel: &str, symbol: String, deal: PrivateDeals) -> Result<Push, FrameError> {
    if deal.client_order_id.is_empty() {
        // A fill of an order placed without a client id: not ours.
        return Ok(Push::Other {
            channel: channel.to_owned(),
        });
    }
    if deal.trade_id.is_empty() || deal.order_id.is_empty() {
        return Err(FrameError::new(
            channel,
            "the deal carries no trade or order id",
        ));
    }
    let price = amount(channel, "price", &deal.price)?;
    let qty = amount(channel, "quantity", &deal.quantity)?;
    let trade = Trade {
        symbol,
        id: deal.trade_id,
        order_id: OrderId(deal.order_id),
        price,
        qty,
        quote_qty: optional_amount(channel, "amount", &deal.amount)?.unwrap_or_default(),
        commission: optional_amount(channel, "feeAmount", &deal.fee_amount)?.unwrap_or_default(),
        commission_asset: Some(deal.fee_currency).filter(|asset| !asset.is_empty()),
        time: Some(deal.time).filter(|t| *t > 0),
        is_buyer: side_name(deal.trade_type).map(|side| side == "BUY"),
        is_maker: Some(deal.is_maker),
        client_order_id: Some(deal.client_order_id.clone()),
    };
    Ok(Push::Deal {
        client_order_id: deal.client_order_id,
        trade,
    })
}

/// An amount MEXC must send: a plain decimal, not negative.
fn amount(channel: &str, name: &str, text: &str) -> Result<Decimal, FrameError> {
    optional_amount(channel, name, text)?
        .ok_or_else(|| FrameError::new(channel, format!("{name} is missing")))
}

/// An amount MEXC may leave empty (a MARKET order's price).
fn optional_amount(channel: &str, name: &str, text: &str) -> Result<Option<Decimal>, FrameError> {
    if text.is_empty() {
        return Ok(None);
    }
    let value = Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| FrameError::new(channel, format!("{name} {text:?} is not a decimal")))?;
    if value.is_sign_negative() {
        return Err(FrameError::new(
            channel,
            format!("{name} {text} is negative"),
        ));
    }
    Ok(Some(value))
}

fn side_name(trade_type: i32) -> Option<&'static str> {
    match trade_type {
        1 => Some("BUY"),
        2 => Some("SELL"),
        _ => None,
    }
}

fn order_type_name(order_type: i32) -> &'static str {
    match order_type {
        1 => "LIMIT",
        2 => "LIMIT_MAKER",
        3 => "IMMEDIATE_OR_CANCEL",
        4 => "FILL_OR_KILL",
        5 => "MARKET",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests;
