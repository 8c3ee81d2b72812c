//! Reading an account's history whole: `myTrades` answers at most 100
//! trades and `allOrders` at most 1 000 orders per request, and neither
//! pages by id, only by time. A window whose answer is full is split in
//! two halves and each read again, until every answer has room to spare,
//! so an order filled in thousands of trades is read in full.

use std::collections::HashSet;

use super::client::MexcClient;
use super::error::MexcError;
use super::model::{OrderId, OrderState, Trade};

/// `myTrades` answers at most this many trades.
pub const TRADES_PER_PAGE: usize = 100;
/// `allOrders` answers at most this many orders.
pub const ORDERS_PER_PAGE: usize = 1_000;
/// Windows read for one history at most: a bound on the requests one
/// search may spend (each split costs two).
const MAX_WINDOWS: usize = 64;

/// A window of exchange time, milliseconds, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Window {
    pub fn new(from_ms: i64, to_ms: i64) -> Self {
        Window {
            from_ms,
            to_ms: to_ms.max(from_ms),
        }
    }

    /// The two halves, or `None` for a window of one millisecond.
    pub fn halves(self) -> Option<(Window, Window)> {
        if self.to_ms <= self.from_ms {
            return None;
        }
        let middle = self.from_ms + (self.to_ms - self.from_ms) / 2;
        Some((
            Window::new(self.from_ms, middle),
            Window::new(middle + 1, self.to_ms),
        ))
    }
}

/// Reads every item of `window` with `read`, which answers at most `page`
/// items per call: a full answer splits its window. `key` tells items
/// apart (windows do not overlap, but a trade on a boundary is kept once).
pub async fn read_all<T, K, F, Fut>(
    window: Window,
    page: usize,
    key: impl Fn(&T) -> K,
    mut read: F,
) -> Result<Vec<T>, MexcError>
where
    K: std::hash::Hash + Eq,
    F: FnMut(Window) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, MexcError>>,
{
    let mut pending = vec![window];
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    let mut windows = 0;
    while let Some(window) = pending.pop() {
        windows += 1;
        if windows > MAX_WINDOWS {
            return Err(MexcError::unknown(format!(
                "the history needs more than {MAX_WINDOWS} requests to read"
            )));
        }
        let items = read(window).await?;
        if items.len() >= page {
            let Some((first, second)) = window.halves() else {
                return Err(MexcError::unknown(format!(
                    "more than {page} items in one millisecond ({})",
                    window.from_ms
                )));
            };
            // The earlier half is read first.
            pending.push(second);
            pending.push(first);
            continue;
        }
        for item in items {
            if seen.insert(key(&item)) {
                all.push(item);
            }
        }
    }
    Ok(all)
}

impl MexcClient {
    /// Every fill of one order in `window`, however many.
    pub async fn trades_of_order(
        &self,
        symbol: &str,
        order_id: &OrderId,
        window: Window,
    ) -> Result<Vec<Trade>, MexcError> {
        read_all(
            window,
            TRADES_PER_PAGE,
            |trade: &Trade| trade.id.clone(),
            |page| self.my_trades_in(symbol, Some(order_id), page),
        )
        .await
    }

    /// Every trade of the account on `symbol` in `window`.
    pub async fn trades_between(
        &self,
        symbol: &str,
        window: Window,
    ) -> Result<Vec<Trade>, MexcError> {
        read_all(
            window,
            TRADES_PER_PAGE,
            |trade: &Trade| trade.id.clone(),
            |page| self.my_trades_in(symbol, None, page),
        )
        .await
    }

    /// Every order of the account on `symbol` created in `window`.
    pub async fn orders_between(
        &self,
        symbol: &str,
        window: Window,
    ) -> Result<Vec<OrderState>, MexcError> {
        read_all(
            window,
            ORDERS_PER_PAGE,
            |order: &OrderState| order.order_id.clone(),
            |page| self.all_orders_in(symbol, page),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history of `times` (ms), served `page` at a time, oldest first.
    async fn read(times: &[i64], page: usize, window: Window) -> Result<Vec<i64>, MexcError> {
        let calls = std::cell::Cell::new(0);
        let found = read_all(
            window,
            page,
            |t: &i64| *t,
            |w| {
                calls.set(calls.get() + 1);
                let mut inside: Vec<i64> = times
                    .iter()
                    .copied()
                    .filter(|t| *t >= w.from_ms && *t <= w.to_ms)
                    .collect();
                inside.truncate(page);
                async move { Ok(inside) }
            },
        )
        .await?;
        Ok(found)
    }

    #[tokio::test]
    async fn a_full_page_splits_the_window_until_everything_is_read() {
        let times: Vec<i64> = (0..350).map(|i| 1_000 + i * 3).collect();
        let mut found = read(&times, 100, Window::new(0, 10_000)).await.unwrap();
        found.sort();
        assert_eq!(found, times);
    }

    #[tokio::test]
    async fn a_page_with_room_is_read_once() {
        let times: Vec<i64> = (0..99).collect();
        assert_eq!(
            read(&times, 100, Window::new(0, 98)).await.unwrap().len(),
            99
        );
    }

    #[tokio::test]
    async fn more_than_a_page_in_one_millisecond_is_an_error_not_a_short_list() {
        let times = vec![5; 100];
        assert!(read(&times, 100, Window::new(0, 10)).await.is_err());
    }

    #[tokio::test]
    async fn windows_split_into_halves_that_cover_it() {
        let (a, b) = Window::new(10, 21).halves().unwrap();
        assert_eq!((a, b), (Window::new(10, 15), Window::new(16, 21)));
        assert_eq!(Window::new(7, 7).halves(), None);
    }
}
