//! The responses the read endpoints share: a list, and one order found by
//! its id. Each answers a request that does not parse with the JSON error
//! body, never poem's plain text.

use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};

use super::schema::ApiError;

#[derive(ApiResponse)]
#[oai(bad_request_handler = "listed_bad_request")]
pub enum Listed<T: ParseFromJSON + ToJSON> {
    #[oai(status = 200)]
    Ok(Json<T>),
    /// A query parameter is invalid.
    #[oai(status = 400)]
    BadRequest(Json<ApiError>),
    /// Postgres does not answer.
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}

fn listed_bad_request<T: ParseFromJSON + ToJSON>(err: poem::Error) -> Listed<T> {
    Listed::BadRequest(Json(ApiError::new("bad_request", err.to_string())))
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "lookup_bad_request")]
pub enum Lookup<T: ParseFromJSON + ToJSON> {
    #[oai(status = 200)]
    Ok(Json<Box<T>>),
    /// The order id is invalid.
    #[oai(status = 400)]
    BadRequest(Json<ApiError>),
    /// No order has this id.
    #[oai(status = 404)]
    NotFound(Json<ApiError>),
    /// Postgres does not answer.
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}

fn lookup_bad_request<T: ParseFromJSON + ToJSON>(err: poem::Error) -> Lookup<T> {
    Lookup::BadRequest(Json(ApiError::new("bad_request", err.to_string())))
}
