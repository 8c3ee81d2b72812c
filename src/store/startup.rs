//! Telling apart why Postgres could not be reached at start-up, and making
//! the service's database when it does not exist yet.
//!
//! A failure is transient (Postgres is not there yet, or still starting),
//! a missing database, or a refusal that no retry fixes: a wrong password,
//! an unknown role, a bad TLS setting. Only the first is worth waiting for.

use std::str::FromStr;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{self, Connection, Executor};
use sea_orm::{DbErr, RuntimeErr};

/// SQLSTATE `invalid_catalog_name`: the database does not exist.
const UNKNOWN_DATABASE: &str = "3D000";

/// Why connecting (or migrating) failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Refused, reset, timed out, or Postgres still starting: retry.
    Transient,
    /// The database named in the URL does not exist.
    MissingDatabase,
    /// Postgres (or the client) refused for good; `reason` says why.
    Refused { reason: String },
}

/// Classifies a failure of connecting or migrating.
pub fn classify(err: &DbErr) -> ConnectFailure {
    match err {
        DbErr::ConnectionAcquire(_) => ConnectFailure::Transient,
        DbErr::Conn(RuntimeErr::SqlxError(sqlx))
        | DbErr::Exec(RuntimeErr::SqlxError(sqlx))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx)) => classify_sqlx(sqlx),
        _ => ConnectFailure::Refused {
            reason: "the request failed".to_owned(),
        },
    }
}

fn classify_sqlx(err: &sqlx::Error) -> ConnectFailure {
    match err {
        // Connection refused is retried inside the pool until its timeout.
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => ConnectFailure::Transient,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(UNKNOWN_DATABASE) => ConnectFailure::MissingDatabase,
            Some(code) => classify_sqlstate(code),
            None => ConnectFailure::Refused {
                reason: "Postgres refused the request".to_owned(),
            },
        },
        sqlx::Error::Tls(_) => ConnectFailure::Refused {
            reason: "the TLS handshake failed (check sslmode and certificates)".to_owned(),
        },
        sqlx::Error::Configuration(_) => ConnectFailure::Refused {
            reason: "the connection settings are invalid".to_owned(),
        },
        sqlx::Error::Protocol(_) => ConnectFailure::Refused {
            reason: "the server does not speak the Postgres protocol".to_owned(),
        },
        _ => ConnectFailure::Refused {
            reason: "the request failed".to_owned(),
        },
    }
}

fn classify_sqlstate(code: &str) -> ConnectFailure {
    let refused = |reason: &str| ConnectFailure::Refused {
        reason: format!("{reason} (SQLSTATE {code})"),
    };
    match code {
        // admin_shutdown, crash_shutdown and cannot_connect_now (a restart
        // or fail-over), the connection_exception class, and serialization
        // or deadlock failures of concurrent migrations.
        "57P01" | "57P02" | "57P03" | "40001" | "40P01" => ConnectFailure::Transient,
        // insufficient_resources: too many connections, out of memory or disk.
        _ if code.starts_with("53") => ConnectFailure::Transient,
        _ if code.starts_with("08") => ConnectFailure::Transient,
        "28P01" => refused("wrong password"),
        "28000" => refused("the role is unknown or may not connect"),
        _ if code.starts_with("28") => refused("authentication failed"),
        "42501" => refused("permission denied"),
        _ => refused("Postgres refused the request"),
    }
}

/// The database a URL names (Postgres' default is the user's name).
pub fn database_name(url: &str) -> Option<String> {
    let options = PgConnectOptions::from_str(url).ok()?;
    options
        .get_database()
        .map(str::to_owned)
        .or_else(|| Some(options.get_username().to_owned()))
}

/// Whether [`create_database`] made the database or found it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Now,
    Already,
}

/// Creates the database `url` names, connecting with the same credentials
/// to the `postgres` maintenance database (or `template1` where there is
/// none). Another replica creating it at the same moment is no error.
pub async fn create_database(url: &str) -> Result<Created, DbErr> {
    let conn_err = |err: sqlx::Error| DbErr::Conn(RuntimeErr::SqlxError(err.into()));
    let options = PgConnectOptions::from_str(url).map_err(conn_err)?;
    let name = database_name(url).unwrap_or_default();
    let mut conn = match PgConnection::connect_with(&options.clone().database("postgres")).await {
        Err(err) if classify_sqlx(&err) == ConnectFailure::MissingDatabase => {
            PgConnection::connect_with(&options.database("template1"))
                .await
                .map_err(conn_err)?
        }
        other => other.map_err(conn_err)?,
    };
    let statement = format!("CREATE DATABASE {}", quote_identifier(&name));
    // The name is quoted as an identifier: the one piece of SQL not from a literal.
    let outcome = conn.execute(sqlx::AssertSqlSafe(statement)).await;
    let created = match outcome {
        Ok(_) => Ok(Created::Now),
        // duplicate_database, or the unique index of pg_database when two
        // creators race.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P04" | "23505")) =>
        {
            Ok(Created::Already)
        }
        Err(err) => Err(DbErr::Exec(RuntimeErr::SqlxError(err.into()))),
    };
    let _ = conn.close().await;
    created
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_sorted_into_retry_or_stop() {
        for code in ["57P03", "53300", "08006", "08001", "40P01"] {
            assert_eq!(classify_sqlstate(code), ConnectFailure::Transient, "{code}");
        }
        for code in ["28P01", "28000", "42501", "42P01"] {
            assert!(
                matches!(classify_sqlstate(code), ConnectFailure::Refused { reason } if reason.contains(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn io_errors_and_pool_timeouts_are_transient() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(&DbErr::Conn(RuntimeErr::SqlxError(
                sqlx::Error::Io(refused).into()
            ))),
            ConnectFailure::Transient
        );
        assert_eq!(
            classify(&DbErr::Conn(RuntimeErr::SqlxError(
                sqlx::Error::PoolTimedOut.into()
            ))),
            ConnectFailure::Transient
        );
    }

    #[test]
    fn identifiers_are_quoted_and_the_database_is_read_from_the_url() {
        assert_eq!(quote_identifier(r#"a"b"#), r#""a""b""#);
        assert_eq!(
            database_name("postgres://u:p@h:5432/my%20db").as_deref(),
            Some("my db")
        );
        assert_eq!(database_name("postgres://u@h").as_deref(), Some("u"));
    }
}

/// How the primary replicates a commit: whether `COMMIT` returns only once
/// a standby has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitDurability {
    /// `synchronous_standby_names`: empty when no standby is synchronous.
    pub standby_names: String,
    /// `synchronous_commit`: `off` and `local` wait for no standby.
    pub synchronous_commit: String,
}

impl CommitDurability {
    /// Whether a committed row survives a failover to a standby.
    pub fn waits_for_a_standby(&self) -> bool {
        !self.standby_names.trim().is_empty()
            && !matches!(self.synchronous_commit.as_str(), "off" | "local")
    }
}

impl super::Store {
    /// The primary's replication settings of commits.
    pub async fn commit_durability(&self) -> Result<CommitDurability, DbErr> {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        let row = self
            .connection()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT current_setting('synchronous_standby_names'), \
                 current_setting('synchronous_commit')",
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("no settings".to_owned()))?;
        Ok(CommitDurability {
            standby_names: row.try_get_by_index(0)?,
            synchronous_commit: row.try_get_by_index(1)?,
        })
    }
}
