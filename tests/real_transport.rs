//! The operator's HTTP/2 transport against the real API server (`make testenv`): every
//! request answered in HTTP/2, many at once alongside a watch, through kube's usual layers
//! (credentials from the kubeconfig's client certificate, base URL).

mod real_support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use platform_operator::client::{ApiTransport, Transport};

async fn transport(kubeconfig: &std::path::Path, wanted: Transport) -> ApiTransport {
    let file = Kubeconfig::read_from(kubeconfig).expect("the admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .expect("a config");
    ApiTransport::new(config, wanted).expect("a transport")
}

/// The HTTP version `/version` is answered in.
async fn answered_in(client: &kube::Client) -> http::Version {
    let request = http::Request::get("/version")
        .body(kube::client::Body::empty())
        .expect("a request");
    let answer = client.send(request).await.expect("an answer");
    assert!(answer.status().is_success(), "{}", answer.status());
    answer.version()
}

#[tokio::test]
async fn requests_and_a_watch_share_http2_with_the_api_server() {
    let Some(env) = real_support::env().await else {
        return;
    };
    let transport = transport(&env.admin_kubeconfig, Transport::Http2).await;
    assert_eq!(transport.transport(), Transport::Http2);
    let client = transport.builder().expect("a builder").build();

    assert_eq!(answered_in(&client).await, http::Version::HTTP_2);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut watch = namespaces
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .expect("a watch")
        .boxed();
    let lists = (0..64).map(|_| {
        let namespaces = namespaces.clone();
        async move { namespaces.list(&ListParams::default().limit(1)).await }
    });
    let answers = futures::future::join_all(lists).await;
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|a| a.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(failed.is_empty(), "lists failed over HTTP/2: {failed:?}");
    // The watch is still served on the same connection: it lists what exists as ADDED.
    let first = watch.try_next().await.expect("a watch event");
    assert!(first.is_some(), "the watch ended before its first event");
}

#[tokio::test]
async fn http1_still_works_when_asked_for() {
    let Some(env) = real_support::env().await else {
        return;
    };
    let transport = transport(&env.admin_kubeconfig, Transport::Http1).await;
    let client = transport.builder().expect("a builder").build();
    assert_eq!(answered_in(&client).await, http::Version::HTTP_11);
}
