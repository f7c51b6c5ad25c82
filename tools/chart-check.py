#!/usr/bin/env python3
"""Lints charts/platform-operator with the Helm CLI and checks what it renders, per values set:
every document parses, the kinds are exactly the expected ones, the Deployment runs the
operator hardened, with the expected command line (alert flags exactly when their values are
set), the relay password only from a Secret, replicas and rollout strategy, the RBAC has
no wildcard and grants leases only with leader election (exactly the lease verbs, in the
release namespace), the trading stack values render the objects of
deploy/examples/trading-stack.yaml, and values the chart must refuse are refused.

    tools/chart-check.py --helm PATH
"""

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "platform-operator"
NAMESPACE = "platform-operator-system"
# The lowest Kubernetes version the chart claims (Chart.yaml kubeVersion), and a current one.
KUBE_VERSIONS = ("1.25.0", "1.36.3")

OPERATOR = {"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Service": 1, "Deployment": 1}
# Leader election adds a Role + RoleBinding on leases in the release namespace.
ELECTION = {"Role": 1, "RoleBinding": 1}
STACK = {"Namespace": 1, "PlatformGroup": 1, "Platform": 6}


def election_args(lease="platform-operator", duration=15, renew_before=5):
    return ["--leader-elect", "--leader-elect-lease-name", lease,
            "--leader-elect-lease-duration-seconds", str(duration),
            "--leader-elect-renew-before-seconds", str(renew_before)]


# values-prod.yaml's relay; the rate stays at the operator's default, so no rate flags.
PROD_SMTP_ARGS = ["--alert-smtp-server", "smtp.example.internal:587",
                  "--alert-smtp-from", "platform-operator <alerts@example.com>",
                  "--alert-smtp-starttls", "required", "--alert-smtp-username", "platform-operator"]
PROD_ARGS = ["--kube-qps", "500", "--kube-burst", "1000", "--concurrency", "64"] + election_args() + PROD_SMTP_ARGS
DEV_ARGS = ["--alert-rate-per-minute", "30", "--alert-burst", "20"]

# The Secret (name, key) ALERT_SMTP_PASSWORD must come from, per case; every other case must
# not set ALERT_SMTP_PASSWORD at all.
PASSWORD_SECRETS = {
    "prod": ("platform-operator-smtp", "password"),
    "trading-stack": ("platform-operator-smtp", "password"),
    "alerts-all": ("relay-login", "smtp-password"),
}

