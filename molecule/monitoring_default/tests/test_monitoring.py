"""Monitoring seen from the monitoring host, as an operator would use it.

mon-h100 is a model host on the h100x8 profile; mon-server runs Prometheus and Alertmanager.
Prometheus' and Alertmanager's APIs are asked from mon-server itself (they listen on loopback);
faults are injected on mon-h100 with the lab's stand-ins (`lab-hw fault ...`) and with
systemctl, and must fire their alerts in Alertmanager within the rule's `for:` plus two scrape
intervals (plus one collector run and one rule evaluation), then clear after recovery.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest
import testinfra
from lab_checks import project_dir, run_playbook

H100, MON = "10.89.42.210", "10.89.42.211"
# molecule.yml: the collector's, the scrape and the evaluation interval, and the faults' `for:`.
COLLECT, SCRAPE, EVALUATE, FOR = 2, 2, 2, 4
# Firing: the rule's `for:` + 2 scrape intervals, plus one collector run and one evaluation
# (the fault must first reach the textfile, then a rule evaluation must see it), plus the
# time one poll takes through `podman exec`.
FIRE_BUDGET = FOR + 2 * SCRAPE + COLLECT + EVALUATE + 3
CLEAR_BUDGET = 2 * SCRAPE + COLLECT + EVALUATE + 8
MODEL = "fleet/deepseek-r1:671b"
MIB = 1 << 20


def connect(name: str):
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def hosts():
    return {name: connect(name) for name in ("mon-h100", "mon-server")}


def curl_json(host, url: str, *params: str) -> dict:
    args = " ".join(f"--data-urlencode {shlex.quote(p)}" for p in params)
    command = f"curl -sS -m 10 -G {args} {shlex.quote(url)}" if params else f"curl -sS -m 10 {url}"
    return json.loads(host.check_output(command))


def query(mon, expr: str) -> list[dict]:
    answer = curl_json(mon, "http://127.0.0.1:9090/api/v1/query", f"query={expr}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def values(mon, expr: str) -> dict[tuple, float]:
    """{label values in sorted label order (without __name__): value} of an instant query."""
    result = {}
    for series in query(mon, expr):
        labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
        result[tuple(sorted(labels.items()))] = float(series["value"][1])
    return result


def active_alerts(mon) -> dict[str, list[dict]]:
    """Alerts Alertmanager holds as active (not resolved, silenced or inhibited), by name."""
    alerts = curl_json(
        mon, "http://127.0.0.1:9093/api/v2/alerts", "active=true", "silenced=false",
        "inhibited=false",
    )  # fmt: skip
    found: dict[str, list[dict]] = {}
    for alert in alerts:
        if alert["status"]["state"] == "active":
            found.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
    return found


def wait_until(check, timeout: float, step: float = 0.5):
    """(result, seconds) once check() returns something truthy; AssertionError at the timeout."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < timeout:
        last = check()
        if last:
            return last, time.monotonic() - started
        time.sleep(step)
    raise AssertionError(f"not within {timeout:.0f} s; last: {last!r}")


def load_model(h100) -> None:
    """Load the tier's model again (after an Ollama restart), keeping it loaded."""
    wait_until(lambda: h100.run("curl -sf -m 2 http://127.0.0.1:11434/api/version").rc == 0, 30)
    body = json.dumps({"model": MODEL, "keep_alive": -1})
    h100.check_output(f"curl -sf -m 60 http://127.0.0.1:11434/api/generate -d {shlex.quote(body)}")


# ------------------------------------------------------------------ the services


def test_the_monitoring_services_run_and_listen_on_loopback(hosts):
    mon = hosts["mon-server"]
    for unit in ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter"):
        service = mon.service(unit)
        assert service.is_running and service.is_enabled, unit
    listening = mon.check_output("ss -Htln | awk '{print $4}'").split()
    assert "127.0.0.1:9090" in listening and "127.0.0.1:9093" in listening, listening
    assert not any(a.endswith(":9094") for a in listening), "Alertmanager's cluster port is open"
    for name in ("mon-h100", "mon-server"):
        host = hosts[name]
        assert host.service("localllm-fleet-metrics.timer").is_running, name
        assert "*:9100" in host.check_output("ss -Htln | awk '{print $4}'").split(), name


