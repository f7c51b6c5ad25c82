//! Alert delivery end to end: Secrets in the simulated cluster, a local HTTP receiver and a
//! local SMTP server.

mod alerts_support;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use alerts_support::{
    Harness, HttpReceiver, WAIT, alert, channel, count, hanging_url, refused_url, routes, settings,
    smtp_server,
};
use platform_operator::alerts::{AlertSettings, Alerter, SmtpSettings, StartTls};
use platform_operator::client::RateLimit;
use platform_operator::crd::{AlertChannelType, AlertEvent, Alerts};
use platform_operator::metrics::Metrics;
use pmp_sim::{SimCluster, SimConfig};

#[tokio::test]
async fn a_webhook_receives_every_field_of_the_alert() {
    let h = Harness::start(settings()).await;
    let mut receiver = HttpReceiver::start().await;
    h.secret("hooks", &[("ops", &receiver.url)]).await;
    let routes = routes(vec![channel(
        "ops",
        AlertChannelType::Webhook,
        "hooks",
        "ops",
    )]);

    h.alerter.send(&routes, alert(AlertEvent::CircuitOpen));

    let body = receiver.next(WAIT).await.expect("the webhook was called");
    assert_eq!(
        body,
        serde_json::json!({
            "namespace": "trading",
            "platform": "ml-inference",
            "event": "CircuitOpen",
            "severity": "critical",
            "summary": "circuit open after 4 restarts in 600 s",
            "evidence": ["pod ml-0: CrashLoopBackOff (restarts 5)"],
            "time": "2026-01-02T03:04:05Z",
        })
    );
    h.counted("webhook", "sent", 1).await;
}

#[tokio::test]
async fn slack_receives_an_incoming_webhook_message() {
    let h = Harness::start(settings()).await;
    let mut receiver = HttpReceiver::start().await;
    h.secret("slack", &[("url", &receiver.url)]).await;
    let routes = routes(vec![channel(
        "team",
        AlertChannelType::Slack,
        "slack",
        "url",
    )]);

    h.alerter.send(&routes, alert(AlertEvent::Failed));

    let message = receiver.next(WAIT).await.expect("slack was called");
    let text = message["text"].as_str().expect("text");
    assert!(text.contains("trading/ml-inference Failed"), "{text}");
    let blocks = message["blocks"].as_array().expect("blocks");
    let types: Vec<&str> = blocks.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(types, ["header", "section", "context"]);
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    let details = blocks[1]["text"]["text"].as_str().expect("section text");
    assert!(
        details.contains("circuit open after 4 restarts"),
        "{details}"
    );
    assert!(
        details.contains("CrashLoopBackOff (restarts 5)"),
        "{details}"
    );
    h.counted("slack", "sent", 1).await;
}

