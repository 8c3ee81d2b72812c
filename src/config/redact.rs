//! Keeping secrets out of messages.
//!
//! Client libraries put the connection URL into some of their errors, and a
//! malformed URL is echoed back whole. Every message that may carry one
//! passes through a [`Redactor`] before it is logged or printed: the
//! password of any URL in it becomes `***`, and so does any secret the
//! settings hold, wherever it appears.

use secrecy::{ExposeSecret, SecretString};

/// What a password is replaced with.
pub const MASK: &str = "***";

/// Shorter secrets are left to the URL rule alone: masking every occurrence
/// of two letters would garble a message beyond use.
const MIN_LITERAL: usize = 4;

/// Masks the passwords of URLs and the literal secrets it knows.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<SecretString>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Also masks the password of `url`, as written and percent-decoded.
    pub fn with_url(mut self, url: &str) -> Self {
        for password in password_of(url).into_iter().chain(query_passwords(url)) {
            let decoded = percent_decode(&password);
            self = self.with_secret(&decoded);
            self = self.with_secret(&password);
        }
        self
    }

    /// Also masks `secret`, as written and percent-encoded.
    pub fn with_secret(mut self, secret: &str) -> Self {
        for form in [secret.to_owned(), super::urls::url_escape(secret)] {
            if form.chars().count() >= MIN_LITERAL
                && !self.secrets.iter().any(|s| s.expose_secret() == form)
            {
                self.secrets.push(form.into());
            }
        }
        // The longest first, so that no part of a longer one survives.
        self.secrets
            .sort_by_key(|s| std::cmp::Reverse(s.expose_secret().len()));
        self
    }

    /// `text` without a password or a known secret in it.
    pub fn redact(&self, text: &str) -> String {
        let mut text = redact_urls(text);
        for secret in &self.secrets {
            text = text.replace(secret.expose_secret(), MASK);
        }
        text
    }
}

/// Masks the password of every `scheme://user:password@host` in free text.
///
/// A URL ends at white space or a quote; its user information runs to the
/// last `@` in it, so a password with a stray `@` or `/` is masked whole.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        out.push_str(&mask_query(&mask_user_info(&tail[..end])));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// One URL (a setting's whole value) with its password masked; also right
/// for a URL too malformed to parse, and for one without a scheme.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", mask_query(&mask_user_info(rest))),
        None => mask_query(&mask_user_info(url)),
    }
}

/// `user:password@rest` becomes `user:***@rest`.
fn mask_user_info(after_scheme: &str) -> String {
    let Some(at) = after_scheme.rfind('@') else {
        return after_scheme.to_owned();
    };
    match after_scheme[..at].split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}{}", &after_scheme[at..]),
        None => after_scheme.to_owned(),
    }
}

/// Query parameters that carry a password: Postgres' `password`, and the
/// `pass` of Redis' `unix://` URLs.
const PASSWORD_PARAMS: [&str; 2] = ["password", "pass"];

/// The query string of a URL, split into its parameters, each with whether
/// it carries a password.
fn query_params(url: &str) -> Option<(&str, Vec<(&str, bool)>)> {
    let (head, query) = url.split_once('?')?;
    let params = query
        .split('&')
        .map(|param| {
            let name = param.split_once('=').map_or(param, |(name, _)| name);
            (
                param,
                PASSWORD_PARAMS.contains(&name.to_ascii_lowercase().as_str()),
            )
        })
        .collect();
    Some((head, params))
}

/// `?password=secret&sslmode=require` becomes `?password=***&sslmode=require`.
fn mask_query(url: &str) -> String {
    let Some((head, params)) = query_params(url) else {
        return url.to_owned();
    };
    let params: Vec<String> = params
        .into_iter()
        .map(|(param, secret)| match param.split_once('=') {
            Some((name, _)) if secret => format!("{name}={MASK}"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{head}?{}", params.join("&"))
}

/// The passwords a URL's query string carries, as written.
fn query_passwords(url: &str) -> Vec<String> {
    query_params(url)
        .map(|(_, params)| {
            params
                .into_iter()
                .filter(|(_, secret)| *secret)
                .filter_map(|(param, _)| param.split_once('=').map(|(_, v)| v.to_owned()))
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The password of a URL as written in it (percent-encoded), if it has one.
fn password_of(url: &str) -> Option<String> {
    if let Ok(parsed) = url::Url::parse(url) {
        return parsed.password().map(str::to_owned);
    }
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (user_info, _) = rest.rsplit_once('@')?;
    let (_, password) = user_info.split_once(':')?;
    Some(password.to_owned()).filter(|p| !p.is_empty())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_of_urls_in_text_are_masked() {
        let text = "Connection Error: The connection string 'postgres://svc:Sekr3t@db:99999/x' \
                    cannot be parsed; also redis://:other-pw@cache:6379/0 and http://host/path";
        let redacted = redact_urls(text);
        assert!(!redacted.contains("Sekr3t") && !redacted.contains("other-pw"));
        assert!(
            redacted.contains("'postgres://svc:***@db:99999/x'"),
            "{redacted}"
        );
        assert!(
            redacted.contains("redis://:***@cache:6379/0 "),
            "{redacted}"
        );
        assert!(redacted.contains("http://host/path"), "{redacted}");
    }

    #[test]
    fn a_malformed_url_loses_its_whole_password() {
        for (url, secret) in [
            ("postgres://svc:pa/ss@word@db:5432/x", "pa/ss@word"),
            ("postgres://svc:with space@db/x", "with space"),
            ("svc:no-scheme@db/x", "no-scheme"),
            ("postgres:svc:no-slashes@db", "no-slashes"),
        ] {
            let redacted = redact_url(url);
            assert!(!redacted.contains(secret), "{url} -> {redacted}");
            assert!(redacted.contains("@db"), "{url} -> {redacted}");
        }
        assert_eq!(redact_url("postgres://svc@db/x"), "postgres://svc@db/x");
    }

    #[test]
    fn known_secrets_are_masked_in_every_form() {
        let redactor = Redactor::default()
            .with_url("postgres://svc:p%40ss%2Fword@db/x")
            .with_secret("hunter22");
        let text = "failed for p@ss/word, p%40ss%2Fword and hunter22 (hunter22%)";
        let redacted = redactor.redact(text);
        assert_eq!(redacted, "failed for ***, *** and *** (***%)");
        assert!(!format!("{redactor:?}").contains("hunter22"));
    }

    #[test]
    fn short_secrets_are_masked_only_inside_urls() {
        let redactor = Redactor::default().with_url("redis://:ab@cache:6379/");
        assert_eq!(
            redactor.redact("about redis://:ab@cache:6379/"),
            "about redis://:***@cache:6379/"
        );
    }

    #[test]
    fn passwords_in_the_query_string_are_masked_too() {
        let url = "postgres://app@db/app?sslmode=requir&password=S3cr%40t&x=1";
        assert_eq!(
            redact_url(url),
            "postgres://app@db/app?sslmode=requir&password=***&x=1"
        );
        assert_eq!(
            redact_urls(&format!("cannot parse {url} here")),
            "cannot parse postgres://app@db/app?sslmode=requir&password=***&x=1 here"
        );
        let redactor = Redactor::default().with_url(url);
        assert_eq!(
            redactor.redact("auth failed for S3cr@t"),
            "auth failed for ***"
        );
        assert_eq!(
            redact_url("unix:///run/redis.sock?db=1&pass=Sekr3t"),
            "unix:///run/redis.sock?db=1&pass=***"
        );
    }
}
