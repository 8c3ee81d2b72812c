//! Live trading with `DRY_RUN=true`: every order is checked as a real one
//! would be, against MEXC's rules for its symbol and the service's limits,
//! and, when credentials are set, validated by MEXC itself with
//! `POST /api/v3/order/test`; no order is ever placed. An order that passes
//! fills as in paper trading (at its price, else MEXC's last price), with
//! mode `dry_run`, so everything downstream runs as it would.

use std::sync::Arc;

use async_trait::async_trait;

use super::mexc::{
    Limits, MexcClient, MexcError, NewOrder, RuleCache, TickerPrices, client_order_id,
};
use super::{Executor, Outcome, PaperExecutor};
use crate::domain::{Order, TradingMode};

pub struct DryRunExecutor {
    client: MexcClient,
    prices: Arc<TickerPrices>,
    paper: PaperExecutor,
    limits: Limits,
    /// The namespace of the client order ids test orders carry.
    namespace: String,
    rules: RuleCache,
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
            rules: RuleCache::new(client.clone()),
            client,
            prices,
            limits,
            namespace,
        }
    }
}

#[async_trait]
impl Executor for DryRunExecutor {
    fn mode(&self) -> TradingMode {
        TradingMode::DryRun
    }

    async fn execute(&self, order: &Order) -> Outcome {
        let rules = match self.rules.rules_for(&order.symbol).await {
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
