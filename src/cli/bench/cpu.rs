//! The CPU each process spent per order over a run: the service, the
//! Postgres processes of this host and Redis, read before and after.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::Settings;

/// CPU seconds spent so far by the service (its `/metrics`), by each
/// process of this host named `postgres` (`/proc`, by process id: the
/// bench must run on the database's host to see them), and by Redis
/// (`INFO cpu`).
#[derive(Debug, Clone, Default)]
pub(super) struct CpuSample {
    service: Option<f64>,
    postgres: Option<HashMap<u32, f64>>,
    redis: Option<f64>,
}

impl CpuSample {
    pub(super) async fn take(metrics_url: &str, settings: &Settings) -> Self {
        CpuSample {
            service: service_cpu_seconds(metrics_url).await,
            postgres: postgres_cpu_seconds(),
            redis: redis_cpu_seconds(settings).await,
        }
    }

    /// Microseconds of CPU per order between `self` and `after`, each
    /// process's share and their sum.
    pub(super) fn per_order(&self, after: &CpuSample, orders: usize) -> String {
        let share = |before: Option<f64>, after: Option<f64>| {
            Some((after? - before?) * 1e6 / orders as f64)
        };
        // A backend that ended meanwhile took its time with it; one that
        // started counts from nothing.
        let postgres = match (&self.postgres, &after.postgres) {
            (Some(before), Some(after)) => Some(
                after
                    .iter()
                    .map(|(pid, spent)| (spent - before.get(pid).copied().unwrap_or(0.0)).max(0.0))
                    .sum::<f64>()
                    * 1e6
                    / orders as f64,
            ),
            _ => None,
        };
        let parts = [
            ("service", share(self.service, after.service)),
            ("postgres", postgres),
            ("redis", share(self.redis, after.redis)),
        ];
        let total: f64 = parts.iter().filter_map(|(_, us)| *us).sum();
        let shown: Vec<String> = parts
            .iter()
            .map(|(name, us)| match us {
                Some(us) => format!("{name}={us:.1}"),
                None => format!("{name}=unknown"),
            })
            .collect();
        format!(
            "cpu_us_per_order {} total={total:.1} (service from its /metrics, Postgres from /proc, Redis from INFO cpu)",
            shown.join(" ")
        )
    }
}

/// `process_cpu_seconds_total` of the service's `/metrics`.
async fn service_cpu_seconds(url: &str) -> Option<f64> {
    let text = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?
        .get(url)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("process_cpu_seconds_total "))
        .and_then(|value| value.trim().parse().ok())
}

/// User and system CPU of each process named `postgres` on this host, by
/// process id.
fn postgres_cpu_seconds() -> Option<HashMap<u32, f64>> {
    let mut spent = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        if std::fs::read_to_string(path.join("comm")).is_ok_and(|comm| comm.trim() == "postgres")
            && let Ok(stat) = std::fs::read_to_string(path.join("stat"))
            && let Some(ticks) = crate::stats::proc_cpu_ticks(&stat)
        {
            spent.insert(pid, ticks as f64 / crate::stats::CLOCK_TICKS_PER_SEC);
        }
    }
    (!spent.is_empty()).then_some(spent)
}

/// `used_cpu_sys` plus `used_cpu_user` of Redis' `INFO cpu`.
async fn redis_cpu_seconds(settings: &Settings) -> Option<f64> {
    let client = crate::app::redis_target(settings)
        .ok()?
        .client()
        .await
        .ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn)
        .await
        .ok()?;
    redis_cpu_from_info(&info)
}

fn redis_cpu_from_info(info: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
    };
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_cpu_is_its_system_and_user_time() {
        let info = "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:0.750000\r\n\
                    used_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\n";
        assert_eq!(redis_cpu_from_info(info), Some(2.0));
        assert_eq!(redis_cpu_from_info("# CPU\r\n"), None);
    }

    #[test]
    fn cpu_per_order_names_each_process_and_what_is_unknown() {
        // Backend 7 ended during the run, 9 started.
        let before = CpuSample {
            service: Some(1.0),
            postgres: Some(HashMap::from([(5, 10.0), (7, 4.0)])),
            redis: None,
        };
        let after = CpuSample {
            service: Some(2.0),
            postgres: Some(HashMap::from([(5, 12.0), (9, 0.5)])),
            redis: Some(3.0),
        };
        let line = before.per_order(&after, 50_000);
        assert!(line.contains("service=20.0"), "{line}");
        assert!(line.contains("postgres=50.0"), "{line}");
        assert!(line.contains("redis=unknown"), "{line}");
        assert!(line.contains("total=70.0"), "{line}");
    }
}
