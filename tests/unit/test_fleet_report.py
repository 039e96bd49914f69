"""The fleet report a person reads: rows, terminal table, Markdown, HTML."""

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_report as fr
from ansible_collections.localllm.fleet.plugins.module_utils import tier_policy as tp

H100 = {
    "host": "h100x8",
    "gpu_devices": [{"name": "NVIDIA H100 80GB HBM3"}] * 8,
    "tier": "frontier",
    "models": ["fleet/deepseek-r1:671b"],
    "ollama_version": "0.32.15",
    "smoke": [{"model": "fleet/deepseek-r1:671b", "ok": True, "tokens_per_second": 41.27}],
}


def test_a_healthy_gpu_host():
    row = fr.host_row(H100)
    assert row["gpus"] == "8 x NVIDIA H100 80GB HBM3"
    assert row["health"] == "ok"
    assert row["tokens_per_second"] == "41.3"


def test_mixed_cards_cpu_hosts_and_failures_are_visible():
    assert (
        fr.gpu_summary([{"name": "Tesla T4"}, {"name": "NVIDIA L4"}])
        == "1 x Tesla T4 + 1 x NVIDIA L4"
    )
    assert fr.host_row({"host": "cpu-only"})["gpus"] == "none"
    failed = fr.host_row({**H100, "smoke": [{"model": "m", "ok": False}]})
    assert failed["health"] == "FAILED: m"
    down = fr.host_row({"host": "x", "ollama_error": "connection refused"})
    assert down["health"] == "DOWN: connection refused" and down["models"] == "-"
    unplaced = {"host": "b", "status": "unreachable", "reason": "driver not loaded"}
    assert fr.host_row(unplaced)["health"] == "not served: could not be read (see below)"
    assert fr.unplaced([unplaced, {"host": "a", "tier": "tiny"}]) == ["b: driver not loaded"]


def test_renderings_carry_every_row_and_escape_what_they_must():
    rows = [fr.host_row(H100), fr.host_row({"host": "evil<script>|x"})]
    text = fr.text_table(rows, ["lab note"], ["b: driver not loaded"])
    assert text.splitlines()[2].startswith("Host") and "h100x8" in text
    assert text.splitlines()[-1] == "  b: driver not loaded"
    markdown = fr.markdown(rows, "Fleet", ["lab note"], ["b: a|b"])
    assert "> lab note" in markdown and "evil<script>\\|x" in markdown
    assert markdown.endswith("## Hosts without a tier\n\n- b: a\\|b\n")
    page = fr.html_document(rows, "Fleet", details=["b: <x>"])
    assert "<li>b: &lt;x&gt;</li>" in page
    assert "<script>" not in page and "evil&lt;script&gt;|x" in page
    assert page.count("<tr") == 3


@pytest.mark.parametrize(
    ("status", "health"),
    [
        (tp.STATUS_UNREACHABLE, "not served: could not be read (see below)"),
        (tp.STATUS_DRIVER_NEEDED, "not served: waits for a working driver (see below)"),
        (tp.STATUS_CPU, "n/a"),
    ],
)
def test_hosts_without_a_tier_are_told_apart_by_gpu_tier_status(status, health):
    facts = {"host": "h", "status": status, "reason": "why"}
    assert fr.host_row(facts)["health"] == health
    assert fr.unplaced([facts]) == (["h: why"] if health.startswith("not served") else [])


SERVING = {
    "endpoints": ["https://gw1.example:8443/v1"],
    "models": [
        {"name": "fleet/deepseek-r1:671b", "hosts": ["h100-1", "h100-2"]},
        {"name": "deepseek-r1", "alias_of": "fleet/deepseek-r1:671b"},
        {"name": "fleet/qwq:32b", "hosts": []},
    ],
    "excluded": ["broken: gpu_unreachable (driver cannot read its GPUs)"],
    "clients": ["support-bot", "<script>alert(1)</script>"],
}


def test_the_serving_section_names_endpoint_models_hosts_and_key_names():
    rows = [fr.host_row({"host": "h100-1", "tier": "frontier"})]
    text = fr.text_table(rows, serving=SERVING)
    assert "endpoint: https://gw1.example:8443/v1" in text
    assert "fleet/deepseek-r1:671b  h100-1, h100-2" in text
    assert "= fleet/deepseek-r1:671b" in text
    assert "none healthy" in text
    assert "broken: gpu_unreachable" in text
    assert "client keys: <script>alert(1)</script>, support-bot" in text
    page = fr.html_document(rows, "Fleet", serving=SERVING)
    assert "&lt;script&gt;" in page and "<script>" not in page
    md = fr.markdown(rows, "Fleet", serving=SERVING)
    assert "| fleet/deepseek-r1:671b | h100-1, h100-2 |" in md
    assert "| deepseek-r1 | alias of fleet/deepseek-r1:671b |" in md


def test_no_serving_section_without_a_serving_layer():
    rows = [fr.host_row({"host": "h1"})]
    assert "Serving" not in fr.text_table(rows, serving=None)
    assert "Serving" not in fr.markdown(rows, "Fleet", serving={"endpoints": [], "models": []})


