"""What the monitoring roles derive from the inventory (module_utils/fleet_monitoring.py and
its filters): which hosts are monitored, Prometheus' scrape jobs, the models a tier expects,
and what of a smoke test reaches a metric."""

from __future__ import annotations

import json

import pytest

from ansible_collections.localllm.fleet.plugins.filter import fleet_monitoring as filters
from ansible_collections.localllm.fleet.plugins.module_utils import fleet_monitoring as fmon
from ansible_collections.localllm.fleet.plugins.module_utils import models_plan

GROUPS = {
    "all": ["h100", "rtx", "broken", "gw1", "mon1"],
    "tier_frontier": ["h100"],
    "tier_workstation": ["rtx"],
    "gpu_unreachable": ["broken"],
    "gateway": ["gw1"],
    "monitoring": ["mon1"],
    "ungrouped": [],
}
SETTINGS = {
    "node_port": 9100,
    "haproxy_port": 8405,
    "litellm_port": 8405,
    "litellm_path": "/litellm/metrics",
    "litellm_drop_labels": ["hashed_api_key", "client_ip"],
    "prometheus_port": 9090,
    "alertmanager_port": 9093,
    "self_name": "mon1",
}


def test_the_monitored_hosts_are_those_the_serving_layer_covers():
    assert fmon.monitored_hosts(GROUPS) == ["h100", "rtx", "gw1", "mon1"]
    assert fmon.model_hosts(GROUPS) == ["h100", "rtx"]


def test_without_tiers_every_host_is_monitored_and_serves_models_unless_special():
    groups = {"all": ["a", "b", "gw", "mon"], "gateway": ["gw"], "monitoring": ["mon"]}
    assert fmon.monitored_hosts(groups) == ["a", "b", "gw", "mon"]
    assert fmon.model_hosts(groups) == ["a", "b"]


def test_each_host_gets_the_jobs_of_what_runs_there():
    targets = fmon.scrape_targets(GROUPS, {"h100": "10.0.0.1", "rtx": "10.0.0.2"})
    assert [(t["name"], t["address"], t["jobs"]) for t in targets] == [
        ("h100", "10.0.0.1", ["node", "haproxy"]),
        ("rtx", "10.0.0.2", ["node", "haproxy"]),
        ("gw1", "gw1", ["node", "haproxy", "litellm"]),
        ("mon1", "mon1", ["node"]),
    ]


def test_scrape_jobs_label_every_target_with_its_inventory_name():
    targets = fmon.scrape_targets(GROUPS, {"h100": "10.0.0.1", "rtx": "fd00::2", "gw1": "10.0.0.3"})
    jobs = {job["job_name"]: job for job in fmon.scrape_configs(targets, SETTINGS)}
    assert list(jobs) == ["node", "haproxy", "litellm", "prometheus", "alertmanager"]
    node = {s["labels"]["instance"]: s["targets"] for s in jobs["node"]["static_configs"]}
    assert node == {
        "h100": ["10.0.0.1:9100"],
        "rtx": ["[fd00::2]:9100"],
        "gw1": ["10.0.0.3:9100"],
        "mon1": ["mon1:9100"],
    }
    assert jobs["litellm"]["metrics_path"] == "/litellm/metrics"
    assert jobs["litellm"]["metric_relabel_configs"] == [
        {"action": "labeldrop", "regex": "client_ip|hashed_api_key"}
    ]
    assert "metric_relabel_configs" not in jobs["node"]
    assert jobs["prometheus"]["static_configs"] == [
        {"targets": ["127.0.0.1:9090"], "labels": {"instance": "mon1"}}
    ]


def test_a_fleet_without_gateways_has_no_litellm_job():
    groups = {"all": ["a", "mon"], "tier_x": ["a"], "monitoring": ["mon"]}
    jobs = [
        job["job_name"] for job in fmon.scrape_configs(fmon.scrape_targets(groups, {}), SETTINGS)
    ]
    assert jobs == ["node", "haproxy", "prometheus", "alertmanager"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"node_port": 0}, "node target h100: port must be a number 1-65535, got 0"),
        ({"haproxy_port": "8405"}, "port must be a number"),
        ({"litellm_path": "metrics"}, "litellm_path must start with '/'"),
    ],
)
def test_bad_scrape_settings_are_refused_naming_them(changes, message):
    targets = fmon.scrape_targets(GROUPS, {})
    with pytest.raises(fmon.MonitoringError, match=message):
        fmon.scrape_configs(targets, {**SETTINGS, **changes})


def test_the_filter_reaches_hosts_at_their_fleet_address():
    hostvars = {
        "h100": {"fleet_host_address": "10.0.0.1", "ansible_host": "127.0.0.1"},
        "rtx": {"ansible_host": "rtx.example"},
        "gw1": {},
        "mon1": {"fleet_host_address": "10.0.0.9"},
    }
    jobs = filters.fleet_scrape_configs(GROUPS, hostvars, SETTINGS)
    node = [s["targets"][0] for s in jobs[0]["static_configs"]]
    assert node == ["10.0.0.1:9100", "rtx.example:9100", "gw1:9100", "10.0.0.9:9100"]


@pytest.mark.parametrize(
    ("declared", "namespace", "expected"),
    [
        (["deepseek-r1:32b", "qwq:32b"], "fleet", ["fleet/deepseek-r1:32b"]),
        ([{"name": "deepseek-r1:671b", "num_ctx": 32768}], "fleet", ["fleet/deepseek-r1:671b"]),
        (["gemma3"], "fleet", ["fleet/gemma3:latest"]),
        ([{"name": "qwq:32b", "target": "team/qwq:prod"}], "fleet", ["team/qwq:prod"]),
        (["deepseek-r1:1.5b"], "", ["deepseek-r1:1.5b"]),
        ([], "fleet", []),
        (None, "fleet", []),
    ],
)
def test_the_tier_expects_its_primary_model_as_registered(declared, namespace, expected):
    assert fmon.expected_models(declared, namespace) == expected


