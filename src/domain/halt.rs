//! Trading halts: what a kill-switch entry asks for, what a halt covers,
//! and the reason an order covered by one is rejected with.
//!
//! The invariant: an entry that cannot be understood halts and resumes
//! nothing. Every field is checked; an unknown action or scope, a scope
//! without its id, an `all` with one, or a missing reason is refused with
//! the reason, never guessed at.

use std::fmt;

use super::identity::{id_problem, symbol_problem};
use super::message::Fields;
use super::order::{Order, normalise_symbol};
use super::{MAX_ID_LEN, SYMBOL_COLUMN_LEN};

/// What a halt stops: everything, or one strategy, bot or symbol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HaltScope {
    All,
    Strategy(String),
    Bot(String),
    /// Held normalised (`BTCUSDT`), so every spelling of a market matches.
    Symbol(String),
}

impl HaltScope {
    /// `all`, `strategy`, `bot` or `symbol`.
    pub fn kind(&self) -> &'static str {
        match self {
            HaltScope::All => "all",
            HaltScope::Strategy(_) => "strategy",
            HaltScope::Bot(_) => "bot",
            HaltScope::Symbol(_) => "symbol",
        }
    }

    /// The strategy, bot or symbol the scope names.
    pub fn target(&self) -> Option<&str> {
        match self {
            HaltScope::All => None,
            HaltScope::Strategy(id) | HaltScope::Bot(id) | HaltScope::Symbol(id) => Some(id),
        }
    }

    /// The scope a kind and its id make, or why they make none. The id
    /// meets the rule every id meets ([`id_problem`], [`symbol_problem`]):
    /// a halt covers exactly the orders that carry its id as written, and
    /// an id an order could not carry is refused, never trimmed into one.
    pub fn new(kind: &str, target: Option<&str>) -> Result<Self, String> {
        let kind = kind.trim().to_ascii_lowercase();
        let named = |field: &str| match target {
            None => Err(format!("scope {kind} needs {field}")),
            Some(id) => match id_problem(field, id, MAX_ID_LEN) {
                Some(problem) => Err(problem),
                None => Ok(id.to_owned()),
            },
        };
        match kind.as_str() {
            "all" if target.is_some() => Err("scope all names no strategy, bot or symbol".into()),
            "all" => Ok(HaltScope::All),
            "strategy" => named("strategy_id").map(HaltScope::Strategy),
            "bot" => named("bot_id").map(HaltScope::Bot),
            "symbol" => {
                let symbol = target.ok_or("scope symbol needs symbol")?;
                if let Some(problem) = symbol_problem(symbol, SYMBOL_COLUMN_LEN) {
                    return Err(problem);
                }
                Ok(HaltScope::Symbol(normalise_symbol(symbol)))
            }
            other => Err(format!(
                "scope {other:?} is not all, strategy, bot or symbol"
            )),
        }
    }

    /// Whether an order falls under this scope.
    pub fn covers(&self, order: &Order) -> bool {
        self.covers_ids(
            order.strategy_id.as_deref(),
            order.bot_id.as_deref(),
            &order.market(),
        )
    }

    /// Whether an order of this strategy, bot and (normalised) market is
    /// covered.
    pub fn covers_ids(
        &self,
        strategy_id: Option<&str>,
        bot_id: Option<&str>,
        market: &str,
    ) -> bool {
        match self {
            HaltScope::All => true,
            HaltScope::Strategy(id) => strategy_id == Some(id.as_str()),
            HaltScope::Bot(id) => bot_id == Some(id.as_str()),
            HaltScope::Symbol(symbol) => market == symbol,
        }
    }

    /// The entry field that carries this scope's id.
    pub fn target_field(&self) -> Option<&'static str> {
        match self {
            HaltScope::All => None,
            HaltScope::Strategy(_) => Some("strategy_id"),
            HaltScope::Bot(_) => Some("bot_id"),
            HaltScope::Symbol(_) => Some("symbol"),
        }
    }
}

impl fmt::Display for HaltScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target() {
            None => f.write_str("all"),
            Some(target) => write!(f, "{} {target}", self.kind()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltAction {
    Halt,
    Resume,
}

impl HaltAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HaltAction::Halt => "halt",
            HaltAction::Resume => "resume",
        }
    }
}

/// A character that shows: not white space (Unicode's, which `str::trim`
/// removes), not a control character, not U+FEFF (a byte-order mark, white
/// space to ECMAScript's regular expressions).
pub fn is_visible(c: char) -> bool {
    !matches!(c,
        '\0'..=' '
        | '\u{7f}'..='\u{a0}'
        | '\u{1680}'
        | '\u{2000}'..='\u{200a}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{202f}'
        | '\u{205f}'
        | '\u{3000}'
        | '\u{feff}')
}

/// One kill-switch entry, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltCommand {
    pub action: HaltAction,
    pub scope: HaltScope,
    pub reason: String,
    /// Who asked: a service, an operator, the admin API.
    pub source: String,
    /// A resume that lifts one halt only (`halt_id`: the admin API's lift
    /// by id), whatever else is in force for its scope; without it a
    /// resume lifts every active halt of its scope.
    pub halt_id: Option<i64>,
}

