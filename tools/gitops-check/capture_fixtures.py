#!/usr/bin/env python3
"""Records the GitOps health fixtures from the operator itself.

Runs fixtures-stack.yaml in the simulated cluster (platform-sandbox sandbox: the simulator and
the operator), watches every Platform and PlatformGroup with kubectl, drives the few changes
that produce the transient states (a spec change the operator has not observed yet, a platform
and a group being stopped), and writes, per fixture, the object exactly as the API server served
it, without the bookkeeping fields that change on every run (uid, resourceVersion,
managedFields, timestamps of creation).

    cargo build -p platform-sandbox
    tools/gitops-check/capture_fixtures.py [--sandbox target/debug/platform-sandbox] [--kubectl kubectl]

The fixtures go to deploy/argocd/testdata/; the Argo CD health tests and the kstatus check read
them from there. A fixture whose state did not occur is an error, not skipped.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "deploy" / "argocd" / "testdata"
# Simulated seconds per real second: the never-ready platform fails at the Deployment's
# progress deadline (600 simulated seconds), half a minute of real time.
SPEED = 20


def phase(obj):
    return (obj.get("status") or {}).get("phase")


def stale(obj):
    status = obj.get("status") or {}
    return "observedGeneration" in status and status["observedGeneration"] < obj["metadata"]["generation"]


# file name -> (kind, namespace, name, predicate, which matching version: first or last)
FIXTURES = {
    "platform-new.yaml": ("Platform", "gitops", "fresh", lambda o: "status" not in o, "first"),
    "platform-waiting.yaml": ("Platform", "gitops", "waiting", lambda o: phase(o) == "WaitingForDependencies", "last"),
    "platform-starting.yaml": ("Platform", "gitops", "never-ready", lambda o: phase(o) == "Starting", "last"),
    "platform-running.yaml": ("Platform", "gitops", "running", lambda o: phase(o) == "Running" and not stale(o), "first"),
    "platform-running-stale.yaml": ("Platform", "gitops", "running", lambda o: phase(o) == "Running" and stale(o), "first"),
    "platform-degraded.yaml": ("Platform", "gitops", "degraded", lambda o: phase(o) == "Degraded", "last"),
    "platform-failed.yaml": ("Platform", "gitops", "never-ready", lambda o: phase(o) == "Failed", "last"),
    "platform-stopping.yaml": ("Platform", "gitops", "stopping", lambda o: phase(o) == "Stopping", "last"),
    "platform-stopped.yaml": ("Platform", "gitops", "stopped", lambda o: phase(o) == "Stopped", "last"),
    "platform-blocked.yaml": ("Platform", "gitops", "blocked", lambda o: phase(o) == "Blocked", "last"),
    "platformgroup-running.yaml": ("PlatformGroup", "gitops-groups", "running", lambda o: phase(o) == "Running" and not stale(o), "first"),
    "platformgroup-starting.yaml": ("PlatformGroup", "gitops-groups", "starting", lambda o: phase(o) == "Starting", "last"),
    "platformgroup-degraded.yaml": ("PlatformGroup", "gitops-groups", "degraded", lambda o: phase(o) == "Degraded", "last"),
    "platformgroup-stopping.yaml": ("PlatformGroup", "gitops-groups", "running", lambda o: phase(o) == "Stopping" and not stale(o), "last"),
    "platformgroup-stopped.yaml": ("PlatformGroup", "gitops-groups", "stopped", lambda o: phase(o) == "Stopped", "last"),
    "platformgroup-blocked.yaml": ("PlatformGroup", "gitops-groups", "blocked", lambda o: phase(o) == "Blocked", "last"),
}

FRESH = """
apiVersion: pmp.dev/v1alpha1
kind: Platform
metadata:
  name: fresh
  namespace: gitops
spec:
  image: registry.example.com/fresh:1.0.0
