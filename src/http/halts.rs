//! The admin API for trading halts: anyone may list them; setting and
//! lifting need `Authorization: Bearer <ADMIN_TOKEN>`.
//!
//! Without a configured token the write endpoints answer 403 and say why; a
//! missing or wrong token is 401 with `WWW-Authenticate`. Tokens are
//! compared in constant time (as SHA-256 digests, so not even their length
//! shows), and never logged.

use std::collections::BTreeSet;

use poem::Request;
use poem::http::StatusCode;
use poem_openapi::auth::Bearer;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, SecurityScheme, Tags};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::ApiContext;
use super::halt_schema::{HaltChange, HaltList, HaltView, NewHalt, is_reason};
use super::responses::Listed;
use super::schema::ApiError;
use crate::domain::{HaltAction, HaltCommand, HaltScope};

#[derive(Tags)]
enum Tag {
    /// Trading halts: the kill switch.
    Halts,
}

/// The admin token the write endpoints check, as request data.
#[derive(Clone)]
pub struct AdminToken(pub Option<SecretString>);

/// Why a write was refused, turned into 401 or 403 by the error handler.
#[derive(Debug, thiserror::Error)]
pub enum AdminRefusal {
    #[error("no ADMIN_TOKEN is configured, so the write endpoints of /halts are off")]
    NotConfigured,
    #[error("a valid bearer token is required")]
    WrongToken,
}

impl poem::error::ResponseError for AdminRefusal {
    fn status(&self) -> StatusCode {
        match self {
            AdminRefusal::NotConfigured => StatusCode::FORBIDDEN,
            AdminRefusal::WrongToken => StatusCode::UNAUTHORIZED,
        }
    }
}

/// An operator holding the admin token.
#[derive(SecurityScheme)]
#[oai(rename = "admin", ty = "bearer", checker = "check_admin")]
pub struct Admin(());

