//! The main container: what the operator adds to it (probes, resources) and what a full
//! template keeps.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, Probe as K8sProbe, ResourceRequirements, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{cached, deployment_of, main_container, pod_spec, with_template};
use crate::crd::{
    CpuMemory, ExecProbe, HealthCheckSettings, HttpProbe, Probe, ResourceSettings, TcpProbe,
};
use crate::fixtures::{PlatformBuilder, platform};

fn health(probe: Probe, startup_timeout_seconds: u32) -> Option<HealthCheckSettings> {
    Some(HealthCheckSettings {
        probe: Some(probe),
        startup_timeout_seconds: Some(startup_timeout_seconds),
        ..Default::default()
    })
}

fn with_probe(probe: Probe, startup_timeout_seconds: u32) -> PlatformBuilder {
    platform("a").with_spec(|s| s.health_check = health(probe, startup_timeout_seconds))
}

fn http_probe(path: &str, port: u16) -> Probe {
    let http = HttpProbe {
        path: path.into(),
        port,
    };
    Probe {
        http: Some(http),
        ..Default::default()
    }
}

fn tcp_probe(port: u16) -> Probe {
    Probe {
        tcp: Some(TcpProbe { port }),
        ..Default::default()
    }
}

fn exec_probe(command: &str) -> Probe {
    let command = vec![command.to_string()];
    Probe {
        exec: Some(ExecProbe { command }),
        ..Default::default()
    }
}

fn quantity(value: &str) -> Quantity {
    Quantity(value.into())
}

fn cpu_memory(cpu: Option<&str>, memory: Option<&str>) -> CpuMemory {
    CpuMemory {
        cpu: cpu.map(quantity),
        memory: memory.map(quantity),
    }
}

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(format!("{name}:1")),
        ..Default::default()
    }
}

#[test]
fn a_full_template_keeps_its_containers_and_only_the_main_one_is_decorated() {
    let own = ResourceRequirements {
        requests: Some([("cpu".to_string(), quantity("100m"))].into()),
        ..Default::default()
    };
    let main = Container {
        resources: Some(own.clone()),
        ..container("app")
    };
    let p = cached(
        with_template(vec![main, container("sidecar")])
            .config("k", "v")
            .with_spec(|s| {
                s.resources = Some(ResourceSettings {
                    requests: Some(cpu_memory(Some("2"), Some("1Gi"))),
                    limits: None,
                });
                s.health_check = health(tcp_probe(8080), 60);
            }),
    );
    let d = deployment_of(&p);
    let containers = &pod_spec(&d).containers;
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "sidecar"]);
    assert_eq!(containers[0].image.as_deref(), Some("app:1"));
    assert_eq!(containers[0].resources, Some(own), "its own resources win");
    assert!(containers[0].readiness_probe.is_some());
    assert!(containers[0].startup_probe.is_some());
    assert!(containers[0].volume_mounts.is_some());
    let sidecar = &containers[1];
    assert_eq!(sidecar.resources, None);
    assert_eq!(sidecar.readiness_probe, None);
    assert_eq!(sidecar.startup_probe, None);
    assert_eq!(sidecar.volume_mounts, None);
}

#[test]
fn a_template_probe_is_not_overridden() {
    let own = K8sProbe {
        initial_delay_seconds: Some(7),
        ..Default::default()
    };
    let main = Container {
        readiness_probe: Some(own.clone()),
        ..container("app")
    };
    let p =
        cached(with_template(vec![main]).with_spec(|s| s.health_check = health(tcp_probe(1), 60)));
    let d = deployment_of(&p);
    assert_eq!(main_container(&d).readiness_probe, Some(own));
    assert!(main_container(&d).startup_probe.is_some(), "still added");
}

#[test]
fn each_health_probe_kind_becomes_a_readiness_and_a_startup_probe() {
    let http = HTTPGetAction {
        path: Some("/healthz".into()),
        port: IntOrString::Int(8080),
        ..Default::default()
    };
    let tcp = TCPSocketAction {
        port: IntOrString::Int(5432),
        ..Default::default()
    };
    let exec = ExecAction {
        command: Some(vec!["pg_isready".into()]),
    };
    for (probe, action) in [
        (http_probe("/healthz", 8080), (Some(http), None, None)),
        (tcp_probe(5432), (None, Some(tcp), None)),
        (exec_probe("pg_isready"), (None, None, Some(exec))),
    ] {
        let d = deployment_of(&cached(with_probe(probe, 60)));
        let c = main_container(&d);
        let readiness = c.readiness_probe.clone().expect("readiness probe");
        let startup = c.startup_probe.clone().expect("startup probe");
        for p in [&readiness, &startup] {
            let probed = (p.http_get.clone(), p.tcp_socket.clone(), p.exec.clone());
            assert_eq!(probed, action);
        }
        assert_eq!(readiness.period_seconds, Some(30), "intervalSeconds");
        assert_eq!(readiness.timeout_seconds, Some(5), "timeoutSeconds");
        assert_eq!(readiness.failure_threshold, Some(3), "failureThreshold");
        assert_eq!(startup.period_seconds, Some(5));
    }
}

#[test]
fn the_startup_probe_allows_the_startup_timeout_rounded_up_to_whole_periods() {
    for (startup_timeout, failure_threshold) in [(60, 12), (61, 13), (5, 1), (3, 1), (1, 1)] {
        let d = deployment_of(&cached(with_probe(tcp_probe(1), startup_timeout)));
        let startup = main_container(&d).startup_probe.clone().expect("startup");
        assert_eq!(
            startup.failure_threshold,
            Some(failure_threshold),
            "startupTimeoutSeconds {startup_timeout}"
        );
    }
}

#[test]
fn without_a_probe_the_kubelet_defaults_apply() {
    let d = deployment_of(&cached(platform("a")));
    assert_eq!(main_container(&d).readiness_probe, None);
    assert_eq!(main_container(&d).startup_probe, None);
}

#[test]
fn resource_limits_default_to_the_requests() {
    let map = |cpu: &str, memory: &str| -> Option<BTreeMap<String, Quantity>> {
        Some(
            [
                ("cpu".into(), quantity(cpu)),
                ("memory".into(), quantity(memory)),
            ]
            .into(),
        )
    };
    for (name, settings, requests, limits) in [
        (
            "requests only",
            ResourceSettings {
                requests: Some(cpu_memory(Some("2"), Some("1Gi"))),
                limits: None,
            },
            map("2", "1Gi"),
            map("2", "1Gi"),
        ),
        (
            "a cpu limit keeps the memory request as limit",
            ResourceSettings {
                requests: Some(cpu_memory(Some("2"), Some("1Gi"))),
                limits: Some(cpu_memory(Some("4"), None)),
            },
            map("2", "1Gi"),
            map("4", "1Gi"),
        ),
    ] {
        let p = cached(platform("a").with_spec(|s| s.resources = Some(settings)));
        let resources = main_container(&deployment_of(&p)).resources.clone();
        let resources = resources.expect(name);
        assert_eq!(resources.requests, requests, "{name}");
        assert_eq!(resources.limits, limits, "{name}");
    }
    let d = deployment_of(&cached(platform("a")));
    assert_eq!(main_container(&d).resources, None, "nothing set");
}
