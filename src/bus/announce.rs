//! What a batch tells Redis when it is done: each result on
//! `RESULTS_CHANNEL`, `RESULTS_STREAM` (and `FILLS_STREAM`), the failure
//! notes of dead letters dropped, and only then `XACK` of the entries they
//! answer, in one script: Redis runs it in order and stops at the first
//! command that fails, so an entry is never acknowledged unless everything
//! announced before it was written. A key of the wrong kind (see `keys`)
//! among those a call writes fails it before it writes anything, so the
//! retries of such a batch publish nothing twice. The `#!lua` line makes
//! Redis (7.0 and later) refuse the whole script while it is out of
//! memory, instead of running its `PUBLISH` and failing at the first
//! `XADD`, which each retry would repeat. Dead letters, when a batch has
//! any, are parked on `DLQ_STREAM` after the same check of kinds, in one
//! transaction with the script.

use std::sync::LazyLock;

use super::Pool;
use redis::Script;

use super::keys::{ExpectedKey, WrongKind, wrong_kinds};
use super::{Announce, Announcement, BusError, DeadLetter, Topology};
use crate::domain::ExecutionResult;

/// KEYS: results stream, orders stream, failure notes, fills stream (the
/// results stream again when there is none; not written then), then the
/// announced-state key of each result that has one. ARGV: results
/// channel, MAXLEN, group, the KEYS this call writes (their indexes as
/// digits: their kinds are checked first), whether there is a fills
/// stream, how long an announced-state key lasts (s), then three sections,
/// each a count followed by its items: results (how: `c` a change, `r` an
/// answer to a fresh message, `f` the first answer of a row this batch
/// inserted, `a` always; the KEYS index of its announced-
/// state key, 0 for none; its state sequence number; its JSON; for `r`
/// its JSON as a replay; field count, alias count, fields, aliases: the
/// fields only the fills stream gets, right after the fields, so each
/// stream's entry is one range of ARGV), entries whose failure notes to drop
/// (their dead letters are parked), entry ids to acknowledge (at most
/// `BATCH_SIZE`, 2,000, well within what `unpack` takes).
///
/// A result whose state an earlier call announced (its key holds that
/// sequence number or a later one) is not written again: a change is
/// dropped, an answer goes out on the channel only, as a replay (for `f`,
/// its own JSON with `"replay":true` added).
static ANNOUNCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"#!lua
local kinds = {'stream', 'stream', 'hash', 'stream'}
for i in string.gmatch(ARGV[4], '%d') do
  i = tonumber(i)
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= kinds[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a ' .. kinds[i])
  end
end
local channel, maxlen, group = ARGV[1], ARGV[2], ARGV[3]
local fills, ttl = ARGV[5] == '1', ARGV[6]
local at = 7
local function take()
  local value = ARGV[at]
  at = at + 1
  return value
end
for _ = 1, tonumber(take()) do
  local how, key, seq = take(), tonumber(take()), tonumber(take())
  local json = take()
  local replay = nil
  if how == 'r' then replay = take() end
  local count, aliases = tonumber(take()), tonumber(take())
  local first = at
  local last = first + count - 1
  at = last + aliases + 1
  local news = true
  if key > 0 then
    local known = tonumber(redis.call('GET', KEYS[key]) or '0') or 0
    news = seq > known
  end
  if news then
    redis.call('PUBLISH', channel, json)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, first, last))
    if fills then
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, first, at - 1))
    end
    if key > 0 then
      redis.call('SET', KEYS[key], seq, 'EX', ttl)
    end
  elseif replay then
    redis.call('PUBLISH', channel, replay)
  elseif how == 'f' then
    -- A duplicate's answer announced the change first: this message's
    -- answer is that change again, marked as a replay.
    redis.call('PUBLISH', channel, string.sub(json, 1, -2) .. ',\34replay\34:true}')
  end
end
for _ = 1, tonumber(take()) do
  local noted = take()
  redis.call('HDEL', KEYS[3], noted .. ':first', noted .. ':last')
end
local acks = tonumber(take())
if acks == 0 then
  return 0
end
local acked = redis.call('XACK', KEYS[2], group, unpack(ARGV, at, at + acks - 1))
if redis.call('EXISTS', KEYS[3]) == 1 then
  for i = at, at + acks - 1 do
    redis.call('HDEL', KEYS[3], ARGV[i] .. ':first', ARGV[i] .. ':last')
  end
end
return acked
",
    )
});

/// The original service's names for two result fields, which the fills
/// stream carries beside this service's.
const FILL_ALIASES: [(&str, &str); 2] = [
    ("filled_quantity", "filled_size"),
    ("price", "avg_fill_price"),
];