async fn check_admin(req: &Request, bearer: Bearer) -> poem::Result<()> {
    let Some(expected) = req.data::<AdminToken>().and_then(|t| t.0.as_ref()) else {
        return Err(AdminRefusal::NotConfigured.into());
    };
    if same_secret(bearer.token.as_bytes(), expected.expose_secret().as_bytes()) {
        Ok(())
    } else {
        Err(AdminRefusal::WrongToken.into())
    }
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let (given, expected) = (Sha256::digest(given), Sha256::digest(expected));
    given
        .iter()
        .zip(expected.iter())
        .fold(0_u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

type ListResponse = Listed<HaltList>;

#[derive(ApiResponse)]
#[oai(bad_request_handler = "change_bad_request")]
enum ChangeResponse {
    /// Applied on this replica; every other follows within a second.
    #[oai(status = 200)]
    Ok(Json<HaltChange>),
    /// The request is invalid.
    #[oai(status = 400)]
    BadRequest(Json<ApiError>),
    /// A bearer token is missing or wrong.
    #[oai(status = 401)]
    Unauthorized(
        Json<ApiError>,
        /// `Bearer realm="execution-service"`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// No admin token is configured: writes are off.
    #[oai(status = 403)]
    Forbidden(Json<ApiError>),
    /// No halt has this id.
    #[oai(status = 404)]
    NotFound(Json<ApiError>),
    /// Postgres does not answer.
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}

/// Refused requests: a missing or wrong token (401; 403 when no token is
/// configured, see `http::routes`), or an invalid one (400).
fn change_bad_request(err: poem::Error) -> ChangeResponse {
    match err.status() {
        StatusCode::UNAUTHORIZED => ChangeResponse::Unauthorized(
            Json(ApiError::new(
                "unauthorized",
                AdminRefusal::WrongToken.to_string(),
            )),
            BEARER_CHALLENGE.to_owned(),
        ),
        StatusCode::FORBIDDEN => ChangeResponse::Forbidden(Json(ApiError::new(
            "forbidden",
            AdminRefusal::NotConfigured.to_string(),
        ))),
        _ => ChangeResponse::BadRequest(Json(ApiError::new("bad_request", err.to_string()))),
    }
}

/// The `WWW-Authenticate` challenge of a 401.
pub const BEARER_CHALLENGE: &str = r#"Bearer realm="execution-service""#;

fn unavailable() -> Json<ApiError> {
    Json(ApiError::new("unavailable", "Postgres does not answer"))
}

pub struct HaltsApi(pub ApiContext);

#[OpenApi]
impl HaltsApi {
    /// Halts
    ///
    /// The halts in force, and the most recent ones (lifted or not).
    #[oai(path = "/halts", method = "get", tag = "Tag::Halts")]
    async fn list(
        &self,
        /// How many recent halts to return (1..=500).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "500"))
        )]
        limit: Query<u64>,
    ) -> ListResponse {
        let store = self.0.kill_switch.store();
        match tokio::try_join!(store.recent_halts(limit.0), store.active_halt_rows()) {
            Ok((recent, active)) => Listed::Ok(Json(HaltList {
                active: active.iter().map(HaltView::from).collect(),
                recent: recent.iter().map(HaltView::from).collect(),
            })),
            Err(_) => Listed::Unavailable(unavailable()),
        }
    }

    /// Set a halt
    ///
    /// Stops trading in a scope at once: orders it covers are REJECTED with
    /// `halted: <scope> <reason>`, never executed. In force on this replica
    /// when this answers, on every other within a second.
    #[oai(path = "/halts", method = "post", tag = "Tag::Halts")]
    async fn set(&self, _admin: Admin, halt: Json<NewHalt>) -> ChangeResponse {
        // Read by the stream's own parser (see `NewHalt`); the API's
        // documented reason rule and its default source on top.
        let (_, _, reason, who) = halt.parts();
        if !is_reason(reason) {
            return ChangeResponse::BadRequest(Json(ApiError::new(
                "bad_request",
                "reason must have a visible character and no NUL",
            )));
        }
        let command = HaltCommand {
            source: source(who),
            ..halt.command.clone()
        };
        self.submit(&[command]).await
    }

    /// Lift a halt
    ///
    /// Lifts the halt with this id, and with it every other active halt of
    /// the same scope (a resume names a scope, not one halt). Lifted halts
    /// keep their history.
    #[oai(path = "/halts/:id", method = "delete", tag = "Tag::Halts")]
    async fn lift(
        &self,
        _admin: Admin,
        /// The halt's id.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> ChangeResponse {
        let store = self.0.kill_switch.store();
        let row = match store.halt(id.0).await {
            Ok(Some(row)) => row,
            Ok(None) => {
                return ChangeResponse::NotFound(Json(ApiError::new(
                    "not_found",
                    format!("no halt with id {}", id.0),
                )));
            }
            Err(_) => return ChangeResponse::Unavailable(unavailable()),
        };
        // Lifted already (a retried request): the answer it had, and
        // nothing else changes; a newer halt of the same scope stays.
        if row.lifted_at.is_some() {
            return ChangeResponse::Ok(Json(HaltChange {
                entry_id: row.lifted_entry.clone().unwrap_or_default(),
                halts: vec![row.id],
            }));
        }
        let Some(scope) = crate::store::halt_of(&row).map(|halt| halt.scope) else {
            return ChangeResponse::Unavailable(Json(ApiError::new(
                "unavailable",
                "the stored halt has a scope this version does not know",
            )));
        };
        self.submit(&[resume(scope, Some(row.id))]).await
    }

    /// Resume everything
    ///
    /// Lifts every halt in force, whatever its scope.
    #[oai(path = "/halts/resume-all", method = "post", tag = "Tag::Halts")]
    async fn resume_all(&self, _admin: Admin) -> ChangeResponse {
        let scopes: BTreeSet<(String, Option<String>)> =
            match self.0.kill_switch.store().active_halts().await {
                Ok(halts) => halts
                    .iter()
                    .map(|h| {
                        (
                            h.scope.kind().to_owned(),
                            h.scope.target().map(str::to_owned),
                        )
                    })
                    .collect(),
                Err(_) => return ChangeResponse::Unavailable(unavailable()),
            };
        let commands: Vec<HaltCommand> = scopes
            .iter()
            .filter_map(|(kind, target)| HaltScope::new(kind, target.as_deref()).ok())
            .map(|scope| resume(scope, None))
            .collect();
        self.submit(&commands).await
    }
}

impl HaltsApi {
    /// Submits each command; the answer names the last entry and every
    /// halt changed.
    async fn submit(&self, commands: &[HaltCommand]) -> ChangeResponse {
        let mut change = HaltChange {
            entry_id: String::new(),
            halts: Vec::new(),
        };
        for command in commands {
            match self.0.kill_switch.submit(command).await {
                Ok(submitted) => {
                    change.entry_id = submitted.entry_id;
                    change.halts.extend(submitted.halts);
                }
                Err(err) => {
                    return ChangeResponse::Unavailable(Json(ApiError::new(
                        "unavailable",
                        err.to_string(),
                    )));
                }
            }
        }
        ChangeResponse::Ok(Json(change))
    }
}

fn resume(scope: HaltScope, halt_id: Option<i64>) -> HaltCommand {
    HaltCommand {
        action: HaltAction::Resume,
        scope,
        reason: "lifted through the admin API".into(),
        source: "admin-api".into(),
        halt_id,
    }
}

fn source(given: Option<&str>) -> String {
    match given
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.contains('\0'))
    {
        Some(who) => format!("admin-api: {who}"),
        None => "admin-api".into(),
    }
}

fn default_limit() -> u64 {
    50
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_by_content_only() {
        assert!(same_secret(b"a-long-admin-token", b"a-long-admin-token"));
        assert!(!same_secret(b"a-long-admin-token", b"a-long-admin-tokeN"));
        assert!(!same_secret(b"", b"a-long-admin-token"));
    }
}
