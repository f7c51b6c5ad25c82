//! Routing, pure: which alert routes apply to a platform, which of their channels hear an
//! event, and the identity a channel is rate-limited under.

use crate::crd::{AlertChannel, AlertEvent, Alerts, GroupDefaults, Platform};

/// The events that alert when `events` is unset (as the CRD documents).
pub const DEFAULT_EVENTS: [AlertEvent; 4] = [
    AlertEvent::Failed,
    AlertEvent::CircuitOpen,
    AlertEvent::ResourceExceeded,
    AlertEvent::DependencyFailed,
];

/// The alert routes that apply to `platform`: its own `alerts` if set (as a whole, not merged),
/// else its group's `defaults.alerts`.
pub fn effective_alerts(
    platform: &Platform,
    group_defaults: Option<&GroupDefaults>,
) -> Option<Alerts> {
    platform
        .spec
        .alerts
        .clone()
        .or_else(|| group_defaults.and_then(|defaults| defaults.alerts.clone()))
}

/// Whether `routes` alert on `event`.
pub fn subscribes(routes: &Alerts, event: AlertEvent) -> bool {
    match &routes.events {
        Some(events) => events.contains(&event),
        None => DEFAULT_EVENTS.contains(&event),
    }
}

/// The channels of `routes` that receive `event`.
pub fn channels_for(routes: &Alerts, event: AlertEvent) -> &[AlertChannel] {
    if subscribes(routes, event) {
        &routes.channels
    } else {
        &[]
    }
}

/// What one rate limit covers: a destination as configured in one namespace. Platforms of a
/// group share their group's channels, so a cascade through the group shares one budget.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelKey(String);

impl ChannelKey {
    pub fn new(namespace: &str, channel: &AlertChannel) -> Self {
        // NUL cannot occur in Kubernetes names, so distinct channels never share a key.
        ChannelKey(format!(
            "{namespace}\0{}\0{}\0{}",
            channel.name, channel.secret_ref.name, channel.secret_ref.key
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `namespace/channel`, for logs.
    pub fn display(&self) -> String {
        let mut parts = self.0.split('\0');
        let namespace = parts.next().unwrap_or_default();
        let channel = parts.next().unwrap_or_default();
        format!("{namespace}/{channel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AlertChannelType, SecretKeyRef};
    use crate::fixtures::{group, platform};

    fn channel(name: &str) -> AlertChannel {
        AlertChannel {
            name: name.into(),
            channel_type: AlertChannelType::Webhook,
            secret_ref: SecretKeyRef {
                name: "hooks".into(),
                key: name.into(),
            },
        }
    }

    fn routes(events: Option<Vec<AlertEvent>>) -> Alerts {
        Alerts {
            channels: vec![channel("ops")],
            events,
        }
    }

    #[test]
    fn unset_events_alert_on_the_documented_defaults_only() {
        let routes = routes(None);
        for event in DEFAULT_EVENTS {
            assert_eq!(channels_for(&routes, event).len(), 1, "{event:?}");
        }
        for event in [
            AlertEvent::Recovered,
            AlertEvent::Restarted,
            AlertEvent::Stopped,
            AlertEvent::HealthCheckFailed,
        ] {
            assert!(channels_for(&routes, event).is_empty(), "{event:?}");
        }
    }

    #[test]
    fn listed_events_replace_the_defaults() {
        let routes = routes(Some(vec![AlertEvent::Recovered]));
        assert_eq!(channels_for(&routes, AlertEvent::Recovered).len(), 1);
        assert!(channels_for(&routes, AlertEvent::Failed).is_empty());
        let silent = self::routes(Some(vec![]));
        assert!(channels_for(&silent, AlertEvent::Failed).is_empty());
    }

    #[test]
    fn a_platforms_own_alerts_replace_its_groups_as_a_whole() {
        let group_routes = routes(Some(vec![AlertEvent::Recovered]));
        let defaults = GroupDefaults {
            alerts: Some(group_routes.clone()),
            ..Default::default()
        };
        let inheriting = platform("a").build();
        assert_eq!(
            effective_alerts(&inheriting, Some(&defaults)),
            Some(group_routes)
        );
        let own = Alerts {
            channels: vec![channel("pager")],
            events: None,
        };
        let overriding = platform("b")
            .with_spec(|spec| spec.alerts = Some(own.clone()))
            .build();
        assert_eq!(effective_alerts(&overriding, Some(&defaults)), Some(own));
        assert_eq!(effective_alerts(&inheriting, None), None);
        let no_alerts = group("g").build().spec.defaults;
        assert_eq!(effective_alerts(&inheriting, no_alerts.as_ref()), None);
    }

    #[test]
    fn channel_keys_separate_namespaces_names_and_secrets() {
        let ops = channel("ops");
        let mut other_secret = ops.clone();
        other_secret.secret_ref.name = "other".into();
        let key = ChannelKey::new("trading", &ops);
        assert_eq!(key, ChannelKey::new("trading", &ops.clone()));
        assert_ne!(key, ChannelKey::new("risk", &ops));
        assert_ne!(key, ChannelKey::new("trading", &other_secret));
        assert_ne!(key, ChannelKey::new("trading", &channel("pager")));
        assert_eq!(key.display(), "trading/ops");
    }
}
