"""How the payloads here were recorded: a real Alertmanager (Debian prometheus-alertmanager 0.25)
on 127.0.0.1, a webhook receiver that writes each POST to a file, and alerts posted to its API.

    python tests/data/alertmanager/capture.py OUT_DIR

Scenario: a two-alert group fires, is repeated twice, a third alert joins the group, then all
three resolve (send_resolved). Not part of the test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

AM_PORT, HOOK_PORT = 19093, 19094
CONFIG = f"""
route:
  receiver: monoduty
  group_by: [alertname, cluster]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 3s
receivers:
  - name: monoduty
    webhook_configs:
      - url: http://127.0.0.1:{HOOK_PORT}/hook
        send_resolved: true
"""
received: list[bytes] = []


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def alert(instance: str, *, ends: datetime | None = None) -> dict:
    body = {
        "labels": {
            "alertname": "HighErrorRate",
            "cluster": "prod",
            "severity": "critical",
            "job": "api",
            "instance": instance,
        },
        "annotations": {
            "summary": f"5xx rate above 5% on {instance}",
            "description": "error ratio 0.12 over the last 5 minutes",
        },
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=job%3Aerrors%3Aratio",
    }
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    return body


def post(alerts: list[dict]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{AM_PORT}/api/v2/alerts",
        json.dumps(alerts).encode(),
        {"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).read()


def wait_for(count: int, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while len(received) < count:
        if time.monotonic() > end:
            raise SystemExit(f"only {len(received)} notifications")
        time.sleep(0.1)


def main(out: Path) -> None:
    server = HTTPServer(("127.0.0.1", HOOK_PORT), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "am.yml").write_text(CONFIG)
        am = subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={tmp}/am.yml",
                f"--storage.path={tmp}",
                f"--web.listen-address=127.0.0.1:{AM_PORT}",
                "--cluster.listen-address=",
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{AM_PORT}/-/ready", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            hosts = ["api-1:9100", "api-2:9100"]
            post([alert(h) for h in hosts])
            wait_for(1)  # firing
            wait_for(3)  # two repeats (re-posting keeps the alerts active)
            post([alert(h) for h in [*hosts, "api-3:9100"]])
            wait_for(4)  # the group changed: a third alert joined
            ended = datetime.now(UTC) - timedelta(seconds=1)
            post([alert(h, ends=ended) for h in [*hosts, "api-3:9100"]])
            end = time.monotonic() + 30
            while not any(json.loads(b)["status"] == "resolved" for b in received):
                if time.monotonic() > end:
                    raise SystemExit("no resolved notification")
                time.sleep(0.1)
        finally:
            am.terminate()
            am.wait(10)
    out.mkdir(parents=True, exist_ok=True)
    for i, body in enumerate(received, 1):
        data = json.loads(body)
        (out / f"{i:02d}-{data['status']}.json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
