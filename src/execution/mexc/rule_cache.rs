//! MEXC's rules per symbol, fetched on first use and trusted for a minute,
//! so pre-trade checks need no request per order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{MexcClient, MexcError, RuleBook, SymbolRules, mexc_symbol};

/// How long a symbol's rules are trusted before they are fetched again.
pub const RULES_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct RuleCache {
    client: MexcClient,
    /// Each symbol's rules (`None`: MEXC does not list it), and when fetched.
    rules: Mutex<HashMap<String, (Instant, Option<SymbolRules>)>>,
}

impl RuleCache {
    pub fn new(client: MexcClient) -> Self {
        RuleCache {
            client,
            rules: Mutex::default(),
        }
    }

    /// The rules of a symbol (`None` when MEXC does not list it), fetched
    /// when unknown or stale.
    pub async fn rules_for(&self, symbol: &str) -> Result<Option<SymbolRules>, MexcError> {
        self.rules_within(symbol, RULES_TTL).await
    }

    /// The rules of a symbol fetched at most `max_age` ago (before an order
    /// is refused on them: a symbol paused and resumed is tradable again
    /// at once, not a minute later).
    pub async fn rules_within(
        &self,
        symbol: &str,
        max_age: Duration,
    ) -> Result<Option<SymbolRules>, MexcError> {
        let symbol = mexc_symbol(symbol);
        let mut cache = self.rules.lock().await;
        if let Some((at, rules)) = cache.get(&symbol)
            && at.elapsed() < max_age.min(RULES_TTL)
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

    /// Forgets a symbol's rules (MEXC refused an order on a symbol rule), so
    /// the next order reads them afresh.
    pub async fn forget(&self, symbol: &str) {
        self.rules.lock().await.remove(&mexc_symbol(symbol));
    }
}
