//! The `listenKey` of MEXC's user data stream (`/api/v3/userDataStream`):
//! created, kept alive (valid 60 minutes from the last `PUT`) and closed
//! with signed requests, like every private endpoint.

use reqwest::Method;
use serde::Deserialize;

use super::{MexcClient, MexcError, Params};

const PATH: &str = "/api/v3/userDataStream";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListenKeyAnswer {
    listen_key: String,
}

impl MexcClient {
    /// `POST`: a new key, valid for 60 minutes.
    #[tracing::instrument(name = "mexc.create_listen_key", skip_all, err(level = "debug"))]
    pub async fn create_listen_key(&self) -> Result<String, MexcError> {
        let answer: ListenKeyAnswer = self.signed(Method::POST, PATH, Params::new()).await?;
        if answer.listen_key.is_empty() {
            return Err(MexcError::unknown("MEXC answered an empty listenKey"));
        }
        Ok(answer.listen_key)
    }

    /// `PUT`: another 60 minutes for `key`; an error when MEXC no longer
    /// knows it (a new one is needed then).
    #[tracing::instrument(name = "mexc.keep_listen_key", skip_all, err(level = "debug"))]
    pub async fn keep_listen_key(&self, key: &str) -> Result<(), MexcError> {
        let params = Params::new().add("listenKey", key);
        let _: serde_json::Value = self.signed(Method::PUT, PATH, params).await?;
        Ok(())
    }

    /// `DELETE`: closes the stream of `key`.
    #[tracing::instrument(name = "mexc.close_listen_key", skip_all, err(level = "debug"))]
    pub async fn close_listen_key(&self, key: &str) -> Result<(), MexcError> {
        let params = Params::new().add("listenKey", key);
        let _: serde_json::Value = self.signed(Method::DELETE, PATH, params).await?;
        Ok(())
    }
}
