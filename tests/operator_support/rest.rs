//! The operator's REST API served over real HTTP on 127.0.0.1 for a test, and a small client
//! for it.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::task::JoinHandle;

use std::sync::Arc;

use platform_operator::api::{self, ApiSettings, ApiState};
use platform_operator::controller::Context;

use super::TestEnv;

/// A REST API server of the test's operator.
pub struct Rest {
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    server: JoinHandle<()>,
}

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an RFC 9457 problem of `status` and type slug `kind`; returns it.
    pub fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "status of {}", self.text());
        assert_eq!(
            self.content_type,
            "application/problem+json",
            "content type of {}",
            self.text()
        );
        let problem = self.json();
        assert_eq!(
            problem["type"],
            format!("https://pmp.dev/problems/{kind}"),
            "{problem}"
        );
        assert_eq!(problem["status"], status, "{problem}");
        assert!(problem["title"].is_string() && problem["detail"].is_string());
        problem
    }
}

impl TestEnv {
    /// Serves the operator's REST API with `settings` on a free loopback port.
    pub async fn serve_api(&self, settings: ApiSettings) -> Rest {
        Rest::serve(self.operator().context().clone(), settings).await
    }
}

impl Rest {
    /// Serves the REST API of the operator whose context is `ctx`.
    pub async fn serve(ctx: Arc<Context>, settings: ApiSettings) -> Rest {
        let state = ApiState::new(ctx, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let router = api::router(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Rest {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
            server,
        }
    }
}

impl Rest {
    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None, None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Answer {
        self.send("POST", path, Some(body), None).await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: &str) -> Answer {
        self.send("POST", path, Some(body), Some(token)).await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Answer {
        self.send("GET", path, None, Some(token)).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Answer {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_string())))
            .expect("request");
        let response = tokio::time::timeout(Duration::from_secs(120), self.client.request(request))
            .await
            .expect("answered within 120 s")
            .expect("HTTP exchange");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Answer {
            status,
            content_type,
            headers,
            body,
        }
    }
}

impl Drop for Rest {
    fn drop(&mut self) {
        self.server.abort();
    }
}
