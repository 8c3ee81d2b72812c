//! The documented shapes of the halts API: a halt as stored, a halt to set,
//! and what a change did.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{Example, ParseError, ParseFromJSON, ParseResult, Type};
use poem_openapi::{Object, Union};
use serde_json::Value;

use crate::domain::{Fields, Halt, HaltCommand, HaltScope, is_visible};
use crate::store::entity::halts;

/// What the document's patterns ask of a reason: no NUL (Postgres text
/// cannot hold it) and at least one visible character. The patterns spell
/// white space out rather than say `\s`, which regex engines read
/// differently (ECMA's includes U+FEFF, Python's `re.ASCII` only ASCII).
pub fn is_reason(text: &str) -> bool {
    !text.contains('\0') && text.chars().any(is_visible)
}

/// A halt to set: `scope` says what it stops, and names the id field it
/// needs (`strategy_id`, `bot_id` or `symbol`), as on the kill-switch stream.
#[derive(Debug, Union)]
#[oai(rename = "NewHalt", discriminator_name = "scope", one_of)]
pub enum HaltRequest {
    /// Every order.
    #[oai(mapping = "all")]
    All(HaltAll),
    /// The orders of one `strategy_id`.
    #[oai(mapping = "strategy")]
    Strategy(HaltStrategy),
    /// The orders of one `bot_id`.
    #[oai(mapping = "bot")]
    Bot(HaltBot),
    /// The orders for one symbol (any spelling: `BTC/USDT` is `BTCUSDT`).
    #[oai(mapping = "symbol")]
    Symbol(HaltSymbol),
}

/// A halt to set, read strictly: the document's schema, each of its fields
/// a string when present (the generated parser would take `true` or `12`
/// for one), and then the kill-switch stream's own parser
/// ([`HaltCommand::parse`]), so the API refuses exactly what the stream
/// refuses (an `all` that names an id, an id that breaks the identity
/// rule). Other properties are ignored, as the schema allows.
#[derive(Debug)]
pub struct NewHalt {
    pub request: HaltRequest,
    /// The halt as the stream's parser reads it.
    pub command: HaltCommand,
}

impl Type for NewHalt {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        HaltRequest::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        HaltRequest::schema_ref()
    }

    fn register(registry: &mut Registry) {
        HaltRequest::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromJSON for NewHalt {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        const TEXT_FIELDS: [&str; 6] = [
            "scope",
            "strategy_id",
            "bot_id",
            "symbol",
            "reason",
            "source",
        ];
        let Some(Value::Object(fields)) = &value else {
            return Err(ParseError::custom("a halt is a JSON object"));
        };
        if let Some(name) = TEXT_FIELDS
            .iter()
            .find(|name| fields.get(**name).is_some_and(|v| !v.is_string()))
        {
            return Err(ParseError::custom(format!("{name} must be a string")));
        }
        let mut entry: Fields = TEXT_FIELDS
            .iter()
            .filter_map(|name| Some((name.to_string(), fields.get(*name)?.clone())))
            .collect();
        entry.insert("action".into(), Value::String("halt".into()));
        let command = HaltCommand::parse(&entry).map_err(ParseError::custom)?;
        let request = HaltRequest::parse_from_json(value).map_err(ParseError::propagate)?;
        Ok(NewHalt { request, command })
    }
}

impl NewHalt {
    /// The scope's kind and id, the reason and who sets it.
    pub fn parts(&self) -> (&'static str, Option<&str>, &str, Option<&str>) {
        match &self.request {
            HaltRequest::All(h) => ("all", None, &h.why.reason, h.why.source.as_deref()),
            HaltRequest::Strategy(h) => (
                "strategy",
                Some(&h.strategy_id),
                &h.why.reason,
                h.why.source.as_deref(),
            ),
            HaltRequest::Bot(h) => (
                "bot",
                Some(&h.bot_id),
                &h.why.reason,
                h.why.source.as_deref(),
            ),
            HaltRequest::Symbol(h) => (
                "symbol",
                Some(&h.symbol),
                &h.why.reason,
                h.why.source.as_deref(),
            ),
        }
    }
}

/// Why trading stops, and who stops it: what every halt carries.
#[derive(Debug, Object)]
pub struct HaltWhy {
    /// Why trading stops; repeated in every rejected order's reason.
    #[oai(validator(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\x00]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff][^\x00]*$"
    ))]
    pub reason: String,
    /// Who sets it (logged and stored); `admin-api` when absent.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub source: Option<String>,
}

/// Stop every order.
#[derive(Debug, Object)]
pub struct HaltAll {
    #[oai(flatten)]
    pub why: HaltWhy,
}

