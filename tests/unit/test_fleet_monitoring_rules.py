"""The fleet's alert rules, Prometheus configuration and Grafana dashboard, checked by promtool.

The rules are rendered from roles/fleet_monitoring with its defaults (tests/monitoring/
render.yml through ansible-playbook, as the role renders them), checked with `promtool check
rules`, and every alert is run through tests/monitoring/alerts.test.yml with `promtool test
rules`: it fires when it should and stays quiet when it should not. promtool comes from the
distribution's prometheus package (scripts/promtool fetches it with apt when it is not
installed); a machine that cannot get it fails these tests, it does not skip them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests" / "monitoring"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
DASHBOARD = (
    ROOT / "roles" / "fleet_monitoring" / "files" / "grafana" / "localllm-fleet-overview.json"
)
RULES = "localllm-fleet.rules.yml"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "scripts" / "promtool"), *args],
        capture_output=True, text=True, cwd=cwd, check=False, timeout=300,
    )  # fmt: skip


def ansible_playbook(playbook: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    command = [str(ANSIBLE_PLAYBOOK), "-i", str(TESTS / "inventory.yml"), str(TESTS / playbook)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False,
        timeout=300,
    )  # fmt: skip


def render(out: Path, overrides: dict | None = None) -> Path:
    extra = {"out": str(out)}
    if overrides is not None:
        extra["fleet_monitoring_alerts_overrides"] = overrides
    run = ansible_playbook("render.yml", "-e", json.dumps(extra))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("rendered"))


def rules_of(path: Path) -> list[dict]:
    data = yaml.safe_load(path.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules(rendered):
    result = promtool("check", "rules", str(rendered / RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 16 rules found" in result.stdout


def test_every_alert_fires_when_it_should_and_stays_quiet_otherwise(rendered, tmp_path):
    # Each alert's summary stays (its values are checked); description and runbook text
    # would only be copied into the tests, so they are left out of the copy under test.
    data = yaml.safe_load((rendered / RULES).read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            rule["annotations"] = {"summary": rule["annotations"]["summary"]}
    (tmp_path / RULES).write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "alerts.test.yml").write_text((TESTS / "alerts.test.yml").read_text())
    result = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet(rendered):
    alerts = {rule["alert"] for rule in rules_of(rendered / RULES)}
    cases = [
        case
        for test in yaml.safe_load((TESTS / "alerts.test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alerts - fires == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"
    assert (fires | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_alert_says_what_to_do(rendered):
    for rule in rules_of(rendered / RULES):
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), rule["alert"]
        assert len(annotations["runbook"]) > 80, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]


def test_overrides_change_durations_and_thresholds(tmp_path):
    out = render(tmp_path, {"GpuTemperatureHigh": {"for": "1m", "celsius": 80}})
    rule = next(r for r in rules_of(out / RULES) if r["alert"] == "GpuTemperatureHigh")
    assert rule["for"] == "1m"
    assert rule["expr"] == "localllm_gpu_temperature_celsius > 80"
    other = next(r for r in rules_of(out / RULES) if r["alert"] == "GpuMissing")
    assert other["for"] == "2m"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"GpuTooHot": {"celsius": 80}}, "names alerts that do not exist: GpuTooHot"),
        (
            {"OllamaDown": {"for": "two minutes"}},
            "Alert OllamaDown: `for` must be a Prometheus duration",
        ),
        ({"OllamaDown": {"for": 5}}, "Alert OllamaDown: `for` must be a Prometheus duration"),
        # Every problem in one message.
        (
            {
                "GpuTooHot": {"celsius": 80},
                "OllamaDown": {"for": "2 min"},
                "GpuMissing": {"for": "x"},
            },
            "names alerts that do not exist: GpuTooHot",
        ),
        (
            {
                "GpuTooHot": {"celsius": 80},
                "OllamaDown": {"for": "2 min"},
                "GpuMissing": {"for": "x"},
            },
            "(got 2 min)",
        ),
        (
            {
                "GpuTooHot": {"celsius": 80},
                "OllamaDown": {"for": "2 min"},
                "GpuMissing": {"for": "x"},
            },
            "Alert GpuMissing: `for` must be a Prometheus duration",
        ),
    ],
)
def test_bad_alert_settings_are_refused_by_name(overrides, message):
    run = ansible_playbook(
        "preflight.yml", "--tags", "always", "-e",
        json.dumps({"fleet_monitoring_alerts_overrides": overrides}),
    )  # fmt: skip
    assert run.returncode != 0
    assert message in run.stdout, run.stdout[-3000:]


def test_the_prometheus_configuration_scrapes_the_fleet(rendered):
    result = promtool("check", "config", str(rendered / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((rendered / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"node", "haproxy", "litellm", "prometheus", "alertmanager"}

    def targets(job: str) -> dict[str, str]:
        return {s["labels"]["instance"]: s["targets"][0] for s in jobs[job]["static_configs"]}

    # Every host the serving layer covers; the host gpu_tier could not place is not one.
    assert targets("node") == {
        "gpu1": "10.0.0.11:9100",
        "gpu2": "[fd00::12]:9100",
        "gw1": "10.0.0.20:9100",
        "mon": "10.0.0.30:9100",
    }
    assert set(targets("haproxy")) == {"gpu1", "gpu2", "gw1"}
    assert targets("litellm") == {"gw1": "10.0.0.20:8405"}
    assert jobs["litellm"]["metrics_path"] == "/litellm/metrics"
    dropped = jobs["litellm"]["metric_relabel_configs"][0]
    assert dropped["action"] == "labeldrop"
    assert "hashed_api_key" in dropped["regex"].split("|")
    assert "api_key_alias" not in dropped["regex"].split("|")


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # Grafana's label_values(METRIC, LABEL) asks for the series of METRIC.
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert match, variable["definition"]
            exprs.append(f"group by ({match.group(2)}) ({match.group(1)})")
    return exprs


def test_every_dashboard_query_parses(tmp_path):
    # promtool parses the expressions of recording rules: one rule per query, with Grafana's
    # variables given values as Grafana would.
    substitutions = {"$__rate_interval": "1m", "$__interval": "30s", "$instance": ".*"}
    rules = []
    for number, query in enumerate(_dashboard_exprs()):
        expr = query
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_rules_and_dashboard_use_only_metrics_the_collector_writes(rendered):
    source = (ROOT / "plugins" / "module_utils" / "fleet_metrics.py").read_text()
    written = set(re.findall(r'"(localllm_[a-z_]+)"', source))
    used_text = (rendered / RULES).read_text() + "\n".join(_dashboard_exprs())
    used = set(re.findall(r"\b(localllm_[a-z_]+)", used_text)) - {"localllm_fleet"}
    assert used - written == set()


def test_the_default_alert_settings_and_good_overrides_pass():
    for overrides in ({}, {"OllamaDown": {"for": "90s"}, "GpuTemperatureHigh": {"celsius": 80}}):
        run = ansible_playbook(
            "preflight.yml", "--tags", "always", "-e",
            json.dumps({"fleet_monitoring_alerts_overrides": overrides}),
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:]
