//! Live trading with `DRY_RUN=true`: every order is checked as a real one
//! would be, against MEXC's rules for its symbol and the service's limits,
//! and, when credentials are set, validated by MEXC itself with
//! `POST /api/v3/order/test`; no order is ever placed. An order that passes
//! fills as in paper trading (at its price, else MEXC's last price), with
//! mode `dry_run`, so everything downstream runs as it would.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::mexc::{
    Limits, MexcClient, MexcError, NewOrder, RuleBook, SymbolRules, TickerPrices, client_order_id,
    mexc_symbol,
};
use super::{Executor, Outcome, PaperExecutor};
use crate::domain::{Order, TradingMode};

/// How long a symbol's rules are trusted before they are fetched again.
const RULES_TTL: Duration = Duration::from_secs(60);

pub struct DryRunExecutor {
    client: MexcClient,
    prices: Arc<TickerPrices>,
    paper: PaperExecutor,
    limits: Limits,
    /// The namespace of the client order ids test orders carry.
    namespace: String,
    /// Each symbol's rules (`None`: MEXC does not list it), and when fetched.
    rules: Mutex<HashMap<String, (Instant, Option<SymbolRules>)>>,
}

impl DryRunExecutor {
    pub fn new(
        client: MexcClient,
        paper: PaperExecutor,
        limits: Limits,
        namespace: String,
    ) -> Self {
        let prices = Arc::new(TickerPrices::new(client.clone()));
        DryRunExecutor {
            paper: paper.with_market_prices(prices.clone()),
            client,
            prices,
            limits,
            namespace,
            rules: Mutex::default(),
        }
    }

    /// The rules of an order's symbol, fetched when unknown or stale.
    async fn rules_for(&self, symbol: &str) -> Result<Option<SymbolRules>, MexcError> {
        let symbol = mexc_symbol(symbol);
        let mut cache = self.rules.lock().await;
        if let Some((at, rules)) = cache.get(&symbol)
            && at.elapsed() < RULES_TTL
        {
            return Ok(rules.clone());
        }
        let info = self
            .client
            .exchange_info(std::slice::from_ref(&symbol))
            .await;
        let rules = match info {
            Ok(info) => RuleBook::from_exchange_info(&info).get(&symbol).cloned(),
            // A symbol MEXC refuses to describe is one it does not list.
            Err(MexcError::Rejected { .. }) => None,
            Err(err) => return Err(err),
        };
        cache.insert(symbol, (Instant::now(), rules.clone()));
        Ok(rules)
    }
}

#[async_trait]
impl Executor for DryRunExecutor {
    fn mode(&self) -> TradingMode {
        TradingMode::DryRun
    }

    async fn execute(&self, order: &Order) -> Outcome {
        let rules = match self.rules_for(&order.symbol).await {
            Ok(rules) => rules,
            Err(err) => return Outcome::Failed(format!("MEXC's rules could not be read: {err}")),
        };
        let reference = match order.price {
            Some(_) => None,
            None => self.prices.price(&order.symbol).await.ok(),
        };
        if let Err(failure) =
            super::mexc::check_order(order, rules.as_ref(), &self.limits, reference)
        {
            return Outcome::Rejected(failure.to_string());
        }
        if self.client.has_credentials() {
            let test =
                NewOrder::for_order(order, client_order_id(&self.namespace, &order.order_id));
            match self.client.test_order(&test).await {
                Ok(()) => {}
                Err(err @ MexcError::Rejected { .. }) => {
                    return Outcome::Rejected(format!("MEXC refused the test order: {err}"));
                }
                Err(err) => {
                    return Outcome::Failed(format!("MEXC's order test did not answer: {err}"));
                }
            }
        }
        self.paper.fill_at_market(order).await
    }
}
