//! What each kind of channel receives, pure: the generic webhook document, the Slack
//! incoming-webhook message and the email's subject and body.

use serde_json::{Value, json};

use super::Alert;

/// Slack refuses a section text over 3,000 characters and a header over 150.
const SLACK_SECTION_MAX: usize = 3000;
const SLACK_HEADER_MAX: usize = 150;

/// The event's name as the CRD spells it (`CircuitOpen`).
pub fn event_name(alert: &Alert) -> String {
    match serde_json::to_value(alert.event) {
        Ok(Value::String(name)) => name,
        _ => format!("{:?}", alert.event),
    }
}

/// The generic webhook document: every field of the alert, flat.
pub fn webhook(alert: &Alert) -> Value {
    json!({
        "namespace": alert.namespace,
        "platform": alert.platform,
        "event": event_name(alert),
        "severity": alert.severity.as_str(),
        "summary": alert.summary,
        "evidence": alert.evidence,
        "time": alert.time.to_string(),
    })
}

/// A Slack incoming-webhook message: `text` is what notifications show, the blocks are what
/// the channel shows.
pub fn slack(alert: &Alert) -> Value {
    let event = event_name(alert);
    let header = truncate(
        &format!(
            "{} {event}: {}/{}",
            alert.severity.slack_emoji(),
            alert.namespace,
            alert.platform
        ),
        SLACK_HEADER_MAX,
    );
    let mut details = format!("*{}*", escape(&alert.summary));
    for line in &alert.evidence {
        details.push_str("\n• ");
        details.push_str(&escape(line));
    }
    json!({
        "text": fallback_text(alert),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": header, "emoji": true},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&details, SLACK_SECTION_MAX)},
            },
            {
                "type": "context",
                "elements": [{
                    "type": "mrkdwn",
                    "text": format!(
                        "severity *{}* · platform `{}` in `{}` · {}",
                        alert.severity.as_str(),
                        escape(&alert.platform),
                        escape(&alert.namespace),
                        alert.time
                    ),
                }],
            },
        ],
    })
}

/// One line: what a notification or a mail subject shows.
fn fallback_text(alert: &Alert) -> String {
    format!(
        "[{}] {}/{} {}: {}",
        alert.severity.as_str(),
        alert.namespace,
        alert.platform,
        event_name(alert),
        escape(&alert.summary)
    )
}

pub fn email_subject(alert: &Alert) -> String {
    format!(
        "[{}] {}/{}: {}",
        alert.severity.as_str(),
        alert.namespace,
        alert.platform,
        event_name(alert)
    )
}

pub fn email_body(alert: &Alert) -> String {
    let mut body = format!(
        "{}\n\nPlatform: {}/{}\nEvent: {}\nSeverity: {}\nTime: {}\n",
        alert.summary,
        alert.namespace,
        alert.platform,
        event_name(alert),
        alert.severity.as_str(),
        alert.time
    );
    if !alert.evidence.is_empty() {
        body.push_str("\nEvidence:\n");
        for line in &alert.evidence {
            body.push_str("- ");
            body.push_str(line);
            body.push('\n');
        }
    }
    body
}

/// Slack reads `&`, `<` and `>` as markup (`<!channel>` notifies everyone): text from the
/// cluster must not be able to do that.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Severity;
    use crate::crd::AlertEvent;

    fn alert() -> Alert {
        Alert {
            namespace: "trading".into(),
            platform: "ml-inference".into(),
            event: AlertEvent::CircuitOpen,
            severity: Severity::Critical,
            summary: "circuit open after 4 restarts in 600 s".into(),
            evidence: vec!["pod ml-0: CrashLoopBackOff (restarts 5)".into()],
            time: "2026-01-02T03:04:05Z".parse().expect("timestamp"),
        }
    }

    #[test]
    fn the_webhook_document_carries_every_field() {
        assert_eq!(
            webhook(&alert()),
            json!({
                "namespace": "trading",
                "platform": "ml-inference",
                "event": "CircuitOpen",
                "severity": "critical",
                "summary": "circuit open after 4 restarts in 600 s",
                "evidence": ["pod ml-0: CrashLoopBackOff (restarts 5)"],
                "time": "2026-01-02T03:04:05Z",
            })
        );
    }

    #[test]
    fn slack_text_cannot_mention_everyone_and_fits_slacks_limits() {
        let mut alert = alert();
        alert.summary = "<!channel> & friends".into();
        alert.evidence = vec!["x".repeat(4000)];
        alert.platform = "p".repeat(200);
        let message = slack(&alert);
        let text = message["text"].as_str().expect("text");
        assert!(text.contains("&lt;!channel&gt; &amp; friends"), "{text}");
        let blocks = message["blocks"].as_array().expect("blocks");
        let header = blocks[0]["text"]["text"].as_str().expect("header");
        assert_eq!(header.chars().count(), SLACK_HEADER_MAX);
        let section = blocks[1]["text"]["text"].as_str().expect("section");
        assert_eq!(section.chars().count(), SLACK_SECTION_MAX);
        assert!(!section.contains("<!channel>"), "{section}");
    }

    #[test]
    fn the_email_names_severity_platform_and_event_and_lists_the_evidence() {
        assert_eq!(
            email_subject(&alert()),
            "[critical] trading/ml-inference: CircuitOpen"
        );
        let body = email_body(&alert());
        assert!(body.starts_with("circuit open after 4 restarts in 600 s\n"));
        assert!(body.contains("\n- pod ml-0: CrashLoopBackOff (restarts 5)\n"));
        assert!(body.contains("Time: 2026-01-02T03:04:05Z"));
    }
}
