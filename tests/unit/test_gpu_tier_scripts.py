"""scripts/gpu-tier and scripts/fleet-plan, run as an operator runs them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "nvidia"
# gpu-tier needs only the standard library: run it with the system interpreter when there is one
PLAIN_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable


def gpu_tier(
    *args: str, stdin: str | bytes = "", python: str = PLAIN_PYTHON
) -> tuple[int, dict | None, str]:
    result = subprocess.run(
        [python, str(REPO / "scripts" / "gpu-tier"), *args],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8"},
    )
    stdout = result.stdout.decode()
    document = json.loads(stdout) if stdout.strip() else None
    return result.returncode, document, result.stderr.decode(errors="replace")


def test_a_24_gb_card_from_stdin():
    code, document, _ = gpu_tier(stdin=(FIXTURES / "query-rtx4090-header-units.txt").read_text())
    assert code == 0
    assert document["gpus"] == [{"name": "NVIDIA GeForce RTX 4090", "memory_mib": 24564}]
    assert (document["gpu_count"], document["gpu_memory_mib_total"]) == (1, 24564)
    assert (document["tier"], document["models"], document["error"]) == (
        "medium",
        ["deepseek-r1:32b"],
        None,
    )
    assert document["reason"].startswith("tier medium:")


def test_eight_h100_with_lspci_show_nvswitch_and_get_671b(tmp_path):
    code, document, _ = gpu_tier(
        "--lspci",
        str(FIXTURES / "lspci-h100x8-default.txt"),
        stdin=(FIXTURES / "query-h100x8-legacy-noheader-nounits.txt").read_text(),
    )
    assert code == 0
    assert (document["tier"], document["models"]) == ("frontier", ["deepseek-r1:671b"])
    assert document["gpu_nvswitch"] is True


def test_a_failing_nvidia_smi_without_lspci_is_an_error_not_a_guess():
    code, document, _ = gpu_tier("--rc", "127")
    assert code == 3
    assert document["tier"] is None
    assert "cannot tell whether this host has GPUs" in document["error"]


def test_no_nvidia_device_on_pci_means_cpu(tmp_path):
    empty = tmp_path / "lspci.txt"
    empty.write_text("")
    code, document, _ = gpu_tier("--rc", "127", "--lspci", str(empty))
    assert code == 0
    assert (document["tier"], document["models"]) == ("tiny", ["deepseek-r1:1.5b"])


def test_driver_not_loaded_reports_the_gpus_and_no_tier():
    code, document, _ = gpu_tier(
        "--rc",
        "9",
        "--lspci",
        str(FIXTURES / "lspci-rtx4090x2-nn.txt"),
        stdin=(FIXTURES / "fail-driver-not-loaded.txt").read_text(),
    )
    assert code == 3
    assert document["gpu_count"] == 2
    assert "not loaded" in document["error"]


def test_whole_probe_output_and_overrides():
    code, document, _ = gpu_tier(
        "--probe",
        "--models",
        "qwq:32b",
        "--max-context",
        "4096",
        stdin=(FIXTURES / "probe" / "lab-rtx4090.txt").read_text(),
    )
    assert code == 0
    assert (document["models"], document["num_ctx"]) == (["qwq:32b"], 4096)


def test_policy_file_in_json(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"tier_models": {"medium": ["gemma3:27b"]}}))
    code, document, _ = gpu_tier(
        "--policy", str(policy), stdin=(FIXTURES / "query-a10g-header-reordered.txt").read_text()
    )
    assert (code, document["models"]) == (0, ["gemma3:27b"])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("--tier", "huge"), "gpu_tier_pin: 'huge' is not a tier"),
        (("--policy", "/nonexistent.json"), "No such file"),
    ],
)
def test_bad_options_exit_1_with_a_message(args, match):
    code, document, stderr = gpu_tier(*args)
    assert (code, document) == (1, None)
    assert match in stderr


def test_non_utf8_input_is_read_not_a_traceback():
    text = (FIXTURES / "query-rtx4090-header-units.txt").read_bytes()
    code, document, stderr = gpu_tier(stdin=text.replace(b"NVIDIA GeForce", b"NVIDIA \xff\xfe"))
    assert "Traceback" not in stderr
    assert code == 0
    assert document["gpus"][0]["name"] == "NVIDIA \ufffd\ufffd RTX 4090"
    code, document, stderr = gpu_tier(stdin=b"\xff\xfe\x00garbage\x80\n")
    assert "Traceback" not in stderr
    assert code == 3
    assert "nvidia-smi output is not readable" in document["error"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("tier_models: [unclosed\n", "is not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        (b"tier_models: \xff\n", "is not UTF-8"),
    ],
)
def test_a_broken_policy_file_is_one_line_and_exit_1(tmp_path, content, match):
    policy = tmp_path / "policy.yml"
    if isinstance(content, bytes):
        policy.write_bytes(content)
    else:
        policy.write_text(content)
    code, document, stderr = gpu_tier("--policy", str(policy), python=sys.executable)  # PyYAML
    assert (code, document) == (1, None)
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert stderr.startswith(f"gpu-tier: {policy}: ")
    assert match in stderr


def test_a_probe_timeout_is_an_unreadable_host_not_a_traceback():
    code, document, stderr = gpu_tier("--local", "--timeout", "0.001")
    assert "Traceback" not in stderr
    assert "@@localllm-probe" not in stderr + json.dumps(document)  # no probe script dumped
    assert code == 3
    assert document["tier"] is None
    assert "did not finish within 0.001 s" in document["error"]


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_a_timeout_that_cannot_work_is_a_usage_error(timeout):
    code, document, stderr = gpu_tier("--local", "--timeout", timeout)
    assert (code, document) == (2, None)
    assert "--timeout" in stderr


# ------------------------------------------------------------------------------ fail closed


def test_an_absurd_memory_figure_gets_no_tier_instead_of_frontier():
    query = "index, name, memory.total [MiB]\n0, NVIDIA H100, 10000000000000000000000000\n"
    code, document, _ = gpu_tier(stdin=query)
    assert code == 3
    assert document["tier"] is None
    assert "more than any GPU has" in document["error"]


def test_an_unparsable_compute_capability_gets_no_tier():
    query = "index, name, memory.total [MiB], compute_cap\n0, NVIDIA A10G, 23028, nine\n"
    code, document, _ = gpu_tier(stdin=query)
    assert (code, document["tier"]) == (3, None)
    assert "not a compute capability" in document["error"]


def test_one_gpu_pasted_twice_is_one_24_gb_card():
    text = (FIXTURES / "query-rtx4090-header-units.txt").read_text()
    header, row = text.strip().splitlines()
    code, document, _ = gpu_tier(stdin=f"{header}\n{row}\n{row.replace('0,', '1,', 1)}\n")
    assert code == 0
    assert (document["gpu_count"], document["gpu_memory_mib_total"]) == (1, 24564)
    assert document["tier"] == "medium"


def test_a_pasted_query_without_index_reads_in_row_order():
    code, document, _ = gpu_tier(stdin="name, memory.total [MiB]\nNVIDIA A10G, 23028\n")
    assert (code, document["tier"], document["gpu_count"]) == (0, "medium", 1)


def test_a_pasted_query_without_memory_counts_the_gpus_and_says_why_no_tier():
    code, document, _ = gpu_tier(stdin="index, name\n0, NVIDIA A10G\n1, NVIDIA A10G\n")
    assert (code, document["tier"], document["gpu_count"]) == (3, None, 2)
    assert "add memory.total to --query-gpu" in document["error"]


def test_local_probe_of_this_machine():
    code, document, _ = gpu_tier("--local")
    assert document["status"] in ("gpu", "cpu", "driver_needed", "unreachable")
    assert code == (0 if document["tier"] else 3)


# ------------------------------------------------------------------------------ fleet-plan


def closed_port() -> int:
    for port in range(43150, 43200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port  # closed again when the socket is
    pytest.skip("no free port in 43150-43199")


def test_fleet_plan_for_a_plain_inventory(tmp_path):
    port = closed_port()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n"
        "    controller:\n      ansible_connection: local\n"
        f"    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: {port}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "fleet-plan"),
            "-i",
            str(inventory),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr  # a host could not be read
    rows = {row["host"]: row for row in json.loads(result.stdout)}
    assert rows["controller"]["status"] in ("gpu", "cpu")
    assert rows["controller"]["tier"]
    assert rows["gone"]["status"] == "unreachable"
    assert f"connection refused by 127.0.0.1:{port}" in rows["gone"]["reason"]
    table = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fleet-plan"), "-i", str(inventory)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert table.stdout.splitlines()[0].split() == [
        "HOST",
        "STATUS",
        "GPUS",
        "VRAM",
        "TIER",
        "MODELS",
        "CTX",
    ]
    assert "1 unreachable" in table.stdout


def fleet_plan(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fleet-plan"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize("output", ["table", "json"])
def test_fleet_plan_with_a_limit_that_matches_nothing(tmp_path, output):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    controller:\n      ansible_connection: local\n")
    result = fleet_plan(
        "-i", str(inventory), "--limit", "nomatch", "--format", output, cwd=tmp_path
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert f"fleet-plan: no hosts match --limit 'nomatch' in {inventory}" in result.stderr
    if output == "json":
        assert json.loads(result.stdout) == []


def test_fleet_plan_shows_model_names_an_operator_wrote_as_strings():
    fleet_plan_module = _load_fleet_plan()
    rows = fleet_plan_module.plan_rows(
        {
            "_meta": {
                "hostvars": {
                    "a": {
                        "gpu_probe_status": "gpu",
                        "gpu_devices": ["junk", {"name": "NVIDIA L4", "memory_mib": 23034}],
                        "ollama_models": ["qwq:32b", {"name": "gemma3:27b"}],
                        "gpu_memory_mib_total": "lots",
                    }
                }
            }
        }
    )
    text = fleet_plan_module.table(rows, wide=False)
    assert "qwq:32b, gemma3:27b" in text
    assert "1x L4" in text


def _load_fleet_plan():
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader(
        "fleet_plan", str(REPO / "scripts" / "fleet-plan")
    )
    spec = importlib.util.spec_from_loader("fleet_plan", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
