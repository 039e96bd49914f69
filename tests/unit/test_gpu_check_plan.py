"""ollama_models' GPU check (tasks_from gpu_check.yml) on a GPU host whose Ollama has never
started: a host new to the fleet, planned with --check before the real run installs Ollama.

The plan must say the check waits for the real run and ask nothing it cannot read (the
preload unit, Ollama's /api/ps); a real run on such a host must still fail, naming why.
`systemctl` and `journalctl` are stand-ins on PATH that print what systemd prints for a unit
that never started (an empty ExecMainStartTimestamp) and record every call.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from role_testing import REPO, run_role_tasks

STANDIN = """#!/bin/sh
echo "$(basename "$0") $*" >> "{calls}"
case "$*" in
  *ExecMainStartTimestamp*) echo "{started}" ;;
  *) echo "stand-in: not expected here: $*" >&2; exit 3 ;;
esac
"""


def gpu_check(tmp_path: Path, *args: str, started: str = "") -> tuple[object, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    calls.write_text("")
    for name in ("systemctl", "journalctl"):
        tool = bin_dir / name
        tool.write_text(STANDIN.format(calls=calls, started=started))
        tool.chmod(0o755)
    run = run_role_tasks(
        tmp_path,
        "ollama_models",
        "gpu_check.yml",
        {
            "role_path": str(REPO / "roles" / "ollama_models"),
            "ollama_models_smoke_expect_gpu": True,
            "ollama_models_gpu_check_devices": 2,
            "__ollama_models_plan": [{"target": "fleet/deepseek-r1:70b"}],
            "__ollama_models_kept": "fleet/deepseek-r1:70b",
            # nothing listens here: the check must not ask
            "ollama_models_api_url": "http://127.0.0.1:9",
        },
        args=args,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    return run, calls.read_text().splitlines()


def test_a_plan_of_a_host_whose_ollama_never_started_waits_for_the_real_run(tmp_path):
    run, calls = gpu_check(tmp_path, "--check")
    assert run.rc == 0, run.out[-4000:]
    recap = run.recap()
    assert recap["failed"] == 0
    assert "not checked: Ollama has not started on localhost yet (check mode" in run.out
    # only when it last started was read: no journal, no preload unit, no /api/ps
    assert calls == [
        "systemctl show --timestamp=unix --property ExecMainStartTimestamp --value ollama.service"
    ]
    for task in (
        "Read Ollama's log of its first minutes since then",
        "Make sure the tier's model is loaded",
        "See where the models sit",
        "Check the tier's model is 100% on the GPUs",
    ):
        assert run.outcome(task) == "skipping", task


@pytest.mark.parametrize("started", ["", "n/a"])
def test_a_real_run_on_such_a_host_still_fails_naming_why(tmp_path, started):
    run, calls = gpu_check(tmp_path, started=started)
    assert run.rc != 0
    assert (
        "Ollama on localhost found 0 CUDA device(s) at its last start, 2 expected"
        " (no start of the server in its log)"
    ) in " ".join(run.out.split())
    assert all(call.startswith("systemctl show") for call in calls), calls
