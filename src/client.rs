//! The operator's kube client: the usual configuration (kubeconfig or in-cluster) with a
//! client-side rate limit, as client-go's QPS and burst: a token bucket that holds `burst`
//! tokens and refills `qps` per second; a request waits for a token before it is sent. An
//! operator that starts 10,000 platforms at once must pace itself rather than be shed by the
//! API server's priority and fairness (or by a simulator's listen backlog).
//!
//! The limit applies per request, so a watch costs one token when it is opened. The kube
//! client queues requests in front of this layer (a `tower::buffer`), so waiting here holds
//! back only the requests behind.
//!
//! Every request sent is counted by answer class ([`CountLayer`], `pmp_kube_requests_total`),
//! below the rate limit and the write gate: what reaches the API server, not what waits.

mod count;
mod transport;

pub use count::{CountLayer, CountRequests, NO_ANSWER, answer_class};
pub use transport::{ApiTransport, Transport};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::controller::leader::Leadership;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests per second and burst; `qps <= 0` disables the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub qps: f64,
    pub burst: u32,
}

impl RateLimit {
    /// What `platform-operator run` uses unless told otherwise: well above client-go's
    /// defaults (5/10), which would take minutes to start a large stack, and well below what
    /// floods one API server.
    pub const DEFAULT: RateLimit = RateLimit {
        qps: 200.0,
        burst: 400,
    };
}

/// Builds a client over `transport` whose requests pass the rate limit, and whose writes pass
/// only while `leadership` says this instance leads.
pub fn operator_client(
    transport: &ApiTransport,
    limit: RateLimit,
    leadership: Arc<Leadership>,
) -> Result<kube::Client, kube::Error> {
    let builder = transport.builder()?;
    Ok(builder
        .with_layer(&CountLayer::new(crate::metrics::kube_requests()))
        .with_layer(&ThrottleLayer::new(limit))
        .with_layer(&WriteGateLayer::new(leadership))
        .build())
}

/// A client over `transport` with the rate limit only (for the leader election itself, whose
/// writes must pass while this instance is not the leader).
pub fn throttled_client(
    transport: &ApiTransport,
    limit: RateLimit,
) -> Result<kube::Client, kube::Error> {
    let builder = transport.builder()?;
    Ok(builder
        .with_layer(&CountLayer::new(crate::metrics::kube_requests()))
        .with_layer(&ThrottleLayer::new(limit))
        .build())
}

/// A write refused because this instance is not the leader.
#[derive(Debug, thiserror::Error)]
#[error("not the leader: {method} {path} refused (another replica holds the leader lease)")]
pub struct NotLeader {
    pub method: http::Method,
    pub path: String,
}

/// Refuses every write while this instance does not lead, at the last moment before it is
/// sent: a leader that loses its lease stops writing at once, reconciles in flight included.
/// Reads pass, as do the token and access reviews the REST API asks for (they change nothing).
#[derive(Debug, Clone)]
pub struct WriteGateLayer {
    leadership: Arc<Leadership>,
}

impl WriteGateLayer {
    pub fn new(leadership: Arc<Leadership>) -> Self {
        Self { leadership }
    }
}

impl<S> Layer<S> for WriteGateLayer {
    type Service = WriteGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WriteGate {
            inner,
            leadership: self.leadership.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WriteGate<S> {
    inner: S,
    leadership: Arc<Leadership>,
}

/// Whether a request changes the cluster's state.
fn is_write<B>(request: &http::Request<B>) -> bool {
    let reads = [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS];
    let path = request.uri().path();
    let review = path.starts_with("/apis/authentication.k8s.io/")
        || path.starts_with("/apis/authorization.k8s.io/");
    !reads.contains(request.method()) && !review
}

impl<S, B> Service<http::Request<B>> for WriteGate<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if is_write(&request) && !self.leadership.is_leader() {
            let refused = NotLeader {
                method: request.method().clone(),
                path: request.uri().path().to_string(),
            };
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        let answer = self.inner.call(request);
        Box::pin(async move { answer.await.map_err(Into::into) })
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            refilled: Instant::now(),
        }
    }

    /// How long since the bucket was last drawn from.
    pub(crate) fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.refilled)
    }

    /// Takes a token, or says how long until one is there.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.limit.qps <= 0.0 {
            return Ok(());
        }
        let capacity = f64::from(self.limit.burst.max(1));
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.qps).min(capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.limit.qps,
            ))
        }
    }
}

/// The layer putting [`Throttle`] in front of a service.
#[derive(Debug, Clone)]
pub struct ThrottleLayer {
    limit: RateLimit,
}

impl ThrottleLayer {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle {
            inner,
            bucket: Bucket::new(self.limit),
            wait: None,
            token: false,
        }
    }
}

/// Holds each request until the bucket has a token for it.
pub struct Throttle<S> {
    inner: S,
    bucket: Bucket,
    wait: Option<Pin<Box<Sleep>>>,
    /// A token taken for the request about to be sent.
    token: bool,
}

impl<S, R> Service<R> for Throttle<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.token {
            if let Some(wait) = self.wait.as_mut() {
                ready!(wait.as_mut().poll(cx));
                self.wait = None;
            }
            match self.bucket.take(Instant::now()) {
                Ok(()) => self.token = true,
                Err(after) => self.wait = Some(Box::pin(tokio::time::sleep(after))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.token = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_paces_at_qps() {
        let start = Instant::now();
        let mut bucket = Bucket::new(RateLimit {
            qps: 10.0,
            burst: 3,
        });
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let wait = bucket.take(start).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert_eq!(bucket.take(start + Duration::from_millis(100)), Ok(()));
        assert!(bucket.take(start + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn refills_never_exceed_the_burst() {
        let start = Instant::now();
        let mut bucket = Bucket::new(RateLimit {
            qps: 100.0,
            burst: 2,
        });
        let later = start + Duration::from_secs(60);
        assert_eq!(bucket.take(later), Ok(()));
        assert_eq!(bucket.take(later), Ok(()));
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn no_limit_when_qps_is_zero() {
        let start = Instant::now();
        let mut bucket = Bucket::new(RateLimit { qps: 0.0, burst: 1 });
        for _ in 0..1000 {
            assert_eq!(bucket.take(start), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_tokens() {
        let service =
            tower::service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
        let mut throttled = ThrottleLayer::new(RateLimit { qps: 2.0, burst: 1 }).layer(service);
        let begin = Instant::now();
        for n in 0..5 {
            let answer = tower::ServiceExt::ready(&mut throttled)
                .await
                .expect("ready")
                .call(n)
                .await
                .expect("answer");
            assert_eq!(answer, n);
        }
        // One token at once, then one every 0.5 s.
        assert_eq!(begin.elapsed(), Duration::from_secs(2));
    }
}