def test_terminal_and_markdown_output_carry_no_control_characters():
    from ansible_collections.localllm.fleet.plugins.module_utils import fleet_report

    row = {key: f"x\x1b]0;pwned\x07\x1b[2J{key}\r" for key, _ in fleet_report.COLUMNS}
    for text in (
        fleet_report.text_table([row], notes=["n\x1b[31m"], details=["d\x1b[0m"]),
        fleet_report.markdown([row], "t\x1b[1m", notes=["n\x1b"], details=["d\x07"]),
    ):
        assert not any(ch in text for ch in "\x1b\x07\r"), repr(text)


def test_the_kept_model_and_each_loaded_models_share_in_vram():
    now = 1_800_000_000  # 2027-01-15
    running = [
        {"name": "fleet/deepseek-r1:32b", "size": 100, "size_vram": 100,
         "expires_at": "2318-03-01T10:00:00.123456789Z"},
        {"name": "fleet/gemma3:27b", "size": 200, "size_vram": 90,
         "expires_at": "2027-01-15T08:05:00Z"},
    ]  # fmt: skip
    row = fr.host_row({**H100, "running": running}, now=now)
    assert row["kept"] == "fleet/deepseek-r1:32b"
    assert row["gpu_percent"] == "fleet/deepseek-r1:32b: 100%, fleet/gemma3:27b: 45%"
    assert [title for _, title in fr.COLUMNS][4:6] == ["Kept loaded", "GPU %"]


def test_without_a_look_at_the_server_the_smoke_results_say_it():
    smoke = [{"model": "m", "ok": True, "processor": "100% GPU", "gpu_percent": 100,
              "kept_loaded": True}]  # fmt: skip
    row = fr.host_row({**H100, "smoke": smoke})
    assert (row["kept"], row["gpu_percent"]) == ("m", "100%")
    assert (fr.host_row({"host": "x"})["kept"], fr.host_row({"host": "x"})["gpu_percent"]) == (
        "-",
        "-",
    )


def test_two_gateways_give_one_section_with_both_endpoints():
    second = dict(SERVING, endpoints=["https://gw2.example:8443/v1"], clients=["support-bot"])
    combined = fr.combine_serving([SERVING, second])
    assert combined["endpoints"] == ["https://gw1.example:8443/v1", "https://gw2.example:8443/v1"]
    assert [m["name"] for m in combined["models"]] == [m["name"] for m in SERVING["models"]]
    assert combined["clients"] == SERVING["clients"]
    assert combined["excluded"] == SERVING["excluded"]
    text = fr.text_table([fr.host_row({"host": "h1"})], serving=combined)
    assert text.count("endpoint: ") == 2
    assert fr.combine_serving([]) is None
    assert fr.combine_serving(None) is None
    assert fr.combine_serving([None, {}]) is None


