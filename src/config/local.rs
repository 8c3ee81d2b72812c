//! Whether `serve` may start private Redis and Postgres servers, and where
//! they keep their data (see [`crate::local`]).

use super::env::Env;

/// Private servers for a machine where none is set up (see [`crate::local`]).
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// `LOCAL_SERVICES`: `auto` (start them when needed) or `off`.
    pub enabled: bool,
    /// `LOCAL_SERVICES_DIR`: where they keep their data.
    pub dir: std::path::PathBuf,
    /// Whether a variable names the Redis (then it is used, or nothing).
    pub redis_named: bool,
    /// Whether a variable names the Postgres.
    pub postgres_named: bool,
}

/// Whether private servers may start, where, and which servers are named.
pub(super) fn local_settings(env: &mut Env<'_>) -> LocalSettings {
    let named = |env: &Env<'_>, names: &[&str]| {
        names.iter().any(|name| {
            [name.to_string(), format!("{name}_FILE")]
                .iter()
                .any(|var| env.var(var).is_some_and(|v| !v.is_empty()))
        })
    };
    let dir = match env
        .var("LOCAL_SERVICES_DIR")
        .filter(|v| !v.trim().is_empty())
    {
        Some(dir) => std::path::PathBuf::from(dir),
        None => default_local_dir(),
    };
    LocalSettings {
        enabled: env.choice("LOCAL_SERVICES", "auto", &["auto", "off"]) == "auto",
        dir,
        redis_named: named(
            env,
            &["REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"],
        ),
        postgres_named: named(
            env,
            &[
                "DATABASE_URL",
                "POSTGRES_HOST",
                "POSTGRES_PORT",
                "POSTGRES_USER",
                "POSTGRES_PASSWORD",
                "POSTGRES_DB",
            ],
        ),
    }
}

/// `$XDG_DATA_HOME/execution-service`, else `~/.local/share/execution-service`;
/// as root `/var/lib/execution-service` (Postgres then runs as `postgres`,
/// which cannot enter `/root`).
fn default_local_dir() -> std::path::PathBuf {
    if crate::local::is_root() {
        return "/var/lib/execution-service".into();
    }
    match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
        (Some(data), _) if !data.is_empty() => {
            std::path::PathBuf::from(data).join("execution-service")
        }
        (_, Some(home)) if !home.is_empty() => {
            std::path::PathBuf::from(home).join(".local/share/execution-service")
        }
        _ => std::env::temp_dir().join("execution-service"),
    }
}