def test_every_target_is_scraped(hosts):
    mon = hosts["mon-server"]
    expected = {
        ("node", "mon-h100"),
        ("node", "mon-server"),
        ("haproxy", "mon-h100"),
        ("prometheus", "mon-server"),
        ("alertmanager", "mon-server"),
    }

    def all_up():
        targets = curl_json(mon, "http://127.0.0.1:9090/api/v1/targets", "state=active")
        seen = {
            (t["labels"]["job"], t["labels"]["instance"]): t["health"]
            for t in targets["data"]["activeTargets"]
        }
        return seen if set(seen) == expected and set(seen.values()) == {"up"} else None

    wait_until(all_up, 30)
    # The query operators use says the same.
    ups = values(mon, "up == 1")
    assert {(dict(k)["job"], dict(k)["instance"]) for k in ups} >= expected


# ------------------------------------------------------------------ what the metrics say


def test_gpu_metrics_match_the_h100x8_profile(hosts):
    mon = hosts["mon-server"]
    total = values(mon, 'localllm_gpu_memory_total_bytes{instance="mon-h100"}')
    assert len(total) == 8
    gpus = sorted(dict(k)["gpu"] for k in total)
    assert gpus == [str(i) for i in range(8)]
    for key, value in total.items():
        labels = dict(key)
        assert value == 81559 * MIB, labels
        assert labels["name"] == "NVIDIA H100 80GB HBM3"
        assert labels["uuid"].startswith("GPU-")
    assert set(values(mon, 'localllm_gpu_temperature_celsius{instance="mon-h100"}').values()) == {
        33
    }
    assert set(values(mon, 'localllm_gpu_power_limit_watts{instance="mon-h100"}').values()) == {700}
    assert set(values(mon, 'localllm_gpu_power_draw_watts{instance="mon-h100"}').values()) == {70}
    assert set(values(mon, 'localllm_gpu_utilization_ratio{instance="mon-h100"}').values()) == {0}
    assert set(values(mon, 'localllm_gpu_ecc_mode_enabled{instance="mon-h100"}').values()) == {1}
    errors = values(mon, 'localllm_gpu_ecc_errors_uncorrected_total{instance="mon-h100"}')
    assert len(errors) == 8 and set(errors.values()) == {0}
    assert len(values(mon, 'localllm_gpu_persistence_mode_enabled{instance="mon-h100"}')) == 8
    assert list(values(mon, 'localllm_gpu_smi_up{instance="mon-h100"}').values()) == [1]
    assert list(values(mon, 'localllm_gpu_count{instance="mon-h100"}').values()) == [8]
    assert list(values(mon, 'localllm_gpu_expected_count{instance="mon-h100"}').values()) == [8]
    driver = values(mon, 'localllm_nvidia_driver_info{instance="mon-h100"}')
    assert [dict(k)["version"] for k in driver] == ["550.54.15"]
    # The monitoring host has no GPU: no GPU collector, and nothing expected.
    assert values(mon, 'localllm_gpu_smi_up{instance="mon-server"}') == {}
    assert list(values(mon, 'localllm_gpu_expected_count{instance="mon-server"}').values()) == [0]


