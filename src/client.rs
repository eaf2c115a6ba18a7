//! A typed client for the control API, shared by `aliasctl` and the tests.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::api::dto::{AliasDto, ErrorDto, HealthDto, LinkRequest, ServiceDto};

/// How long one API call may take before it is given up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL `{0}`: expected something like http://127.0.0.1:5380")]
    BadUrl(String),
    #[error("cannot reach aliasd at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// The server answered with an error status and said why.
    #[error("{message} (HTTP {})", status.as_u16())]
    Api { status: StatusCode, message: String },
    #[error("unexpected answer from {server}: {reason}")]
    Protocol { server: String, reason: String },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A connection to one aliasd API.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// `server` is a base URL such as `http://127.0.0.1:5380`.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = server.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::BadUrl(server.to_owned()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::BadUrl(server.to_owned()));
        }
        let http = HyperClient::builder(TokioExecutor::new()).build_http();
        Ok(Self { base, token, http })
    }

    pub async fn health(&self) -> Result<HealthDto, ClientError> {
        self.call(Method::GET, "/healthz", None).await
    }

    pub async fn aliases(&self) -> Result<Vec<AliasDto>, ClientError> {
        self.call(Method::GET, "/v1/aliases", None).await
    }

    pub async fn alias(&self, alias: &str) -> Result<AliasDto, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/aliases/{}", path_segment(alias)),
            None,
        )
        .await
    }

    pub async fn services(&self) -> Result<Vec<ServiceDto>, ClientError> {
        self.call(Method::GET, "/v1/services", None).await
    }

    /// Links `alias` to exactly `targets`.
    pub async fn link(&self, alias: &str, targets: &[String]) -> Result<AliasDto, ClientError> {
        let body = serde_json::to_vec(&LinkRequest {
            targets: targets.to_vec(),
        })
        .map_err(|e| self.protocol(e.to_string()))?;
        self.call(
            Method::PUT,
            &format!("/v1/aliases/{}/targets", path_segment(alias)),
            Some(body),
        )
        .await
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            server: self.base.clone(),
            reason,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| ClientError::BadUrl(self.base.clone()))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| ClientError::Unreachable {
                server: self.base.clone(),
                reason: format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
            })?
            .map_err(|e| ClientError::Unreachable {
                server: self.base.clone(),
                reason: source_chain(&e),
            })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.protocol(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| self.protocol(e.to_string()))
        } else {
            let message = serde_json::from_slice::<ErrorDto>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
            Err(ClientError::Api { status, message })
        }
    }
}

/// Percent-encodes what could break a path segment; alias names are DNS names, so this is rare.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The innermost cause is usually the useful one ("Connection refused").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}