def test_expected_names_are_the_names_the_models_role_registers():
    declared = ["deepseek-r1:32b", {"name": "qwq:32b", "target": "team/qwq:prod"}, "gemma3"]
    plan = models_plan.plan_models(declared, defaults={"namespace": "fleet"})
    assert fmon.expected_models(declared, "fleet", count=3) == [item["target"] for item in plan]


def test_a_bad_model_list_is_refused_with_the_models_roles_words():
    with pytest.raises(fmon.MonitoringError, match=r"ollama_models: .*not of the form MODEL"):
        fmon.expected_models(["bad name!"], "fleet")


def test_a_smoke_record_keeps_numbers_and_never_text():
    results = [
        {"model": "fleet/deepseek-r1:671b", "ok": True, "error": None, "content": "ready",
         "thinking": "The user wants one word", "eval_count": 12, "tokens_per_second": 41.2},
        {"model": "fleet/qwq:32b", "ok": False, "error": "model not found",
         "tokens_per_second": None},
    ]  # fmt: skip
    record = fmon.smoke_record(results, 1800000000.7)
    assert record == {
        "timestamp": 1800000000,
        "results": [
            {
                "model": "fleet/deepseek-r1:671b",
                "ok": True,
                "tokens_per_second": 41.2,
                "eval_count": 12,
            },
            {"model": "fleet/qwq:32b", "ok": False, "tokens_per_second": None, "eval_count": None},
        ],
    }
    assert "ready" not in repr(record) and "user" not in repr(record)


@pytest.mark.parametrize("results", ["not a list", [{"ok": True}], ["x"]])
def test_a_smoke_record_of_the_wrong_shape_is_refused(results):
    with pytest.raises(fmon.MonitoringError):
        fmon.smoke_record(results, 0)


# ------------------------------------------------------------------ the smoke stamp's figures

DIGEST = "a" * 64


def _stamp(record: object) -> bytes:
    return f"{DIGEST}\n{json.dumps(record)}\n".encode()


def test_a_stamp_gives_back_the_digest_and_the_figures_of_the_last_passing_test():
    results = [
        {
            "model": "fleet/qwq:32b",
            "ok": True,
            "tokens_per_second": 30.1,
            "eval_count": 9,
            "content": "an answer",
            "thinking": "a thought",
        }
    ]
    text = fmon.smoke_stamp(results, DIGEST, 1800000000.7)
    assert text.endswith("\n") and len(text.splitlines()) == 2
    assert "an answer" not in text and "a thought" not in text
    assert fmon.smoke_stamp_digest(text) == DIGEST
    assert fmon.smoke_stamp_record(text.encode()) == {
        "timestamp": 1800000000,
        "results": [
            {"model": "fleet/qwq:32b", "ok": True, "tokens_per_second": 30.1, "eval_count": 9}
        ],
    }


@pytest.mark.parametrize(
    ("text", "digest"),
    [("", ""), (f"{DIGEST}\n", DIGEST), (f" {DIGEST} \n{{}}\n", DIGEST), ("\n{}\n", "")],
    ids=["none", "older-release", "spaces", "empty-first-line"],
)
def test_the_digest_is_the_stamp_s_first_line(text, digest):
    assert fmon.smoke_stamp_digest(text) == digest


def test_a_stamp_without_figures_is_an_older_release_s_and_gives_none():
    assert fmon.smoke_stamp_record(f"{DIGEST}\n".encode()) is None
    assert fmon.smoke_stamp_record(DIGEST.encode()) is None
    assert fmon.smoke_stamp_record(b"") is None


def test_whatever_else_an_edited_stamp_holds_is_dropped():
    edited = {
        "timestamp": 1800000000,
        "results": [{"model": "m", "ok": True, "content": "secret", "tokens_per_second": "fast"}],
        "prompt": "secret",
    }
    record = fmon.smoke_stamp_record(_stamp(edited))
    assert record == {
        "timestamp": 1800000000,
        "results": [{"model": "m", "ok": True, "tokens_per_second": None, "eval_count": None}],
    }
    assert "secret" not in repr(record)


@pytest.mark.parametrize(
    ("stamp", "why"),
    [
        (f"{DIGEST}\n{{not json\n".encode(), "not JSON"),
        (f"{DIGEST}\n[1, 2]\n".encode(), "not an object"),
        (f"{DIGEST}\n".encode() + b"\xff\xfe\n", "not UTF-8"),
        (_stamp({"timestamp": "yesterday", "results": []}), "not a time"),
        (_stamp({"timestamp": True, "results": []}), "not a time"),
        (_stamp({"timestamp": -1, "results": []}), "not a time"),
        (_stamp({"timestamp": 1, "results": "all fine"}), "must be a list"),
        (_stamp({"timestamp": 1, "results": [{"ok": True}]}), "without a model"),
        (DIGEST.encode() + b"\n" + b"x" * fmon.SMOKE_STAMP_MAX_BYTES, "more than 65536 bytes"),
    ],
    ids=[
        "json",
        "array",
        "binary",
        "text-time",
        "bool-time",
        "negative-time",
        "results",
        "model",
        "big",
    ],
)
def test_a_stamp_that_is_not_one_is_refused_saying_why(stamp, why):
    with pytest.raises(fmon.MonitoringError, match=why):
        fmon.smoke_stamp_record(stamp)