def test_the_tier_model_is_loaded_entirely_in_vram(hosts):
    mon = hosts["mon-server"]
    where = f'instance="mon-h100",model="{MODEL}"'
    assert list(values(mon, f"localllm_ollama_expected_model_loaded{{{where}}}").values()) == [1]
    assert list(values(mon, f"localllm_ollama_expected_model_present{{{where}}}").values()) == [1]
    size = values(mon, f"localllm_ollama_model_loaded_size_bytes{{{where}}}")
    vram = values(mon, f"localllm_ollama_model_loaded_vram_bytes{{{where}}}")
    assert next(iter(size.values())) > 0
    assert list(size.values()) == list(vram.values())
    assert list(values(mon, f"localllm_ollama_model_gpu_ratio{{{where}}}").values()) == [1]
    info = values(mon, 'localllm_ollama_version_info{instance="mon-h100"}')
    assert [(dict(k)["version"], dict(k)["pinned_version"]) for k in info] == [
        ("0.32.15", "0.32.15")
    ]
    assert list(
        values(mon, 'localllm_ollama_version_matches_pin{instance="mon-h100"}').values()
    ) == [1]
    tier = values(mon, 'localllm_host_info{instance="mon-h100"}')
    assert [dict(k)["tier"] for k in tier] == ["frontier"]
    # The fleet certificates the collector watches expire well after the alert's 14 days.
    left = values(mon, "localllm_tls_certificate_expiry_timestamp_seconds - time()")
    assert len(left) == 4 and min(left.values()) > 14 * 86400, left
    assert values(mon, "localllm_ollama_up") == {
        (("instance", "mon-h100"), ("job", "node")): 1.0
    }, "Ollama metrics come from model hosts only"


def test_no_alert_is_pending_or_firing_at_rest(hosts):
    mon = hosts["mon-server"]
    alerts = curl_json(mon, "http://127.0.0.1:9090/api/v1/alerts")["data"]["alerts"]
    assert alerts == []
    assert active_alerts(mon) == {}


def test_exporters_answer_the_monitoring_host_alone(hosts):
    mon, h100 = hosts["mon-server"], hosts["mon-h100"]
    for url in (f"http://{H100}:9100/metrics", f"http://{H100}:8405/metrics"):
        assert mon.run(f"curl -sSf -m 5 -o /dev/null {url}").rc == 0, url
    # From a fleet host that is not a monitoring host: dropped, so curl times out (exit 28).
    urls = [
        f"http://{MON}:9100/metrics",
        f"http://{MON}:9090/-/ready",
        f"http://{MON}:9093/-/ready",
    ]
    script = " ".join(f"(curl -s -m 3 -o /dev/null {url}; echo {url} $?) &" for url in urls)
    answers = dict(line.split() for line in h100.check_output(f"{script} wait").splitlines())
    assert answers == dict.fromkeys(urls, "28"), answers


def test_an_older_release_s_copy_of_the_collector_code_is_removed(hosts):
    # prepare.yml left one on every host; the code now lives in one archive beside it.
    for name, host in hosts.items():
        assert not host.file("/usr/local/lib/localllm-fleet/metrics/python").exists, name
        assert host.file("/usr/local/lib/localllm-fleet/metrics").is_directory, name


def test_textfiles_are_replaced_whole_and_kept_fresh(hosts):
    h100 = hosts["mon-h100"]
    directory = "/var/lib/prometheus/node-exporter"
    listing = h100.check_output(f"ls -A {directory}").split()
    assert {"localllm_gpu.prom", "localllm_ollama.prom", "localllm_host.prom"} <= set(listing)
    assert not [n for n in listing if n.endswith(".prom") and not n.startswith("localllm_")]
    stamp = f"stat -c %Y {directory}/localllm_gpu.prom"
    before = float(h100.check_output(stamp))
    # Rewritten on every run of the timer (a run takes a few seconds on a loaded machine).
    wait_until(lambda: float(h100.check_output(stamp)) > before, 20)
    assert h100.file(f"{directory}/localllm_gpu.prom").mode == 0o644
    unit = h100.check_output(
        "systemctl show localllm-fleet-metrics.service -p NoNewPrivileges -p ProtectSystem "
        "-p CapabilityBoundingSet -p ProtectHome"
    )
    assert "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit, unit
    assert "CapabilityBoundingSet=\n" in unit + "\n", unit


# ------------------------------------------------------------------ faults fire and clear


def _fire(mon, wanted: set[str]) -> tuple[dict, float]:
    def fired():
        active = active_alerts(mon)
        return active if wanted <= set(active) else None

    return wait_until(fired, FIRE_BUDGET + 10)


def _clear(mon, gone: set[str]) -> float:
    _, seconds = wait_until(lambda: not gone & set(active_alerts(mon)), CLEAR_BUDGET + 20)
    return seconds


