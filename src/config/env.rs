//! Reading variables: each typed read falls back to its default and records
//! a bad value, so one error can name every variable at once.

use std::fmt::Display;
use std::str::FromStr;

use rust_decimal::Decimal;
use secrecy::SecretString;

use crate::domain::parse_amount;

/// A variable source that records every invalid value it meets.
pub(super) struct Env<'a> {
    pub(super) lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(super) errors: Vec<String>,
}

impl Env<'_> {
    pub(super) fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    pub(super) fn invalid(&mut self, name: &str, value: impl std::fmt::Debug, expected: &str) {
        self.errors.push(format!(
            "{name}={value:?} is not valid: expected {expected}"
        ));
    }

    pub(super) fn text(&self, name: &str, default: &str) -> String {
        self.var(name)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn parse<T: FromStr + Display + std::fmt::Debug + Copy>(
        &mut self,
        name: &str,
        default: T,
    ) -> T {
        match self.var(name).filter(|v| !v.trim().is_empty()) {
            None => default,
            Some(text) => text.trim().parse().unwrap_or_else(|_| {
                let expected = format!("a value like {default}");
                self.invalid(name, &text, &expected);
                default
            }),
        }
    }

    pub(super) fn amount(&mut self, name: &str, default: &str) -> Decimal {
        let text = self.text(name, default);
        parse_amount(&text).unwrap_or_else(|err| {
            self.invalid(name, &text, &format!("a decimal number (it {err})"));
            Decimal::ZERO
        })
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

    /// A secret from `NAME`, or from the file `NAME_FILE` names.
    pub(super) fn secret(&mut self, name: &str) -> Option<SecretString> {
        if let Some(value) = self.var(name).filter(|v| !v.is_empty()) {
            return Some(value.into());
        }
        let file_var = format!("{name}_FILE");
        let path = self.var(&file_var).filter(|v| !v.is_empty())?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned().into()),
            Err(err) => {
                self.invalid(&file_var, &path, &format!("a readable file ({err})"));
                None
            }
        }
    }
}