@pytest.mark.controller
def test_report_yml_shows_what_the_gateways_serve(tmp_path):
    """report.yml end to end on the control node: a gateway host's fleet_gateway_serving (as
    the fleet_gateway role sets it) becomes the report's serving section."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    inventory = tmp_path / "hosts.json"
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    host |= {"gpu_tier_probe": False, "fleet_gateway_serving": SERVING}
    inventory.write_text(json.dumps({"gateway": {"hosts": {"gw1": host}}}))
    command = [str(repo / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory)]
    command += [str(repo / "playbooks" / "report.yml"), "-e", f"report_dir={tmp_path / 'out'}"]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(repo / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    markdown = (tmp_path / "out" / "fleet-report.md").read_text()
    assert "## Serving" in markdown
    assert "`https://gw1.example:8443/v1`" in markdown
    assert "| fleet/deepseek-r1:671b | h100-1, h100-2 |" in markdown
    assert "endpoint: https://gw1.example:8443/v1" in run.stdout


# What the report says about each host, read from its variables on the control node
# (report.yml: no step on every host to copy them into a fact).

INFO = {
    "version": "0.32.15",
    "models": [{"name": "fleet/qwq:32b"}, {"name": "qwq:32b"}, {"name": "fleet2/x:1b"}],
    "running": [{"name": "fleet/qwq:32b", "size_vram": 1}],
}


def test_a_served_host_lists_its_namespace_models_and_version():
    facts = fr.host_facts(
        "rtx4090",
        {"gpu_tier": "workstation", "gpu_count": 1, "__ollama_models_info": INFO,
         "ollama_models_smoke_results": [{"model": "fleet/qwq:32b", "ok": True}]},
    )  # fmt: skip
    assert facts["host"] == "rtx4090" and facts["tier"] == "workstation"
    assert facts["models"] == ["fleet/qwq:32b"]
    assert facts["running"] == INFO["running"]
    assert facts["ollama_version"] == "0.32.15" and facts["ollama_error"] == ""
    assert facts["smoke"] == [{"model": "fleet/qwq:32b", "ok": True}]
    other = fr.host_facts("h", {"__ollama_models_info": INFO, "ollama_models_namespace": "fleet2"})
    assert other["models"] == ["fleet2/x:1b"]


LAST = {
    "timestamp": 1796652919,
    "results": [
        {"model": "fleet/qwq:32b", "ok": True, "tokens_per_second": 32.9, "eval_count": 36}
    ],
}


def _row(info, this_run=None):
    variables = {"gpu_tier": "workstation", "gpu_count": 1, "__ollama_models_info": info}
    if this_run is not None:
        variables["ollama_models_smoke_results"] = this_run
    return fr.host_row(fr.host_facts("rtx4090", variables), now=0)


def test_the_last_passing_smoke_test_is_shown_with_its_time_by_a_run_that_tested_nothing():
    row = _row({**INFO, "smoke": LAST})
    assert row["health"] == "ok" and row["tokens_per_second"] == "32.9"
    assert row["smoke_test"] == "2026-12-07 14:15 UTC"


def test_the_run_that_tested_and_the_next_no_op_write_the_same_report():
    # site.yml with a smoke test stamps it before report.yml asks; the next no-op reads the
    # same stamp: a converged fleet's report does not change (changed=0 on the control node).
    tested = _row({**INFO, "smoke": LAST}, this_run=[{**LAST["results"][0], "content": "Hi"}])
    assert tested == _row({**INFO, "smoke": LAST})


def test_a_smoke_test_that_failed_in_this_run_is_shown_over_the_last_pass():
    row = _row({**INFO, "smoke": LAST}, this_run=[{"model": "fleet/qwq:32b", "ok": False}])
    assert row["health"] == "FAILED: fleet/qwq:32b" and row["smoke_test"] == "this run"


def test_without_a_stamp_this_runs_test_is_shown_and_without_either_nothing():
    row = _row({**INFO, "smoke": None}, this_run=[{"model": "fleet/qwq:32b", "ok": True}])
    assert row["health"] == "ok" and row["smoke_test"] == "this run"
    bare = _row({**INFO, "smoke": None})
    assert bare["health"] == "up (not smoke-tested)" and bare["smoke_test"] == "-"


def test_an_ollama_that_does_not_answer_shows_no_figures_of_an_earlier_test():
    row = _row({"failed": True, "msg": "connection refused", "smoke": LAST})
    assert row["health"] == "DOWN: connection refused"
    assert row["tokens_per_second"] == "-" and row["smoke_test"] == "-"


def test_a_host_whose_ollama_did_not_answer_says_why():
    failed = {"failed": True, "msg": "cannot reach Ollama at http://127.0.0.1:11434"}
    facts = fr.host_facts("t4", {"gpu_tier": "entry", "__ollama_models_info": failed})
    assert facts["ollama_error"] == "cannot reach Ollama at http://127.0.0.1:11434"
    assert facts["models"] == [] and facts["ollama_version"] is None


def test_a_host_not_asked_has_a_row_without_an_error():
    for info in (None, {"skipped": True, "skip_reason": "Conditional result was False"}):
        facts = fr.host_facts("gw1", {"__ollama_models_info": info} if info else {})
        assert facts["ollama_error"] == "" and facts["ollama_version"] is None
        assert facts["gpu_devices"] == [] and facts["smoke"] == []


@pytest.mark.parametrize("flag", [False, "false", "no", "0"])
def test_a_host_the_inventory_leaves_out_has_no_row(flag):
    assert fr.host_facts("mirror", {"gpu_tier_probe": flag}) is None


@pytest.mark.parametrize("flag", [True, "true", "yes"])
def test_a_host_kept_in_has_a_row(flag):
    assert fr.host_facts("cpu", {"gpu_tier_probe": flag})["host"] == "cpu"


@pytest.mark.controller
def test_report_yml_rows_are_the_hosts_the_play_covered(tmp_path):
    """report.yml end to end: every host of its first play has a row, read on the control
    node; a host left out by --limit or by gpu_tier_probe: false has none."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    # No Ollama on the machine running the tests: the hosts have no tier, so none is asked.
    hosts = {
        "cpu-a": {**local, "gpu_tier": None, "gpu_tier_reason": "no GPU: CPU tier off"},
        "cpu-b": {**local, "gpu_tier": None, "gpu_tier_reason": "probe failed"},
        "mirror": {**local, "gpu_tier_probe": False},
    }
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}))
    out = tmp_path / "out"
    command = [str(repo / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory)]
    command += [str(repo / "playbooks" / "report.yml"), "-e", f"report_dir={out}"]
    env = {**os.environ, "ANSIBLE_CONFIG": str(repo / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env["ANSIBLE_CACHE_PLUGIN"] = "ansible.builtin.memory"
    for limit, rows in ((None, ["cpu-a", "cpu-b"]), ("cpu-b,localhost", ["cpu-b"])):
        run = subprocess.run(
            command + (["--limit", limit] if limit else []),
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        markdown = (out / "fleet-report.md").read_text()
        found = [host for host in hosts if f"| {host} |" in markdown]
        assert found == rows, markdown