"""

NOISE = ("uid", "resourceVersion", "managedFields", "creationTimestamp")


def clean(obj):
    for key in NOISE:
        obj["metadata"].pop(key, None)
    return obj


def read_stream(path):
    """The objects of a `kubectl get -w -o json` stream (concatenated JSON documents)."""
    text = path.read_text()
    decoder = json.JSONDecoder()
    objects, at = [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return objects
        obj, at = decoder.raw_decode(text, at)
        objects.append(obj)


class Cluster:
    def __init__(self, args, work):
        self.kubeconfig = work / "kubeconfig"
        self.kubectl = [args.kubectl, "--kubeconfig", str(self.kubeconfig)]

    def get(self, resource, namespace, name, path):
        out = subprocess.run(
            self.kubectl + ["get", resource, name, "-n", namespace, "-o", f"jsonpath={path}"],
            capture_output=True, text=True, check=False)
        return out.stdout.strip()

    def wait_phase(self, resource, namespace, name, want, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get(resource, namespace, name, "{.status.phase}") == want:
                return
            time.sleep(0.2)
        sys.exit(f"capture: {resource} {namespace}/{name} did not reach {want} in {timeout}s")

    def apply(self, manifest):
        # The simulator serves no OpenAPI document, so client-side validation is off.
        out = subprocess.run(self.kubectl + ["apply", "--server-side", "--validate=false", "-o", "json", "-f", "-"],
                             input=manifest, text=True, check=True, capture_output=True)
        return json.loads(out.stdout)

    def patch(self, resource, namespace, name, patch):
        subprocess.run(self.kubectl + ["patch", resource, name, "-n", namespace, "--type", "merge",
                                       "-p", json.dumps(patch)], check=True, stdout=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", default=str(ROOT / "target" / "debug" / "platform-sandbox"))
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--port", type=int, default=16600, help="simulated API server port (the operator's HTTP server gets +1)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gitops-fixtures-"))
    cluster = Cluster(args, work)
    log = open(work / "sandbox.log", "w")
    sandbox = subprocess.Popen(
        [args.sandbox, "sandbox", "-f", str(HERE / "fixtures-stack.yaml"),
         "--kube-addr", f"127.0.0.1:{args.port}", "--api-addr", f"127.0.0.1:{args.port + 1}",
         "--kubeconfig-out", str(cluster.kubeconfig), "--speed", str(SPEED)],
        stdout=log, stderr=subprocess.STDOUT)
    watches, created = [], None
    try:
        deadline = time.monotonic() + 30
        while not cluster.kubeconfig.exists():
            if time.monotonic() > deadline or sandbox.poll() is not None:
                sys.exit(f"capture: the sandbox did not start; see {work / 'sandbox.log'}")
            time.sleep(0.1)
        # Each watch starts with the current list; every later write arrives as a version of
        # its own, transient ones included.
        for resource in ("platforms.pmp.dev", "platformgroups.pmp.dev"):
            out = open(work / f"{resource}.watch", "w")
            watches.append(subprocess.Popen(cluster.kubectl + ["get", resource, "-A", "-w", "-o", "json"],
                                            stdout=out, stderr=subprocess.DEVNULL))

        # A platform created now: the API server's answer to the create is its first version,
        # before the operator wrote anything (watch streams may start later than that).
        created = cluster.apply(FRESH)
        cluster.wait_phase("plat", "gitops", "fresh", "Running")
        cluster.wait_phase("plat", "gitops", "stopping", "Running")
        cluster.patch("plat", "gitops", "stopping", {"spec": {"desiredState": "Stopped"}})
        cluster.wait_phase("plat", "gitops", "running", "Running")
        cluster.patch("plat", "gitops", "running", {"spec": {"podAnnotations": {"sim.pmp.dev/ready-after": "2s"}}})
        cluster.wait_phase("pgroup", "gitops-groups", "running", "Running")
        cluster.patch("pgroup", "gitops-groups", "running", {"spec": {"desiredState": "Stopped"}})
        cluster.wait_phase("plat", "gitops", "stopping", "Stopped")
        cluster.wait_phase("pgroup", "gitops-groups", "running", "Stopped")
        cluster.wait_phase("plat", "gitops", "never-ready", "Failed", timeout=120)
        time.sleep(1)
    finally:
        for watch in watches:
            watch.send_signal(signal.SIGTERM)
            watch.wait()
        sandbox.send_signal(signal.SIGTERM)
        sandbox.wait()

    versions = {("Platform", "gitops", "fresh"): [created]}
    for resource in ("platforms.pmp.dev", "platformgroups.pmp.dev"):
        for obj in read_stream(work / f"{resource}.watch"):
            key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
            versions.setdefault(key, []).append(obj)

    OUT.mkdir(parents=True, exist_ok=True)
    missing = []
    for file, (kind, namespace, name, predicate, which) in FIXTURES.items():
        matching = [o for o in versions.get((kind, namespace, name), []) if predicate(o)]
        if not matching:
            missing.append(f"{file} ({kind} {namespace}/{name})")
            continue
        obj = clean(matching[0] if which == "first" else matching[-1])
        header = (f"# {kind} {namespace}/{name} as the API server served it, recorded from the operator in\n"
                  f"# the simulated cluster by tools/gitops-check/capture_fixtures.py.\n")
        (OUT / file).write_text(header + yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=1000))
        print(f"capture: {file}: {kind} {namespace}/{name} phase={phase(obj)}")
    if missing:
        sys.exit("capture: states not seen: " + ", ".join(missing) + f" (logs in {work})")


if __name__ == "__main__":
    main()
