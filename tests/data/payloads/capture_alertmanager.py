"""Capture real Alertmanager webhook payloads into this folder (run by hand; not a test).

    apt-get install prometheus-alertmanager   # Debian bookworm: 0.25.0
    python tests/data/payloads/capture_alertmanager.py

Runs Alertmanager on 127.0.0.1 with a webhook receiver here, posts alerts to its API and keeps
what it sends: two KubePodCrashLooping groups that differ only by cluster, and one 1,000-alert
TargetDown group twice, once whole (gzipped: ~540 KB) and once through ``max_alerts: 50``.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

HERE = Path(__file__).parent
EXTERNAL_URL = "http://alertmanager.example.net:9093"
RUNBOOK = "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"
received: list[tuple[str, bytes]] = []


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(receiver_port: int) -> str:
    hook = f"http://127.0.0.1:{receiver_port}"
    return f"""
route:
  receiver: full
  group_by: [alertname, cluster]
  group_wait: 1s
  group_interval: 1h
  repeat_interval: 4h
  routes:
    - {{matchers: [alertname="TargetDown"], receiver: capped, continue: true}}
    - {{matchers: [alertname="TargetDown"], receiver: full}}
receivers:
  - {{name: full, webhook_configs: [{{url: "{hook}/full"}}]}}
  - {{name: capped, webhook_configs: [{{url: "{hook}/capped", max_alerts: 50}}]}}
"""


def alerts() -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    for cluster in ("prod-eu", "staging-eu"):
        for i in (1, 2):
            pod = f"checkout-7d9f-{i}"
            items.append(
                {
                    "labels": {
                        "alertname": "KubePodCrashLooping",
                        "cluster": cluster,
                        "namespace": "payments",
                        "job": "kube-state-metrics",
                        "pod": pod,
                        "container": "checkout",
                        "severity": "critical",
                        "prometheus": "monitoring/k8s",
                    },
                    "annotations": {
                        "summary": f"Pod payments/{pod} is crash looping",
                        "description": f"Pod payments/{pod} (checkout) is in waiting state "
                        f"(reason: CrashLoopBackOff) on {cluster}.",
                        "runbook_url": RUNBOOK,
                    },
                    "generatorURL": f"http://prometheus.{cluster}.example.net:9090/graph?g0.expr=kube_pod",
                }
            )
    for i in range(1000):
        instance = f"node-{i:04d}.prod-eu.example.net:9100"
        items.append(
            {
                "labels": {
                    "alertname": "TargetDown",
                    "cluster": "prod-eu",
                    "job": "node-exporter",
                    "instance": instance,
                    "severity": "warning",
                    "prometheus": "monitoring/k8s",
                },
                "annotations": {
                    "summary": "Target is down",
                    "description": f"{instance} of job node-exporter has been unreachable for 5 minutes.",
                },
                "generatorURL": "http://prometheus.prod-eu.example.net:9090/graph?g0.expr=up+%3D%3D+0",
            }
        )
    return items


def main() -> None:
    receiver_port, api_port = free_port(), free_port()
    server = HTTPServer(("127.0.0.1", receiver_port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "am.yml").write_text(config(receiver_port))
        proc = subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={tmp}/am.yml",
                f"--storage.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{api_port}",
                "--cluster.listen-address=",
                f"--web.external-url={EXTERNAL_URL}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            api = f"http://127.0.0.1:{api_port}"
            deadline = time.monotonic() + 10
            while True:
                try:
                    urllib.request.urlopen(f"{api}/-/ready")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            body = json.dumps(alerts()).encode()
            request = urllib.request.Request(
                f"{api}/api/v2/alerts", body, {"Content-Type": "application/json"}
            )
            urllib.request.urlopen(request)
            deadline = time.monotonic() + 30
            while len(received) < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait()
    for path, raw in received:
        group = json.loads(raw)
        labels = group["groupLabels"]
        if labels["alertname"] == "KubePodCrashLooping":
            (HERE / f"alertmanager_crashlooping_{labels['cluster']}.json").write_bytes(raw)
        elif path == "/capped":
            (HERE / "alertmanager_targetdown_capped.json").write_bytes(raw)
        else:
            (HERE / "alertmanager_targetdown_full.json.gz").write_bytes(gzip.compress(raw, 9, mtime=0))
        print(path, group["groupKey"], len(group["alerts"]), group.get("truncatedAlerts"), len(raw))


if __name__ == "__main__":
    main()