# name -> (values files, --set assignments (or (flag, assignment) for another --set-* flag),
# expected kinds, expected extra operator arguments, expected replicas)
CASES = {
    "default": ([], [], OPERATOR, [], 1),
    "dev": (["values-dev.yaml"], [], OPERATOR, DEV_ARGS, 1),
    "prod": (["values-prod.yaml"], [],
             {**OPERATOR, **ELECTION, "ServiceMonitor": 1, "NetworkPolicy": 1, "PodDisruptionBudget": 1},
             PROD_ARGS, 2),
    "trading-stack": (["values-prod.yaml", "examples/values-trading-stack.yaml"], [],
                      {**OPERATOR, **ELECTION, "ServiceMonitor": 1, "NetworkPolicy": 1,
                       "PodDisruptionBudget": 1, **STACK},
                      PROD_ARGS, 2),
    "watch-namespace": ([], ["watchNamespace=trading"],
                        {"ServiceAccount": 1, "Role": 1, "RoleBinding": 1, "ClusterRole": 1,
                         "ClusterRoleBinding": 1, "Service": 1, "Deployment": 1},
                        ["--namespace", "trading"], 1),
    # One replica may elect too (it fences itself by the Lease); no budget for one pod.
    "leader-election-one-replica": ([], ["leaderElection.enabled=true"], {**OPERATOR, **ELECTION},
                                    election_args(), 1),
    "leader-election": ([], ["replicas=3", "leaderElection.enabled=true", "leaderElection.leaseName=ops",
                             "leaderElection.leaseDurationSeconds=30", "leaderElection.renewBeforeSeconds=10"],
                        {**OPERATOR, **ELECTION, "PodDisruptionBudget": 1}, election_args("ops", 30, 10), 3),
    # The watched namespace's Role and the lease Role in the release namespace side by side.
    "leader-election-watch-namespace": ([], ["replicas=2", "leaderElection.enabled=true", "watchNamespace=trading"],
                                        {"ServiceAccount": 1, "Role": 2, "RoleBinding": 2, "ClusterRole": 1,
                                         "ClusterRoleBinding": 1, "Service": 1, "Deployment": 1,
                                         "PodDisruptionBudget": 1},
                                        ["--namespace", "trading"] + election_args(), 2),
    # Every alert value set; --set-json because --set turns 0.5 into a string.
    "alerts-all": ([], ["alerts.smtp.server=[fd00::25]:2525", "alerts.smtp.from=ops <ops@example.com>",
                        "alerts.smtp.starttls=off", "alerts.smtp.username=operator",
                        "alerts.smtp.passwordSecret.name=relay-login",
                        "alerts.smtp.passwordSecret.key=smtp-password",
                        ("--set-json", "alerts.ratePerMinute=0.5"), "alerts.burst=3", "alerts.timeoutSeconds=30"],
                   OPERATOR,
                   ["--alert-smtp-server", "[fd00::25]:2525", "--alert-smtp-from", "ops <ops@example.com>",
                    "--alert-smtp-starttls", "off", "--alert-smtp-username", "operator",
                    "--alert-rate-per-minute", "0.5", "--alert-burst", "3", "--alert-timeout-seconds", "30"], 1),
    # kube's HTTP/1.1 client, asked for by name.
    "kube-http1": ([], ["kubeClient.http=http1"], OPERATOR, ["--kube-http", "http1"], 1),
    # A relay without login and without starttls keeps the operator's STARTTLS default.
    "alerts-relay-only": ([], ["alerts.smtp.server=relay.mail.svc", "alerts.smtp.from=alerts@example.com"],
                          OPERATOR, ["--alert-smtp-server", "relay.mail.svc", "--alert-smtp-from",
                                     "alerts@example.com"], 1),
    # Clearing the server switches email off on top of prod: no smtp flag, no password.
    "prod-email-off": (["values-prod.yaml"], ["alerts.smtp.server="],
                       {**OPERATOR, **ELECTION, "ServiceMonitor": 1, "NetworkPolicy": 1, "PodDisruptionBudget": 1},
                       PROD_ARGS[:-len(PROD_SMTP_ARGS)], 2),
}

# Values the chart must refuse, and a part of the reason Helm must give.
REFUSED = {
    "two replicas without leader election": (["replicas=2"], "leaderElection.enabled"),
    "a renewal not before expiry": (["leaderElection.enabled=true", "leaderElection.leaseDurationSeconds=5",
                                     "leaderElection.renewBeforeSeconds=5"], "renewBeforeSeconds"),
    "unauthenticated REST API": (["api.auth=none"], "/api/auth"),
    "a misspelt value": (["replica=2"], "replica"),
    "a relay without a sender": (["alerts.smtp.server=smtp.example.internal:587"], "alerts.smtp.from"),
    "a relay login without a password Secret": (["alerts.smtp.server=smtp.example.internal:587",
                                                 "alerts.smtp.from=alerts@example.com",
                                                 "alerts.smtp.username=operator"], "alerts.smtp.passwordSecret"),
    "a password Secret without a login": (["alerts.smtp.server=smtp.example.internal:587",
                                           "alerts.smtp.from=alerts@example.com",
                                           "alerts.smtp.passwordSecret.name=relay-login"], "alerts.smtp.username"),
    "the relay password in clear": (["alerts.smtp.password=hunter2"], "password"),
    "an unknown STARTTLS mode": (["alerts.smtp.starttls=yes"], "starttls"),
    "an unknown HTTP version": (["kubeClient.http=h3"], "kubeClient/http"),
    "a URL for the relay": (["alerts.smtp.server=smtp://relay:25", "alerts.smtp.from=a@example.com"],
                            "alerts/smtp/server"),
}

# Exactly what the operator calls on its Lease (see the chart's rbac.yaml).
LEASE_VERBS = {"get", "list", "watch", "create", "patch"}

BASE_ARGS = ["run", "--log-format", "LOG_FORMAT", "--probe-addr", "0.0.0.0:8081",
             "--api-addr", "0.0.0.0:8080", "--api-auth", "kubernetes"]


def helm(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True)


def value_flags(files, sets):
    flags = []
    for file in files:
        flags += ["-f", str(CHART / file)]
    for assignment in sets:
        flag, assignment = assignment if isinstance(assignment, tuple) else ("--set", assignment)
        flags += [flag, assignment]
    return flags


class Checker:
    def __init__(self):
        self.failures = []

    def expect(self, condition, message):
        if not condition:
            self.failures.append(message)
        return condition


