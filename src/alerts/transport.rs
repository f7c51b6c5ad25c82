//! The wire: JSON over HTTP(S) for webhooks and Slack, SMTP for email. Built once; each call
//! is one delivery attempt, bounded by the caller's timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{DeliveryError, SmtpSettings, SmtpTls};

/// Answers are read up to this size only (receivers' error pages are not interesting).
const ANSWER_MAX: usize = 64 * 1024;

pub struct Transports {
    /// With TLS when the system's root certificates could be loaded.
    https: Option<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
    http: Client<HttpConnector, Full<Bytes>>,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl Transports {
    pub fn new(smtp: Option<&SmtpSettings>, timeout: Duration) -> Self {
        // rustls' process default provider, as the kube client's own TLS uses.
        let https = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => Some(
                Client::builder(TokioExecutor::new())
                    .build(builder.https_or_http().enable_http1().build()),
            ),
            Err(error) => {
                tracing::warn!(
                    target: "alerts",
                    %error,
                    "no root certificates: alerts to https URLs will fail"
                );
                None
            }
        };
        let http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Transports {
            https,
            http,
            smtp: smtp.map(|settings| (smtp_transport(settings, timeout), settings.from.clone())),
        }
    }

    /// POSTs `document` to `url`; any 2xx answer is success.
    pub async fn post_json(
        &self,
        url: &str,
        document: &serde_json::Value,
    ) -> Result<(), DeliveryError> {
        let uri: http::Uri = url.parse().map_err(|_| DeliveryError::BadUrl)?;
        let request = http::Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "platform-operator")
            .body(Full::new(Bytes::from(document.to_string())))
            .map_err(|_| DeliveryError::BadUrl)?;
        let answer = match (uri.scheme_str(), &self.https) {
            (Some("https"), Some(https)) => https.request(request).await,
            (Some("https"), None) => return Err(DeliveryError::NoRootCertificates),
            (Some("http"), _) => self.http.request(request).await,
            _ => return Err(DeliveryError::BadUrl),
        }
        .map_err(DeliveryError::Http)?;
        let status = answer.status();
        // Read (a bounded part of) the answer so the connection can be reused.
        let mut body = answer.into_body();
        let mut read = 0;
        while read < ANSWER_MAX {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status))
        }
    }

    /// Mails `subject` and `body` to `to`.
    pub async fn mail(&self, to: &str, subject: String, body: String) -> Result<(), DeliveryError> {
        let Some((transport, from)) = &self.smtp else {
            return Err(DeliveryError::NoSmtpRelay);
        };
        let to: Mailbox = to.parse().map_err(|_| DeliveryError::BadAddress)?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| DeliveryError::Message(error.to_string()))?;
        transport
            .send(message)
            .await
            .map(drop)
            .map_err(DeliveryError::Smtp)
    }
}

fn smtp_transport(
    settings: &SmtpSettings,
    timeout: Duration,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let tls = match &settings.tls {
        SmtpTls::Off => Tls::None,
        SmtpTls::Opportunistic(parameters) => Tls::Opportunistic(parameters.clone()),
        SmtpTls::Required(parameters) => Tls::Required(parameters.clone()),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
        .port(settings.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some((user, password)) = &settings.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    builder.build()
}