def test_a_lost_gpu_an_xid_memory_errors_and_a_stopped_ollama_fire_then_clear(hosts):
    mon, h100 = hosts["mon-server"], hosts["mon-h100"]
    wanted = {"GpuMissing", "GpuXidErrors", "GpuEccUncorrectable", "OllamaDown"}
    h100.check_output(
        "/opt/localllm-lab/bin/lab-hw fault gpu-missing 7 && "
        "/opt/localllm-lab/bin/lab-hw fault ecc 1 2 && "
        "/opt/localllm-lab/bin/lab-hw fault xid 79 3 && systemctl stop ollama"
    )
    active, seconds = _fire(mon, wanted)
    print(f"fired in {seconds:.1f} s (budget {FIRE_BUDGET} s): {sorted(active)}")
    assert seconds <= FIRE_BUDGET, (seconds, sorted(active))
    assert {a["instance"] for name in wanted for a in active[name]} == {"mon-h100"}
    assert [a["gpu"] for a in active["GpuEccUncorrectable"]] == ["1"]
    assert [(a["xid"], a["gpu"], a["pci_bus_id"]) for a in active["GpuXidErrors"]] == [
        ("79", "3", "0000:5d:00")
    ]
    assert list(values(mon, 'localllm_gpu_count{instance="mon-h100"}').values()) == [7]

    h100.check_output("/opt/localllm-lab/bin/lab-hw fault clear && systemctl start ollama")
    load_model(h100)
    seconds = _clear(mon, wanted)
    print(f"cleared in {seconds:.1f} s")


def test_a_driver_that_stops_answering_sends_the_model_to_the_cpu_and_both_alerts_fire(hosts):
    mon, h100 = hosts["mon-server"], hosts["mon-h100"]
    wanted = {"GpuDriverNotLoaded", "ModelNotFullyOnGpu"}
    # After a driver or kernel update gone wrong Ollama restarts, finds no GPU and loads the
    # model in system memory: everything still answers, many times slower.
    h100.check_output(
        "/opt/localllm-lab/bin/lab-hw fault driver no-communication && systemctl restart ollama"
    )
    load_model(h100)
    active, seconds = _fire(mon, wanted)
    print(f"fired in {seconds:.1f} s (budget {FIRE_BUDGET} s): {sorted(active)}")
    assert seconds <= FIRE_BUDGET, (seconds, sorted(active))
    assert [a["status"] for a in active["GpuDriverNotLoaded"]] == ["driver_not_loaded"]
    assert [a["model"] for a in active["ModelNotFullyOnGpu"]] == [MODEL]
    # No stale GPU values while nvidia-smi fails: its state, and no per-GPU series at all.
    text = h100.check_output("cat /var/lib/prometheus/node-exporter/localllm_gpu.prom")
    assert "localllm_gpu_smi_up 0" in text
    assert "localllm_gpu_temperature_celsius" not in text
    assert "localllm_gpu_memory_total_bytes" not in text
    assert values(mon, 'localllm_gpu_temperature_celsius{instance="mon-h100"}') == {}

    h100.check_output("/opt/localllm-lab/bin/lab-hw fault clear && systemctl restart ollama")
    load_model(h100)
    seconds = _clear(mon, wanted)
    print(f"cleared in {seconds:.1f} s")
    # Back on the GPU once the driver answers and Ollama reloaded the model.
    ratio = f'localllm_ollama_model_gpu_ratio{{model="{MODEL}"}} == 1'
    wait_until(lambda: values(mon, ratio), CLEAR_BUDGET)


# ------------------------------------------------------------------ smoke, secrets, dashboard


