//! How orders are executed: the mode, the paper and mock parameters and
//! the reference prices.

use std::collections::HashMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::PaperPriceSource;
use super::env::Env;
use crate::domain::parse_amount;

/// `TRADING_MODE`: how orders are executed. A dry run is `Live` with
/// `DRY_RUN=true`, not a mode of its own (results still say `dry_run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Paper,
    Mock,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Paper => "paper",
            Mode::Mock => "mock",
            Mode::Live => "live",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TradingSettings {
    pub mode: Mode,
    pub dry_run: bool,
    pub paper_fee_rate: Decimal,
    /// Prices a MARKET order without a price fills at in paper mode, by
    /// normalised symbol (`BTCUSDT`).
    pub reference_prices: HashMap<String, Decimal>,
    /// `PAPER_PRICE_SOURCE`: whether paper MARKET orders without a price
    /// fill at MEXC's ticker price (reference prices stay the fallback).
    pub paper_price_source: PaperPriceSource,
    pub mock_success_rate: f64,
    pub mock_seed: u64,
    pub mock_max_slippage_bps: Decimal,
}

pub(super) fn trading_settings(env: &mut Env<'_>) -> TradingSettings {
    let mode_text = env.text("TRADING_MODE", "paper");
    let mode = [Mode::Paper, Mode::Mock, Mode::Live]
        .into_iter()
        .find(|mode| mode.as_str().eq_ignore_ascii_case(mode_text.trim()))
        .unwrap_or_else(|| {
            env.invalid("TRADING_MODE", &mode_text, "paper, mock or live");
            Mode::Paper
        });
    // A fee of a tenth of the notional is already far beyond any venue's.
    let paper_fee_rate = env.amount_in(
        "PAPER_FEE_RATE",
        "0.001",
        Decimal::ZERO..=Decimal::new(1, 1),
    );
    let mock_success_rate = env
        .amount_in("MOCK_SUCCESS_RATE", "0.95", Decimal::ZERO..=Decimal::ONE)
        .to_f64()
        .unwrap_or_default();
    let paper_price_source = super::mexc::paper_price_source(env);
    // A default table would stand in for MEXC's prices, or for an
    // operator's, as if it were either.
    let defaults = mode != Mode::Live && paper_price_source == PaperPriceSource::Reference;
    TradingSettings {
        mode,
        dry_run: env.flag("DRY_RUN", true),
        paper_fee_rate,
        reference_prices: reference_prices(env, defaults),
        paper_price_source,
        mock_success_rate,
        mock_seed: env.ranged("MOCK_SEED", 42, 0..=u64::MAX),
        // 10 000 bps would price a SELL at zero, and more below it.
        mock_max_slippage_bps: env.amount_in(
            "MOCK_MAX_SLIPPAGE_BPS",
            "10",
            Decimal::ZERO..=Decimal::from(1000),
        ),
    }
}

/// The reference prices of the simulated modes when
/// `PAPER_REFERENCE_PRICES` is unset: round figures so that a MARKET order
/// without a price fills out of the box, not market prices.
pub const DEFAULT_REFERENCE_PRICES: &str = "BTCUSDT=50000,ETHUSDT=3000";

/// `PAPER_REFERENCE_PRICES=BTCUSDT=50000,ETH/USDT=3000`; set empty, none.
/// Unset, [`DEFAULT_REFERENCE_PRICES`] when `defaults` (paper and mock
/// mode with reference prices as the price source), else none: real
/// orders' notional checks, and paper fills when MEXC's ticker cannot be
/// read, must never rest on made-up prices.
fn reference_prices(env: &mut Env<'_>, defaults: bool) -> HashMap<String, Decimal> {
    let text = match env.var("PAPER_REFERENCE_PRICES") {
        Some(text) => text,
        None if defaults => DEFAULT_REFERENCE_PRICES.to_owned(),
        None => String::new(),
    };
    let mut prices = HashMap::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        match pair
            .split_once('=')
            .map(|(symbol, price)| (symbol, parse_amount(price)))
        {
            Some((symbol, Ok(price))) if price > Decimal::ZERO => {
                prices.insert(crate::domain::normalise_symbol(symbol), price);
            }
            _ => env.invalid(
                "PAPER_REFERENCE_PRICES",
                pair,
                "SYMBOL=PRICE pairs separated by commas",
            ),
        }
    }
    prices
}