/// A halt of the orders carrying one id (`strategy_id`, `bot_id`): the id
/// follows the identity rule, whose pattern is written here once.
macro_rules! halt_of_one_id {
    ($(#[$doc:meta])* $name:ident, $field:ident) => {
        $(#[$doc])*
        #[derive(Debug, Object)]
        pub struct $name {
            #[oai(validator(
                min_length = 1,
                max_length = 255,
                pattern = r"^[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb](?:[^\x00-\x1f\x7f-\x9f\xad\u2000\u2001\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb])?$"
            ))]
            pub $field: String,
            #[oai(flatten)]
            pub why: HaltWhy,
        }
    };
}

halt_of_one_id!(
    /// Stop one strategy's orders.
    HaltStrategy,
    strategy_id
);
halt_of_one_id!(
    /// Stop one bot's orders.
    HaltBot,
    bot_id
);

/// Stop the orders for one symbol.
#[derive(Debug, Object)]
pub struct HaltSymbol {
    /// `BTCUSDT`, `BTC/USDT`, …
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = r"^[A-Za-z0-9]+(?:[/_-][A-Za-z0-9]+)?$"
    ))]
    pub symbol: String,
    #[oai(flatten)]
    pub why: HaltWhy,
}

impl Example for HaltRequest {
    fn example() -> Self {
        HaltRequest::Strategy(HaltStrategy {
            strategy_id: "momentum-v2".into(),
            why: HaltWhy {
                reason: "daily loss limit reached".into(),
                source: Some("desk: j.doe".into()),
            },
        })
    }
}

/// A halt as stored: in force until `lifted_at` is set.
#[derive(Debug, Object)]
#[oai(example)]
pub struct HaltView {
    #[oai(validator(minimum(value = "1")))]
    pub id: i64,
    /// `all`, `strategy`, `bot` or `symbol`.
    pub scope: String,
    /// The strategy, bot or normalised symbol; `null` for `all`.
    #[oai(nullable)]
    pub target: Option<String>,
    pub reason: String,
    pub source: String,
    /// RFC 3339.
    pub set_at: String,
    /// RFC 3339; `null` while in force.
    #[oai(nullable)]
    pub lifted_at: Option<String>,
    #[oai(nullable)]
    pub lifted_by: Option<String>,
    #[oai(nullable)]
    pub lift_reason: Option<String>,
}

impl From<&halts::Model> for HaltView {
    fn from(row: &halts::Model) -> Self {
        HaltView {
            id: row.id,
            scope: row.scope.clone(),
            target: row.target.clone(),
            reason: row.reason.clone(),
            source: row.source.clone(),
            set_at: row.set_at.to_rfc3339(),
            lifted_at: row.lifted_at.map(|t| t.to_rfc3339()),
            lifted_by: row.lifted_by.clone(),
            lift_reason: row.lift_reason.clone(),
        }
    }
}

impl Example for HaltView {
    fn example() -> Self {
        HaltView {
            id: 7,
            scope: "strategy".into(),
            target: Some("momentum-v2".into()),
            reason: "daily loss limit reached".into(),
            source: "desk: j.doe".into(),
            set_at: "2026-11-26T09:30:00+00:00".into(),
            lifted_at: None,
            lifted_by: None,
            lift_reason: None,
        }
    }
}

/// The halts in force and the most recent ones.
#[derive(Debug, Object)]
#[oai(example)]
pub struct HaltList {
    /// In force now, oldest first.
    pub active: Vec<HaltView>,
    /// The most recent halts, lifted or not, newest first.
    pub recent: Vec<HaltView>,
}

impl Example for HaltList {
    fn example() -> Self {
        HaltList {
            active: vec![HaltView::example()],
            recent: vec![HaltView::example()],
        }
    }
}

/// What a change did.
#[derive(Debug, Object)]
#[oai(example)]
pub struct HaltChange {
    /// The kill-switch stream entry that carries it to every replica (or
    /// `direct-…` when the stream was out of reach: replicas then pick it
    /// up from Postgres within a second).
    pub entry_id: String,
    /// The halts set or lifted.
    pub halts: Vec<i64>,
}

impl Example for HaltChange {
    fn example() -> Self {
        HaltChange {
            entry_id: "1764149400000-0".into(),
            halts: vec![7],
        }
    }
}

/// A halt in force, as `/status` lists it.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ActiveHalt {
    pub id: i64,
    /// `all`, `strategy`, `bot` or `symbol`.
    pub scope: String,
    #[oai(nullable)]
    pub target: Option<String>,
    pub reason: String,
}

impl From<&Halt> for ActiveHalt {
    fn from(halt: &Halt) -> Self {
        ActiveHalt {
            id: halt.id,
            scope: halt.scope.kind().into(),
            target: halt.scope.target().map(str::to_owned),
            reason: halt.reason.clone(),
        }
    }
}

impl Example for ActiveHalt {
    fn example() -> Self {
        ActiveHalt::from(&Halt {
            id: 7,
            scope: HaltScope::Strategy("momentum-v2".into()),
            reason: "daily loss limit reached".into(),
        })
    }
}

#[cfg(test)]
mod tests;