def check_deployment(check, case, deployment, extra_args, log_format, replicas, password_secret):
    check.expect(deployment["spec"]["replicas"] == replicas,
                 f"{case}: replicas {deployment['spec']['replicas']}, want {replicas}")
    # Without election a rollout must never run two; with it the new pod waits as a standby.
    electing = "--leader-elect" in extra_args
    strategy = deployment["spec"].get("strategy", {})
    want_strategy = ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
                     if electing else {"type": "Recreate"})
    check.expect(strategy == want_strategy, f"{case}: strategy {strategy}, want {want_strategy}")
    spec = deployment["spec"]["template"]["spec"]
    pod = spec.get("securityContext", {})
    check.expect(pod.get("runAsNonRoot") is True, f"{case}: pod runAsNonRoot")
    check.expect(pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{case}: seccomp RuntimeDefault")
    (container,) = spec["containers"]
    sc = container.get("securityContext", {})
    check.expect(sc.get("readOnlyRootFilesystem") is True, f"{case}: readOnlyRootFilesystem")
    check.expect(sc.get("allowPrivilegeEscalation") is False, f"{case}: allowPrivilegeEscalation false")
    check.expect(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{case}: capabilities drop ALL")
    resources = container.get("resources", {})
    check.expect(resources.get("requests") and resources.get("limits"), f"{case}: resource requests and limits")
    probes = {(p["httpGet"]["path"], p["httpGet"]["port"])
              for p in (container.get("livenessProbe"), container.get("readinessProbe")) if p}
    check.expect(probes == {("/healthz", "probes"), ("/readyz", "probes")}, f"{case}: probes {probes}")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check.expect(ports == {"http": 8080, "probes": 8081}, f"{case}: container ports {ports}")
    want = [a.replace("LOG_FORMAT", log_format) for a in BASE_ARGS] + extra_args
    check.expect(container["args"] == want, f"{case}: args {container['args']}, want {want}")
    env = {e["name"]: e for e in container.get("env", [])}
    check.expect(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
                 f"{case}: POD_NAME from the downward API")
    check.expect(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                 == "metadata.namespace", f"{case}: POD_NAMESPACE from the downward API")
    check.expect("RUST_LOG" in env, f"{case}: RUST_LOG set")
    # The relay password from the Secret named in the values, never as a literal value.
    password = env.get("ALERT_SMTP_PASSWORD")
    if password_secret is None:
        check.expect(password is None, f"{case}: ALERT_SMTP_PASSWORD set without a relay login: {password}")
    else:
        name, key = password_secret
        check.expect(password == {"name": "ALERT_SMTP_PASSWORD",
                                  "valueFrom": {"secretKeyRef": {"name": name, "key": key}}},
                     f"{case}: ALERT_SMTP_PASSWORD {password}, want secretKeyRef {name}/{key}")
    check.expect(not any("password" in str(a).lower() for a in container["args"]),
                 f"{case}: a password in the arguments: {container['args']}")
    labels = deployment["metadata"]["labels"]
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"):
        check.expect(key in labels, f"{case}: Deployment label {key}")


def check_rbac(check, case, documents, electing):
    lease_roles = []
    for doc in documents:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in doc["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                check.expect("*" not in rule.get(field, []), f"{case}: wildcard in {doc['kind']} {field}")
            check.expect("resourceNames" not in rule and "nonResourceURLs" not in rule,
                         f"{case}: {doc['kind']} rule with resourceNames or nonResourceURLs: {rule}")
            if "secrets" in rule["resources"]:
                # Alert channels' Secrets, read by name: never listed, watched or written.
                check.expect(rule["resources"] == ["secrets"] and rule["verbs"] == ["get"],
                             f"{case}: {doc['kind']} grants more than get on secrets: {rule}")
            if "leases" in rule["resources"]:
                lease_roles.append(doc)
                check.expect(doc["kind"] == "Role" and doc["metadata"].get("namespace") == NAMESPACE,
                             f"{case}: leases granted outside the release namespace by {doc['kind']} "
                             f"{doc['metadata']['name']}")
                check.expect(rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
                             and set(rule["verbs"]) == LEASE_VERBS and len(rule["verbs"]) == len(LEASE_VERBS),
                             f"{case}: lease rule {rule}, want exactly {sorted(LEASE_VERBS)}")
    check.expect(len(lease_roles) == (1 if electing else 0),
                 f"{case}: {len(lease_roles)} Role(s) on leases, want {1 if electing else 0}")
    for role in lease_roles:
        name = role["metadata"]["name"]
        bindings = [d for d in documents if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == name]
        check.expect(len(bindings) == 1 and bindings[0]["metadata"].get("namespace") == NAMESPACE
                     and bindings[0]["subjects"] == [{"kind": "ServiceAccount", "name": "platform-operator",
                                                      "namespace": NAMESPACE}],
                     f"{case}: the lease Role {name} is not bound to the operator's ServiceAccount alone")


def check_stack(check, documents):
    """The stack rendered from examples/values-trading-stack.yaml is deploy/examples/trading-stack.yaml."""
    example = [d for d in yaml.safe_load_all((ROOT / "deploy" / "examples" / "trading-stack.yaml").read_text()) if d]

    def key(doc):
        meta = doc["metadata"]
        labels = {k: v for k, v in (meta.get("labels") or {}).items()
                  if not k.startswith(("app.kubernetes.io/", "helm.sh/"))}
        return (doc["kind"], meta.get("namespace"), meta["name"],
                yaml.safe_dump(labels, sort_keys=True), yaml.safe_dump(doc.get("spec"), sort_keys=True))

    stack_kinds = ("Namespace", "Platform", "PlatformGroup")
    rendered = sorted(key(d) for d in documents if d["kind"] in stack_kinds)
    wanted = sorted(key(d) for d in example if d["kind"] in stack_kinds)
    check.expect(rendered == wanted,
                 "trading-stack: rendered stack differs from deploy/examples/trading-stack.yaml: "
                 + ", ".join(f"{k[0]} {k[2]}" for k in set(rendered) ^ set(wanted)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", required=True)
    args = parser.parse_args()
    check = Checker()

    for case, (files, sets, kinds, extra_args, replicas) in CASES.items():
        flags = value_flags(files, sets)
        for kube in KUBE_VERSIONS:
            lint = helm(args.helm, "lint", "--strict", "--kube-version", kube, str(CHART), *flags)
            check.expect(lint.returncode == 0, f"{case}: helm lint --strict (Kubernetes {kube}):\n{lint.stdout}{lint.stderr}")
        out = helm(args.helm, "template", "platform-operator", str(CHART), "--namespace", NAMESPACE, *flags)
        if not check.expect(out.returncode == 0, f"{case}: helm template: {out.stderr}"):
            continue
        try:
            documents = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
        except yaml.YAMLError as error:
            check.expect(False, f"{case}: rendered YAML does not parse: {error}")
            continue
        for doc in documents:
            check.expect(isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind")
                         and doc.get("metadata", {}).get("name"),
                         f"{case}: a document without apiVersion, kind or name: {str(doc)[:120]}")
        found = Counter(d["kind"] for d in documents)
        check.expect(found == Counter(kinds), f"{case}: kinds {dict(found)}, want {kinds}")
        values = {}
        for file in files:
            values.update(yaml.safe_load((CHART / file).read_text()) or {})
        log_format = values.get("logFormat", "json")
        for deployment in (d for d in documents if d["kind"] == "Deployment"):
            check_deployment(check, case, deployment, extra_args, log_format, replicas,
                             PASSWORD_SECRETS.get(case))
        check_rbac(check, case, documents, "--leader-elect" in extra_args)
        if case == "trading-stack":
            check_stack(check, documents)
        print(f"chart-check: {case}: {len(documents)} documents: "
              + ", ".join(f"{n} {k}" for k, n in sorted(found.items())))

    crds = helm(args.helm, "template", "platform-operator", str(CHART), "--include-crds")
    crd_names = sorted(d["metadata"]["name"] for d in yaml.safe_load_all(crds.stdout)
                       if d and d["kind"] == "CustomResourceDefinition")
    check.expect(crd_names == ["platformgroups.pmp.dev", "platforms.pmp.dev"], f"CRDs shipped: {crd_names}")

    for what, (sets, reason) in REFUSED.items():
        out = helm(args.helm, "template", "platform-operator", str(CHART), *value_flags([], sets))
        check.expect(out.returncode != 0 and reason in out.stderr,
                     f"refused: {what} ({' '.join(sets)}) was not refused naming {reason}: {out.stderr.strip()[:300]}")
        if out.returncode != 0:
            print(f"chart-check: refused {what}")

    for failure in check.failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    sys.exit(1 if check.failures else 0)


if __name__ == "__main__":
    main()