#[tokio::test]
async fn an_email_reaches_the_recipient_with_subject_and_body() {
    let (relay, mut mail) = smtp_server().await;
    let smtp = SmtpSettings::new(
        &relay.to_string(),
        "platform-operator <operator@example.com>",
        StartTls::Off,
    )
    .expect("smtp settings");
    let h = Harness::start(AlertSettings {
        smtp: Some(smtp),
        ..settings()
    })
    .await;
    h.secret("mail", &[("oncall", "oncall@example.com")]).await;
    let routes = routes(vec![channel(
        "pager",
        AlertChannelType::Email,
        "mail",
        "oncall",
    )]);

    h.alerter.send(&routes, alert(AlertEvent::DependencyFailed));

    let mail = tokio::time::timeout(WAIT, mail.recv())
        .await
        .expect("mail within the wait")
        .expect("a mail");
    assert_eq!(mail.from, "operator@example.com");
    assert_eq!(mail.to, ["oncall@example.com"]);
    assert!(
        mail.data
            .contains("Subject: [critical] trading/ml-inference: DependencyFailed"),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains("To: oncall@example.com"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("circuit open after 4 restarts in 600 s"));
    assert!(
        mail.data
            .contains("- pod ml-0: CrashLoopBackOff (restarts 5)")
    );
    h.counted("email", "sent", 1).await;
}

#[tokio::test]
async fn only_subscribed_events_are_sent() {
    let h = Harness::start(settings()).await;
    let mut defaults = HttpReceiver::start().await;
    let mut listed = HttpReceiver::start().await;
    h.secret(
        "hooks",
        &[("defaults", &defaults.url), ("listed", &listed.url)],
    )
    .await;
    let default_routes = routes(vec![channel(
        "defaults",
        AlertChannelType::Webhook,
        "hooks",
        "defaults",
    )]);
    let listed_routes = Alerts {
        channels: vec![channel(
            "listed",
            AlertChannelType::Webhook,
            "hooks",
            "listed",
        )],
        events: Some(vec![AlertEvent::Recovered]),
    };

    for event in [
        AlertEvent::Recovered,
        AlertEvent::Restarted,
        AlertEvent::Failed,
    ] {
        h.alerter.send(&default_routes, alert(event));
        h.alerter.send(&listed_routes, alert(event));
    }

    // Each channel delivers in order, so what arrives within the wait is all there is.
    let events = |bodies: Vec<serde_json::Value>| -> Vec<String> {
        bodies.iter().map(|b| b["event"].to_string()).collect()
    };
    assert_eq!(
        events(defaults.all(Duration::from_secs(1)).await),
        ["\"Failed\""]
    );
    assert_eq!(
        events(listed.all(Duration::from_secs(1)).await),
        ["\"Recovered\""]
    );
    h.counted("webhook", "sent", 2).await;
    assert_eq!(h.count("webhook", "sent"), 2);
}

#[tokio::test]
async fn the_rate_limit_holds_per_channel() {
    let h = Harness::start(AlertSettings {
        // Three at once, then one an hour: none refills during the test.
        per_channel_limit: RateLimit {
            qps: 1.0 / 3600.0,
            burst: 3,
        },
        ..settings()
    })
    .await;
    let mut flapping = HttpReceiver::start().await;
    let mut other = HttpReceiver::start().await;
    h.secret(
        "hooks",
        &[("flapping", &flapping.url), ("other", &other.url)],
    )
    .await;
    let flapping_routes = routes(vec![channel(
        "a",
        AlertChannelType::Webhook,
        "hooks",
        "flapping",
    )]);
    let other_routes = routes(vec![channel(
        "b",
        AlertChannelType::Webhook,
        "hooks",
        "other",
    )]);

    for _ in 0..5 {
        h.alerter.send(&flapping_routes, alert(AlertEvent::Failed));
    }
    h.alerter.send(&other_routes, alert(AlertEvent::Failed));

    assert_eq!(flapping.all(Duration::from_secs(1)).await.len(), 3);
    assert_eq!(other.all(Duration::from_millis(200)).await.len(), 1);
    h.counted("webhook", "sent", 4).await;
    assert_eq!(h.count("webhook", "sent"), 4);
    assert_eq!(h.count("webhook", "rate_limited"), 2);
}

#[tokio::test]
async fn a_broken_channel_does_not_delay_the_others() {
    let h = Harness::start(AlertSettings {
        // Fewer slots than alerts for the hanging channel: it must still hold only one.
        concurrency: 2,
        ..settings()
    })
    .await;
    let mut good = HttpReceiver::start().await;
    let hanging = hanging_url().await;
    let refused = refused_url().await;
    h.secret(
        "hooks",
        &[
            ("good", &good.url),
            ("hanging", &hanging),
            ("refused", &refused),
        ],
    )
    .await;
    let routes = routes(vec![
        channel("hanging", AlertChannelType::Webhook, "hooks", "hanging"),
        channel("refused", AlertChannelType::Webhook, "hooks", "refused"),
        channel("good", AlertChannelType::Webhook, "hooks", "good"),
    ]);
    let sent = Instant::now();

    for _ in 0..4 {
        h.alerter.send(&routes, alert(AlertEvent::Failed));
    }

    // Well inside the 5 s timeout the hanging channel's first alert is waiting on.
    let delivered = good.all(Duration::from_secs(1)).await;
    assert_eq!(delivered.len(), 4, "took {:?}", sent.elapsed());
    h.counted("webhook", "failed", 4).await;
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_fails_at_the_timeout() {
    let h = Harness::start(AlertSettings {
        timeout: Duration::from_millis(300),
        ..settings()
    })
    .await;
    let hanging = hanging_url().await;
    h.secret("hooks", &[("hanging", &hanging)]).await;
    let routes = routes(vec![channel(
        "h",
        AlertChannelType::Webhook,
        "hooks",
        "hanging",
    )]);
    let sent = Instant::now();

    h.alerter.send(&routes, alert(AlertEvent::Failed));

    h.counted("webhook", "failed", 1).await;
    assert!(sent.elapsed() >= Duration::from_millis(300));
    assert_eq!(h.count("webhook", "sent"), 0);
}

#[tokio::test]
async fn a_missing_secret_or_key_is_a_failed_delivery() {
    let h = Harness::start(settings()).await;
    let mut good = HttpReceiver::start().await;
    h.secret("hooks", &[("good", &good.url)]).await;
    let routes = routes(vec![
        channel("nosecret", AlertChannelType::Slack, "absent", "url"),
        channel("nokey", AlertChannelType::Webhook, "hooks", "absent"),
        channel("good", AlertChannelType::Webhook, "hooks", "good"),
    ]);

    h.alerter.send(&routes, alert(AlertEvent::Failed));

    assert!(good.next(WAIT).await.is_some());
    h.counted("slack", "failed", 1).await;
    h.counted("webhook", "failed", 1).await;
    h.counted("webhook", "sent", 1).await;
}

#[tokio::test]
async fn secrets_are_read_once_while_cached() {
    let h = Harness::start(settings()).await;
    let mut receiver = HttpReceiver::start().await;
    h.secret("hooks", &[("ops", &receiver.url)]).await;
    let requests = h.cluster.request_counter();
    let routes = routes(vec![channel(
        "ops",
        AlertChannelType::Webhook,
        "hooks",
        "ops",
    )]);
    let before = requests();

    for _ in 0..5 {
        h.alerter.send(&routes, alert(AlertEvent::Failed));
    }

    assert_eq!(receiver.all(Duration::from_secs(1)).await.len(), 5);
    assert_eq!(requests() - before, 1, "one Secret read for five alerts");
}

#[tokio::test]
async fn send_never_blocks_even_when_the_queue_is_full() {
    let cluster = SimCluster::start(SimConfig::default())
        .await
        .expect("simulated cluster");
    let metrics = Arc::new(Metrics::default());
    let (_stop, stopped) = watch::channel(false);
    let settings = AlertSettings {
        queue: 4,
        ..settings()
    };
    // The delivery task is never run: nothing leaves the queue.
    let (alerter, _task) = Alerter::new(cluster.client(), settings, metrics.clone(), stopped);
    let routes = routes(vec![channel(
        "ops",
        AlertChannelType::Webhook,
        "hooks",
        "ops",
    )]);
    let begin = Instant::now();

    for _ in 0..100 {
        alerter.send(&routes, alert(AlertEvent::Failed));
    }

    assert!(
        begin.elapsed() < Duration::from_secs(1),
        "{:?}",
        begin.elapsed()
    );
    assert_eq!(count(&metrics, "webhook", "dropped"), 96);
}

#[tokio::test]
async fn stopping_delivers_what_is_queued_within_the_drain_bound() {
    let h = Harness::start(AlertSettings {
        drain: Duration::from_millis(500),
        ..settings()
    })
    .await;
    let mut good = HttpReceiver::start().await;
    let hanging = hanging_url().await;
    h.secret("hooks", &[("good", &good.url), ("hanging", &hanging)])
        .await;
    let routes = routes(vec![
        channel("good", AlertChannelType::Webhook, "hooks", "good"),
        channel("hanging", AlertChannelType::Webhook, "hooks", "hanging"),
    ]);

    for _ in 0..3 {
        h.alerter.send(&routes, alert(AlertEvent::Failed));
    }
    h.stop.send_replace(true);
    let stopping = Instant::now();
    tokio::time::timeout(WAIT, h.task)
        .await
        .expect("the task ends within the drain bound")
        .expect("the task did not panic");

    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(good.all(Duration::from_millis(100)).await.len(), 3);
    // The hanging channel's first alert was cut off, the two behind it never started.
    assert_eq!(count(&h.metrics, "webhook", "dropped"), 3);
    h.alerter.send(&routes, alert(AlertEvent::Failed));
    assert_eq!(
        count(&h.metrics, "webhook", "dropped"),
        5,
        "closed after stop"
    );
}
