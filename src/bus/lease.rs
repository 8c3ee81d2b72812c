//! A lease in Redis that one replica of a deployment holds at a time (the
//! user data stream's connection): taken when free or already this
//! replica's, renewed by holding it again before it expires, given back on
//! the way out; a replica that dies loses it when it expires. Beside it, a
//! flag the holder keeps set while what it holds is healthy, which every
//! replica can read.

use std::time::Duration;

use super::Pool;
use redis::Script;

use super::BusError;

/// Takes or renews the lease (`KEYS[1]`) for `ARGV[1]` for `ARGV[2]` ms.
const HOLD: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Gives the lease back, only if it is still `ARGV[1]`'s.
const GIVE_BACK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
";

#[derive(Clone)]
pub struct RedisLease {
    pool: Pool,
    key: String,
    owner: String,
    length: Duration,
}

impl RedisLease {
    /// The lease `key`, held as `owner` for `length` at a time.
    pub fn new(
        pool: Pool,
        key: impl Into<String>,
        owner: impl Into<String>,
        length: Duration,
    ) -> Self {
        RedisLease {
            pool,
            key: key.into(),
            owner: owner.into(),
            length,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Takes the lease, or renews it when it is already this owner's;
    /// whether this owner holds it now.
    pub async fn hold(&self) -> Result<bool, BusError> {
        let mut conn = self.pool.get().await?;
        let held: i64 = Script::new(HOLD)
            .key(&self.key)
            .arg(&self.owner)
            .arg(self.length.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(held == 1)
    }

    /// Gives the lease back (and clears the health flag) if it is still
    /// this owner's.
    pub async fn give_back(&self) -> Result<(), BusError> {
        let mut conn = self.pool.get().await?;
        let _: i64 = Script::new(GIVE_BACK)
            .key(&self.key)
            .key(self.health_key())
            .arg(&self.owner)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Says that what the lease guards is healthy, for `ttl` (unless said
    /// again) or until [`clear_healthy`](Self::clear_healthy).
    pub async fn set_healthy(&self, ttl: Duration) -> Result<(), BusError> {
        let mut conn = self.pool.get().await?;
        let _: () = redis::cmd("SET")
            .arg(self.health_key())
            .arg(&self.owner)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    pub async fn clear_healthy(&self) -> Result<(), BusError> {
        let mut conn = self.pool.get().await?;
        let _: () = redis::cmd("DEL")
            .arg(self.health_key())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Whether the holder (any replica) says it is healthy now.
    pub async fn is_healthy(&self) -> Result<bool, BusError> {
        let mut conn = self.pool.get().await?;
        let set: bool = redis::cmd("EXISTS")
            .arg(self.health_key())
            .query_async(&mut conn)
            .await?;
        Ok(set)
    }

    fn health_key(&self) -> String {
        format!("{}:healthy", self.key)
    }
}
