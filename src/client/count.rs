//! Counts the operator's requests to the API server by how they were answered
//! (`pmp_kube_requests_total{class}`): how hard the operator leans on the control plane, and
//! whether it is being shed (429) or breaking it (5xx), seen from the operator's side.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service};

use crate::metrics::KubeRequestLabels;

/// The answer class of a response's status: `2xx`, `3xx`, `4xx`, `429` (apart from the other
/// 4xx: the API server's priority and fairness shedding load), `5xx`, or `other`.
pub fn answer_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "429",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// The class of a request that got no answer (connection refused, TLS, timeout).
pub const NO_ANSWER: &str = "error";

/// The layer putting [`CountRequests`] in front of a service.
#[derive(Clone)]
pub struct CountLayer {
    requests: Family<KubeRequestLabels, Counter>,
}

impl CountLayer {
    pub fn new(requests: Family<KubeRequestLabels, Counter>) -> Self {
        Self { requests }
    }
}

impl<S> Layer<S> for CountLayer {
    type Service = CountRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountRequests {
            inner,
            requests: self.requests.clone(),
        }
    }
}

/// Counts each answer (or failure) of the service it wraps, when the response head arrives.
#[derive(Clone)]
pub struct CountRequests<S> {
    inner: S,
    requests: Family<KubeRequestLabels, Counter>,
}

impl<S, B, RB> Service<http::Request<B>> for CountRequests<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        let requests = self.requests.clone();
        Box::pin(async move {
            let answer = answer.await;
            let class = match &answer {
                Ok(response) => answer_class(response.status()),
                Err(_) => NO_ANSWER,
            };
            requests.get_or_create(&KubeRequestLabels { class }).inc();
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn answers_are_classed_with_429_apart_from_the_other_4xx() {
        let class = |code: u16| answer_class(StatusCode::from_u16(code).expect("valid status"));
        assert_eq!(class(200), "2xx");
        assert_eq!(class(201), "2xx");
        assert_eq!(class(304), "3xx");
        assert_eq!(class(404), "4xx");
        assert_eq!(class(409), "4xx");
        assert_eq!(class(429), "429");
        assert_eq!(class(500), "5xx");
        assert_eq!(class(503), "5xx");
        assert_eq!(class(101), "other");
        assert!(
            crate::metrics::KUBE_REQUEST_CLASSES.contains(&NO_ANSWER),
            "every class is pre-registered"
        );
    }

    #[tokio::test]
    async fn each_answer_and_failure_is_counted_once() {
        let requests = Family::<KubeRequestLabels, Counter>::default();
        let service = tower::service_fn(|request: http::Request<()>| async move {
            match request.uri().path() {
                "/fail" => Err("connection refused"),
                "/busy" => Ok(http::Response::builder()
                    .status(StatusCode::TOO_MANY_REQUESTS)
                    .body(())
                    .expect("response")),
                _ => Ok(http::Response::new(())),
            }
        });
        let mut counted = CountLayer::new(requests.clone()).layer(service);
        for path in ["/ok", "/busy", "/fail", "/ok"] {
            let request = http::Request::get(path).body(()).expect("request");
            let _ = tower::ServiceExt::ready(&mut counted)
                .await
                .expect("ready")
                .call(request)
                .await;
        }
        let count = |class| requests.get_or_create(&KubeRequestLabels { class }).get();
        assert_eq!((count("2xx"), count("429"), count("error")), (2, 1, 1));
        assert_eq!(count("5xx"), 0);
    }
}