/// Longest reason or source kept.
const MAX_TEXT_LEN: usize = 1_000;

impl HaltCommand {
    /// Reads an entry's fields (`action`, `scope`, the scope's id,
    /// `reason`, `source`). A halt needs a reason; a resume may omit it.
    pub fn parse(fields: &Fields) -> Result<Self, String> {
        let text = |name: &str| -> Result<Option<String>, String> {
            match fields.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(format!("{name} must be text")),
            }
        };
        let action = match text("action")?
            .map(|a| a.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("halt") => HaltAction::Halt,
            Some("resume") => HaltAction::Resume,
            Some(other) => return Err(format!("action {other:?} is not halt or resume")),
            None => return Err("action is required (halt or resume)".into()),
        };
        let kind = text("scope")?.ok_or("scope is required (all, strategy, bot or symbol)")?;
        let target_field = match kind.trim().to_ascii_lowercase().as_str() {
            "strategy" => Some("strategy_id"),
            "bot" => Some("bot_id"),
            "symbol" => Some("symbol"),
            _ => None,
        };
        // `all` takes no id: one given anyway is a mistake, not noise.
        let target = match target_field {
            Some(field) => text(field)?,
            None => ["strategy_id", "bot_id", "symbol"]
                .into_iter()
                .map(text)
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .find(|t| !t.trim().is_empty()),
        };
        let scope = HaltScope::new(&kind, target.as_deref())?;
        let bounded = |name: &str, value: Option<String>| -> Result<Option<String>, String> {
            match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                Some(v) if v.chars().count() > MAX_TEXT_LEN || v.contains('\0') => Err(format!(
                    "{name} must be at most {MAX_TEXT_LEN} characters, without NUL"
                )),
                other => Ok(other),
            }
        };
        let reason = bounded("reason", text("reason")?)?;
        let source = bounded("source", text("source")?)?;
        let reason = match (action, reason) {
            (_, Some(reason)) => reason,
            (HaltAction::Halt, None) => return Err("a halt needs a reason".into()),
            (HaltAction::Resume, None) => String::new(),
        };
        let halt_id = match (action, text("halt_id")?) {
            (_, None) => None,
            (HaltAction::Halt, Some(_)) => {
                return Err("halt_id names a halt to lift; a halt takes none".into());
            }
            (HaltAction::Resume, Some(text)) => match text.parse::<i64>() {
                Ok(id) if id > 0 && id.to_string() == text => Some(id),
                _ => {
                    return Err(format!(
                        "halt_id {text:?} is not a halt's id (a positive whole number)"
                    ));
                }
            },
        };
        Ok(HaltCommand {
            action,
            scope,
            reason,
            source: source.unwrap_or_else(|| "unknown".into()),
            halt_id,
        })
    }

    /// Reads a stream entry as stored: every field name and value must be
    /// text, and no name may repeat.
    pub fn from_entry(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Self, String> {
        let mut map = Fields::new();
        for (name, value) in fields {
            let name = std::str::from_utf8(name).map_err(|_| {
                format!(
                    "field name {:?} is not UTF-8",
                    String::from_utf8_lossy(name)
                )
            })?;
            let value =
                std::str::from_utf8(value).map_err(|_| format!("field {name} is not UTF-8"))?;
            if map
                .insert(name.to_owned(), serde_json::Value::String(value.to_owned()))
                .is_some()
            {
                return Err(format!("duplicate field {name:?}"));
            }
        }
        Self::parse(&map)
    }

    /// The entry's fields, as written to the kill-switch stream.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("action", self.action.as_str().to_owned()),
            ("scope", self.scope.kind().to_owned()),
        ];
        if let (Some(field), Some(target)) = (self.scope.target_field(), self.scope.target()) {
            fields.push((field, target.to_owned()));
        }
        fields.push(("reason", self.reason.clone()));
        fields.push(("source", self.source.clone()));
        if let Some(id) = self.halt_id {
            fields.push(("halt_id", id.to_string()));
        }
        fields
    }
}

/// An active halt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt {
    pub id: i64,
    pub scope: HaltScope,
    pub reason: String,
}

impl Halt {
    /// The reject reason of an order this halt covers.
    pub fn reject_reason(&self) -> String {
        format!("halted: {} {}", self.scope, self.reason)
    }
}

/// Why `order` must not trade, if an active halt covers it (the oldest
/// such halt speaks).
pub fn halted_reason(halts: &[Halt], order: &Order) -> Option<String> {
    halted_reason_for(
        halts,
        order.strategy_id.as_deref(),
        order.bot_id.as_deref(),
        &order.market(),
    )
}

/// [`halted_reason`] for an order known by its strategy, bot and
/// (normalised) market, such as a stored one.
pub fn halted_reason_for(
    halts: &[Halt],
    strategy_id: Option<&str>,
    bot_id: Option<&str>,
    market: &str,
) -> Option<String> {
    halts
        .iter()
        .filter(|halt| halt.scope.covers_ids(strategy_id, bot_id, market))
        .min_by_key(|halt| halt.id)
        .map(Halt::reject_reason)
}

#[cfg(test)]
mod tests;
