//! Receivers for the alert tests: an HTTP server recording what is posted, endpoints that
//! never answer or refuse connections, a minimal SMTP server recording mail, and Secrets in the
//! simulated cluster.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use platform_operator::alerts::{Alert, AlertSettings, Alerter, Severity};
use platform_operator::client::RateLimit;
use platform_operator::crd::{AlertChannel, AlertChannelType, AlertEvent, Alerts, SecretKeyRef};
use platform_operator::metrics::{AlertDeliveryLabels, Metrics};
use pmp_sim::{SimCluster, SimConfig};

pub const NAMESPACE: &str = "trading";

pub const UNLIMITED: RateLimit = RateLimit { qps: 0.0, burst: 1 };
pub const WAIT: Duration = Duration::from_secs(5);

pub fn alert(event: AlertEvent) -> Alert {
    Alert {
        namespace: NAMESPACE.into(),
        platform: "ml-inference".into(),
        event,
        severity: Severity::Critical,
        summary: "circuit open after 4 restarts in 600 s".into(),
        evidence: vec!["pod ml-0: CrashLoopBackOff (restarts 5)".into()],
        time: "2026-01-02T03:04:05Z".parse().expect("timestamp"),
    }
}

pub fn channel(
    name: &str,
    channel_type: AlertChannelType,
    secret: &str,
    key: &str,
) -> AlertChannel {
    AlertChannel {
        name: name.into(),
        channel_type,
        secret_ref: SecretKeyRef {
            name: secret.into(),
            key: key.into(),
        },
    }
}

pub fn routes(channels: Vec<AlertChannel>) -> Alerts {
    Alerts {
        channels,
        events: None,
    }
}

pub struct Harness {
    pub cluster: SimCluster,
    pub metrics: Arc<Metrics>,
    pub alerter: Alerter,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub async fn start(settings: AlertSettings) -> Harness {
        let cluster = SimCluster::start(SimConfig::default())
            .await
            .expect("simulated cluster");
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = watch::channel(false);
        let (alerter, task) = Alerter::new(cluster.client(), settings, metrics.clone(), stopped);
        Harness {
            cluster,
            metrics,
            alerter,
            stop,
            task: tokio::spawn(task),
        }
    }

    pub async fn secret(&self, name: &str, entries: &[(&str, &str)]) {
        secret(&self.cluster.client(), name, entries).await;
    }

    pub fn count(&self, channel_type: &'static str, result: &'static str) -> u64 {
        count(&self.metrics, channel_type, result)
    }

    /// Waits (polling) until `channel_type`'s `result` count reaches `at_least`.
    pub async fn counted(&self, channel_type: &'static str, result: &'static str, at_least: u64) {
        let until = Instant::now() + WAIT;
        while self.count(channel_type, result) < at_least {
            assert!(
                Instant::now() < until,
                "{channel_type} {result}: {} < {at_least}",
                self.count(channel_type, result)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn count(metrics: &Metrics, channel_type: &'static str, result: &'static str) -> u64 {
    metrics
        .alert_deliveries
        .get_or_create(&AlertDeliveryLabels {
            channel_type,
            result,
        })
        .get()
}

pub fn settings() -> AlertSettings {
    AlertSettings {
        per_channel_limit: UNLIMITED,
        timeout: Duration::from_secs(5),
        ..AlertSettings::default()
    }
}

/// Creates the test namespace and a Secret in it holding `entries`.
pub async fn secret(client: &kube::Client, name: &str, entries: &[(&str, &str)]) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    // Already there after the first Secret.
    let _ = namespaces.create(&PostParams::default(), &namespace).await;
    let data = entries
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect::<BTreeMap<_, _>>();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        string_data: Some(data),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the secret");
}

/// An HTTP server on 127.0.0.1 that answers 200 to every POST and passes each JSON body on.
pub struct HttpReceiver {
    pub url: String,
    bodies: mpsc::UnboundedReceiver<Value>,
}

impl HttpReceiver {
    pub async fn start() -> HttpReceiver {
        let (tx, bodies) = mpsc::unbounded_channel();
        let app = axum::Router::new()
            .route(
                "/hook",
                post(
                    |State(tx): State<mpsc::UnboundedSender<Value>>,
                     axum::Json(body): axum::Json<Value>| async move {
                        let _ = tx.send(body);
                        "ok"
                    },
                ),
            )
            .with_state(tx);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        HttpReceiver {
            url: format!("http://{addr}/hook"),
            bodies,
        }
    }

    /// The next body posted within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, self.bodies.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every body posted within `within`.
    pub async fn all(&mut self, within: Duration) -> Vec<Value> {
        let mut bodies = Vec::new();
        let until = tokio::time::Instant::now() + within;
        while let Ok(Some(body)) = tokio::time::timeout_at(until, self.bodies.recv()).await {
            bodies.push(body);
        }
        bodies
    }
}

/// A URL whose server accepts connections and never answers.
pub async fn hanging_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}/hook")
}

/// A URL on which nothing listens.
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/hook")
}

/// One mail as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body, dot-unstuffed.
    pub data: String,
}

/// Just enough SMTP to accept mail: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
pub async fn smtp_server() -> (SocketAddr, mpsc::UnboundedReceiver<Mail>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, mail) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = smtp_session(socket, tx).await;
            });
        }
    });
    (addr, mail)
}

async fn smtp_session(
    socket: tokio::net::TcpStream,
    tx: mpsc::UnboundedSender<Mail>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 test.local ESMTP\r\n").await?;
    let mut mail = Mail {
        from: String::new(),
        to: Vec::new(),
        data: String::new(),
    };
    while let Some(line) = lines.next_line().await? {
        let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 test.local\r\n",
            "MAIL" => {
                mail.from = address(&line);
                b"250 OK\r\n"
            }
            "RCPT" => {
                mail.to.push(address(&line));
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                while let Some(line) = lines.next_line().await? {
                    if line == "." {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    data.push('\n');
                }
                mail.data = data;
                let _ = tx.send(std::mem::replace(
                    &mut mail,
                    Mail {
                        from: String::new(),
                        to: Vec::new(),
                        data: String::new(),
                    },
                ));
                b"250 queued\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "RSET" | "NOOP" => b"250 OK\r\n",
            _ => b"502 not implemented\r\n",
        };
        write.write_all(answer).await?;
    }
    Ok(())
}

/// `x@y` from `MAIL FROM:<x@y>` or `RCPT TO:<x@y>`.
fn address(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line.get(start..end).unwrap_or_default().to_string()
}
