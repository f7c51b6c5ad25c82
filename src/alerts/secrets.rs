//! Channel addresses from Secrets, cached briefly: an alert storm reads each Secret once per
//! `ttl`, not once per alert. A missing Secret is cached too (it is the likely state of a
//! misconfigured channel during a storm); other read errors are not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::time::Instant;

use super::DeliveryError;
use crate::crd::SecretKeyRef;

/// Beyond this many cached Secrets, expired entries are forgotten.
const CACHED_MAX: usize = 1024;

struct Cached {
    read: Instant,
    /// `None`: the Secret does not exist.
    data: Option<BTreeMap<String, ByteString>>,
}

pub struct SecretCache {
    client: kube::Client,
    ttl: Duration,
    entries: Mutex<HashMap<(String, String), Cached>>,
}

impl SecretCache {
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        SecretCache {
            client,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value under `secret.key` of Secret `secret.name` in `namespace`, as text.
    pub async fn value(
        &self,
        namespace: &str,
        secret: &SecretKeyRef,
    ) -> Result<String, DeliveryError> {
        let id = (namespace.to_string(), secret.name.clone());
        let data = match self.cached(&id) {
            Some(data) => data,
            None => {
                let data = self.read(namespace, &secret.name).await?;
                self.remember(id, data.clone());
                data
            }
        };
        let missing = || DeliveryError::KeyMissing {
            namespace: namespace.to_string(),
            name: secret.name.clone(),
            key: secret.key.clone(),
        };
        let Some(data) = data else {
            return Err(DeliveryError::SecretMissing {
                namespace: namespace.to_string(),
                name: secret.name.clone(),
            });
        };
        let bytes = data.get(&secret.key).ok_or_else(missing)?;
        let text = std::str::from_utf8(&bytes.0).map_err(|_| DeliveryError::NotText {
            name: secret.name.clone(),
            key: secret.key.clone(),
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(missing());
        }
        Ok(text.to_string())
    }

    fn cached(&self, id: &(String, String)) -> Option<Option<BTreeMap<String, ByteString>>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(id)
            .filter(|entry| entry.read.elapsed() < self.ttl)
            .map(|entry| entry.data.clone())
    }

    fn remember(&self, id: (String, String), data: Option<BTreeMap<String, ByteString>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHED_MAX {
            entries.retain(|_, entry| entry.read.elapsed() < self.ttl);
        }
        entries.insert(
            id,
            Cached {
                read: Instant::now(),
                data,
            },
        );
    }

    async fn read(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, ByteString>>, DeliveryError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|source| DeliveryError::SecretRead {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
        Ok(secret.map(|secret| {
            // `stringData` is write-only on a real API server; reading it too serves a
            // Secret that a simpler server returns as written.
            let mut data = secret.data.unwrap_or_default();
            for (key, value) in secret.string_data.unwrap_or_default() {
                data.entry(key).or_insert(ByteString(value.into_bytes()));
            }
            data
        }))
    }
}
