"""scripts/fleet-alerts: the alerts of the moment, as `make demo` prints them."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from json_http import serve_json

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fleet-alerts"


def load_script():
    loader = importlib.machinery.SourceFileLoader("fleet_alerts", str(SCRIPT))
    spec = importlib.util.spec_from_loader("fleet_alerts", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


fa = load_script()

PROMETHEUS_ALERTS = {
    "status": "success",
    "data": {
        "alerts": [
            {"labels": {"alertname": "TierModelNotLoaded", "instance": "t4"}, "state": "pending",
             "annotations": {"summary": "fleet/deepseek-r1:8b is not loaded on t4"}},
            {"labels": {"alertname": "GpuDriverNotLoaded", "instance": "broken"}, "state": "firing",
             "annotations": {"summary": "nvidia-smi fails on broken (driver_not_loaded)"}},
        ]
    },
}  # fmt: skip
ALERTMANAGER_ALERTS = [
    {"status": {"state": "active"}},
    {"status": {"state": "suppressed"}},
    {"status": {"state": "active"}},
]


@pytest.fixture
def fake_prometheus():
    with serve_json(
        {"/api/v1/alerts": PROMETHEUS_ALERTS, "/api/v2/alerts": ALERTMANAGER_ALERTS}
    ) as url:
        yield url


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_lab_urls_come_from_the_monitoring_hosts_port_forwards():
    assert fa.lab_urls() == {
        "prometheus": "http://127.0.0.1:42490",
        "alertmanager": "http://127.0.0.1:42493",
    }


def test_firing_alerts_come_first_with_host_and_summary(fake_prometheus):
    result = run("--prometheus", fake_prometheus, "--alertmanager", fake_prometheus)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Alerts now: 1 firing, 1 pending" in lines
    table = lines[lines.index("Alerts now: 1 firing, 1 pending") + 1 :]
    assert table[0].split() == ["STATE", "ALERT", "HOST", "SUMMARY"]
    assert table[1].split()[:3] == ["firing", "GpuDriverNotLoaded", "broken"]
    assert table[1].endswith("nvidia-smi fails on broken (driver_not_loaded)")
    assert table[2].split()[:3] == ["pending", "TierModelNotLoaded", "t4"]
    assert "Alertmanager holds: 2 active, 1 suppressed" in lines


def test_no_alert_is_said_plainly():
    assert fa.table(fa.rows([])) == "  (no alert is firing or pending)"


def test_prometheus_not_answering_is_an_error_naming_it():
    result = run("--prometheus", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "Prometheus at http://127.0.0.1:9 did not answer" in result.stderr


def test_a_url_is_required():
    result = run()
    assert result.returncode == 2
    assert "give --prometheus URL (or --lab)" in result.stderr