/// Announces results and `dead` letters, then acknowledges `ack`.
pub(super) async fn announce(
    pool: &Pool,
    topology: &Topology,
    announcements: &[Announcement],
    dead: &[DeadLetter],
    ack: &[String],
) -> Result<(), BusError> {
    if announcements.is_empty() && dead.is_empty() && ack.is_empty() {
        return Ok(());
    }
    let noted: Vec<&str> = dead
        .iter()
        .filter(|letter| letter.failures.first_error.is_some())
        .map(|letter| letter.original_id.as_str())
        .collect();
    // The keys this call writes, with their KEYS indexes.
    let mut writes: Vec<(char, ExpectedKey)> = Vec::new();
    if !announcements.is_empty() {
        writes.push((
            '1',
            ExpectedKey::stream("RESULTS_STREAM", &topology.results_stream),
        ));
        if let Some(fills) = &topology.fills_stream {
            writes.push(('4', ExpectedKey::stream("FILLS_STREAM", fills)));
        }
    }
    if !noted.is_empty() || !ack.is_empty() {
        writes.push(('3', ExpectedKey::failure_notes(topology)));
    }
    if !ack.is_empty() {
        writes.push((
            '2',
            ExpectedKey::stream("ORDERS_STREAM", &topology.orders_stream),
        ));
    }
    let mut call = ANNOUNCE.prepare_invoke();
    call.key(&topology.results_stream)
        .key(&topology.orders_stream)
        .key(topology.failures_key())
        .key(
            topology
                .fills_stream
                .as_ref()
                .unwrap_or(&topology.results_stream),
        );
    // The announced-state keys, from KEYS[5] on.
    let mut next_key = 5;
    let mut key_of = Vec::with_capacity(announcements.len());
    for announcement in announcements {
        match announcement.result.seq {
            Some(_) => {
                call.key(topology.announced_key(&announcement.result.order_id));
                key_of.push(next_key);
                next_key += 1;
            }
            None => key_of.push(0),
        }
    }
    let checks: String = writes.iter().map(|(index, _)| index).collect();
    call.arg(&topology.results_channel)
        .arg(topology.stream_maxlen)
        .arg(&topology.group)
        .arg(checks)
        .arg(if topology.fills_stream.is_some() {
            "1"
        } else {
            "0"
        })
        .arg(topology.announced_ttl_secs);
    call.arg(announcements.len());
    for (announcement, key) in announcements.iter().zip(key_of) {
        let result = &announcement.result;
        let (json, fields) = result.rendered();
        let aliases: Vec<(&str, &str)> = FILL_ALIASES
            .iter()
            .filter_map(|(ours, theirs)| {
                let (_, value) = fields.iter().find(|(name, _)| name == ours)?;
                Some((*theirs, value.as_str()))
            })
            .collect();
        let how = match (key, announcement.kind) {
            (0, _) => "a",
            (_, Announce::Change) => "c",
            (_, Announce::Answer) => "r",
            (_, Announce::FirstAnswer) => "f",
        };
        call.arg(how)
            .arg(key)
            .arg(result.seq.unwrap_or(0))
            .arg(json);
        if how == "r" {
            let replay = ExecutionResult {
                replay: Some(true),
                ..result.clone()
            };
            call.arg(replay.rendered().0);
        }
        call.arg(fields.len() * 2).arg(aliases.len() * 2);
        for (name, value) in &fields {
            call.arg(name).arg(value);
        }
        for (name, value) in aliases {
            call.arg(name).arg(value);
        }
    }
    call.arg(noted.len()).arg(noted).arg(ack.len()).arg(ack);
    if !dead.is_empty() {
        // Checked before the transaction: the script refusing a key there
        // would not undo the letters queued before it, and each retry
        // would park them again.
        let mut expected: Vec<ExpectedKey> = writes.into_iter().map(|(_, key)| key).collect();
        expected.push(ExpectedKey::stream("DLQ_STREAM", &topology.dlq_stream));
        let wrong = wrong_kinds(pool, &expected).await?;
        if !wrong.is_empty() {
            let named: Vec<String> = wrong.iter().map(WrongKind::to_string).collect();
            return Err(BusError::WrongKind(named.join("; ")));
        }
    }
    let mut conn = pool.get().await?;
    if dead.is_empty() {
        let _: u64 = call.invoke_async(&mut conn).await?;
        return Ok(());
    }
    // The letters as plain commands (a dead letter keeps every field its
    // producer wrote, more than a script could pass on to XADD), then the
    // script, in one transaction: refused for memory, nothing of it runs,
    // so a retry parks nothing twice. The script is loaded first, so
    // EVALSHA cannot meet NOSCRIPT after the letters went in.
    call.load_async(&mut conn).await?;
    let mut transaction = redis::pipe();
    transaction.atomic();
    let failed_at = chrono::Utc::now().timestamp();
    for letter in dead {
        let xadd = transaction
            .cmd("XADD")
            .arg(&topology.dlq_stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(topology.stream_maxlen)
            .arg("*");
        for (name, value) in letter.to_fields(topology, failed_at) {
            xadd.arg(name).arg(value);
        }
        xadd.ignore();
    }
    transaction.invoke_script(&call).ignore();
    let () = transaction.query_async(&mut conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::bus::FailureNote;

    #[test]
    fn the_script_drops_the_notes_the_consumer_writes() {
        let (first, last) = FailureNote::fields("1-0");
        assert_eq!((first.as_str(), last.as_str()), ("1-0:first", "1-0:last"));
    }
}
