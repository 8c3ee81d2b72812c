//! Reading variables: each typed read falls back to its default and records
//! a bad value, so one error can name every variable at once.

use std::collections::HashSet;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use rust_decimal::Decimal;
use secrecy::SecretString;

use crate::domain::parse_amount;

/// A variable source that records every invalid value it meets.
pub(super) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(super) errors: Vec<String>,
    /// Names of the variables with an invalid value.
    bad: HashSet<String>,
}

impl<'a> Env<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env {
            lookup,
            errors: Vec::new(),
            bad: HashSet::new(),
        }
    }

    pub(super) fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    pub(super) fn invalid(&mut self, name: &str, value: impl std::fmt::Debug, expected: &str) {
        self.errors.push(format!(
            "{name}={value:?} is not valid: expected {expected}"
        ));
        self.bad.insert(name.to_owned());
    }

    /// Whether every one of these variables held a usable value, so that a
    /// rule relating them is worth checking.
    pub(super) fn all_valid(&self, names: &[&str]) -> bool {
        names.iter().all(|name| !self.bad.contains(*name))
    }

    /// A number in `range`; anything else (not a number, negative, out of
    /// range) is recorded with the range it must lie in.
    pub(super) fn ranged<T>(&mut self, name: &str, default: T, range: RangeInclusive<T>) -> T
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(text) = self.var(name).filter(|v| !v.trim().is_empty()) else {
            return default;
        };
        match text.trim().parse::<T>() {
            Ok(value) if range.contains(&value) => value,
            _ => {
                let expected = format!("a whole number in {}..={}", range.start(), range.end());
                self.invalid(name, &text, &expected);
                default
            }
        }
    }

    /// An exact decimal in `range`.
    pub(super) fn amount_in(
        &mut self,
        name: &str,
        default: &str,
        range: RangeInclusive<Decimal>,
    ) -> Decimal {
        let text = self.text(name, default);
        match parse_amount(&text) {
            Ok(value) if range.contains(&value) => value,
            Ok(_) => {
                let expected = format!("a number in {}..={}", range.start(), range.end());
                self.invalid(name, &text, &expected);
                Decimal::ZERO
            }
            Err(err) => {
                self.invalid(name, &text, &format!("a decimal number (it {err})"));
                Decimal::ZERO
            }
        }
    }

    pub(super) fn text(&self, name: &str, default: &str) -> String {
        self.var(name)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn flag(&mut self, name: &str, default: bool) -> bool {
        match self
            .var(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") => default,
            Some("1" | "true" | "yes" | "on") => true,
            Some("0" | "false" | "no" | "off") => false,
            Some(other) => {
                self.invalid(name, other, "true or false");
                default
            }
        }
    }

    pub(super) fn choice(&mut self, name: &str, default: &str, allowed: &[&str]) -> String {
        let value = self.text(name, default).to_ascii_lowercase();
        if !allowed.contains(&value.as_str()) {
            self.invalid(name, &value, &allowed.join(" or "));
            return default.to_owned();
        }
        value
    }

    /// A secret from `NAME`, or from the file `NAME_FILE` names, with the
    /// variable it came from.
    pub(super) fn secret(&mut self, name: &str) -> Option<(SecretString, String)> {
        if let Some(value) = self.var(name).filter(|v| !v.is_empty()) {
            return Some((value.into(), name.to_owned()));
        }
        let file_var = format!("{name}_FILE");
        let path = self.var(&file_var).filter(|v| !v.is_empty())?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Some((
                text.trim_end_matches(['\r', '\n']).to_owned().into(),
                file_var,
            )),
            Err(err) => {
                self.invalid(&file_var, &path, &format!("a readable file ({err})"));
                None
            }
        }
    }
}