def test_the_last_smoke_test_becomes_a_metric_without_its_text(hosts):
    mon, h100 = hosts["mon-server"], hosts["mon-h100"]
    started = time.time()
    run = run_playbook("smoke.yml", "--tags", "ollama_models_smoke,fleet_exporters_smoke")
    assert run.rc == 0, run.output[-3000:]
    where = f'instance="mon-h100",model="{MODEL}"'

    def recorded():
        stamp = values(mon, f"localllm_ollama_smoke_timestamp_seconds{{{where}}}")
        return stamp if stamp and next(iter(stamp.values())) >= int(started) else None

    wait_until(recorded, 20)
    assert list(values(mon, f"localllm_ollama_smoke_success{{{where}}}").values()) == [1]
    rate = values(mon, f"localllm_ollama_smoke_tokens_per_second{{{where}}}")
    assert next(iter(rate.values())) > 0
    record = json.loads(h100.check_output("cat /var/lib/localllm-fleet/metrics/smoke.json"))
    assert set(record["results"][0]) == {"model", "ok", "tokens_per_second", "eval_count"}


def test_no_metric_carries_prompt_text_or_key_material(hosts):
    mon = hosts["mon-server"]
    urls = [
        f"http://{H100}:9100/metrics",
        f"http://{H100}:8405/metrics",
        f"http://{MON}:9100/metrics",
        "http://127.0.0.1:9090/metrics",
        "http://127.0.0.1:9093/metrics",
    ]
    text = "".join(mon.check_output(f"curl -sSf -m 10 {url}") for url in urls)
    assert "localllm_gpu_smi_up" in text and "haproxy_frontend_http_requests_total" in text
    for secret in ("Reply with the single word", "PRIVATE KEY", "lab-only-passphrase", "BEGIN "):
        assert secret not in text, secret


def test_every_dashboard_query_runs_on_this_prometheus(hosts):
    mon = hosts["mon-server"]
    dashboard_file = "roles/fleet_monitoring/files/grafana/localllm-fleet-overview.json"
    dashboard = json.loads((project_dir() / dashboard_file).read_text())
    substitutions = {"$__rate_interval": "1m", "$__interval": "30s", "$instance": ".*"}
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in substitutions.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
    assert exprs
    # One `podman exec` for all of them: a JSON answer per line.
    script = "; ".join(
        "curl -sS -m 10 -G --data-urlencode "
        f"{shlex.quote('query=' + expr)} http://127.0.0.1:9090/api/v1/query; echo"
        for expr in exprs
    )
    answers = [json.loads(line) for line in mon.check_output(script).splitlines() if line]
    assert len(answers) == len(exprs)
    empty = []
    for expr, answer in zip(exprs, answers, strict=True):
        assert answer["status"] == "success", (expr, answer)
        may_be_empty = any(word in expr for word in ("litellm", "fleet_api", "ALERTS"))
        if not answer["data"]["result"] and not may_be_empty:
            empty.append(expr)
    # Host, GPU and edge panels all have data here; gateway panels (there is no gateway) and
    # the firing alerts (none) may be empty.
    assert empty == [], empty


# ------------------------------------------------------------------ a monitoring host gone


def test_a_monitoring_host_that_is_gone_leaves_the_fleet_alone(hosts):
    h100 = hosts["mon-h100"]
    # Gone without warning, as a crashed host would be.
    subprocess.run(["podman", "kill", "mon-server"], check=True, capture_output=True)
    try:
        # In check mode (--diff), which on the converged fleet host must predict no change:
        # its play runs to the end whatever became of the monitoring host.
        run = run_playbook("converge.yml", check=True, diff=True)
        assert run.recap["mon-h100"]["failed"] == 0 and run.recap["mon-h100"]["unreachable"] == 0
        assert run.changed("mon-h100") == 0, run.output[-3000:]
        assert run.recap["mon-server"]["unreachable"] == 1, run.recap
        assert h100.run("curl -sf -m 5 http://127.0.0.1:11434/api/version").rc == 0
        assert h100.service("prometheus-node-exporter").is_running
    finally:
        subprocess.run(["podman", "start", "mon-server"], check=True, capture_output=True)
    mon = connect("mon-server")
    # Back after a reboot: enabled at boot, scraping again with the data it had.
    wait_until(lambda: mon.run("curl -sf -m 2 http://127.0.0.1:9090/-/ready").rc == 0, 60)
    wait_until(lambda: values(mon, 'up{instance="mon-h100",job="node"} == 1'), 30)
