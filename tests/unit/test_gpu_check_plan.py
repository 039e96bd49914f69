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
from json_http import serve_json
from role_testing import REPO, run_role_tasks

STANDIN = """#!/bin/sh
echo "$(basename "$0") $*" >> "{calls}"
case "$(basename "$0") $*" in
  *ExecMainStartTimestamp*) echo "{started}" ;;
  journalctl*)
    [ -e "{journal}.fails" ] && {{ echo "No journal files were found." >&2; exit 1; }}
    cat "{journal}" ;;
  *) echo "stand-in: not expected here: $*" >&2; exit 3 ;;
esac
"""

# What Ollama logs when it starts on two GPUs (the lines the check reads).
TWO_GPUS = (
    'time=2026-12-07T06:00:00.000Z level=INFO source=routes.go:1950 msg="server config"\n'
    + "".join(
        'time=2026-12-07T06:00:01.000Z level=INFO source=types.go:42 msg="inference compute"'
        f' id=GPU-{n} filter_id="" library=CUDA compute=9.0 name=CUDA{n}'
        ' description="NVIDIA H100 80GB HBM3" libdirs=ollama,cuda_v12 driver=12.8'
        f' pci_id=0000:0{n}:00.0 type=discrete total="79.6 GiB"'
        ' available="79.1 GiB"\n'
        for n in (0, 1)
    )
)


def gpu_check(
    tmp_path: Path,
    *args: str,
    started: str = "",
    journal: str = "",
    kept: str = "fleet/deepseek-r1:70b",
    api_url: str = "http://127.0.0.1:9",  # nothing listens here: the check must not ask
    after: list[dict] | None = None,
) -> tuple[object, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    calls.write_text("")
    (tmp_path / "journal").write_text(journal)
    for name in ("systemctl", "journalctl"):
        tool = bin_dir / name
        tool.write_text(STANDIN.format(calls=calls, started=started, journal=tmp_path / "journal"))
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
            "__ollama_models_kept": kept,
            "ollama_models_api_url": api_url,
        },
        args=args,
        after=after,
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


@pytest.mark.parametrize("started", ["@1796623200", "@1796623200.25"])
def test_a_started_host_has_its_log_since_the_start_read_in_the_same_step(tmp_path, started):
    run, calls = gpu_check(tmp_path, "--check", started=started, journal=TWO_GPUS)
    # Its GPUs are found; the run then stops at the preload unit, which the stand-in refuses.
    assert "Ollama found 2 CUDA device(s): NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3" in run.out
    assert run.outcome("Check Ollama found the GPUs") == "ok", run.out[-4000:]
    assert calls[:2] == [
        "systemctl show --timestamp=unix --property ExecMainStartTimestamp --value ollama.service",
        "journalctl --unit ollama.service --no-pager --output cat"
        " --since @1796623199 --until @1796623800",
    ]


def test_a_started_host_whose_log_shows_fewer_gpus_fails_naming_them(tmp_path):
    one_gpu = "".join(TWO_GPUS.splitlines(keepends=True)[:2])
    run, _ = gpu_check(tmp_path, started="@1796623200", journal=one_gpu)
    assert run.rc != 0
    assert "found 1 CUDA device(s) at its last start, 2 expected" in " ".join(run.out.split())


# A server in use logs a line per request: what a busy host logged in its first minutes.
REQUESTS = "".join(
    f'[GIN] 2026/12/07 - 06:0{n % 10}:00 | 200 |  1.2s | 10.0.0.{n} | POST "/api/chat"\n'
    for n in range(2000)
)


def test_only_the_lines_the_check_reads_leave_the_host(tmp_path):
    # The start's lines among two thousand request lines: the GPUs are found, and only those
    # three lines (after the start's epoch) come back to the control node.
    journal = REQUESTS + TWO_GPUS + REQUESTS
    with serve_json({"/api/ps": {"models": []}}) as url:
        run, _ = gpu_check(
            tmp_path,
            started="@1796623200",
            journal=journal,
            kept="",  # no model kept loaded: /api/ps is read, no placement is checked
            api_url=url,
            after=[
                {
                    "name": "Show what came back",
                    "ansible.builtin.debug": {
                        "msg": "LINES={{ __ollama_models_started_at.stdout_lines | length }}"
                        " REQUESTS={{ __ollama_models_started_at.stdout is search('GIN') }}"
                    },
                }
            ],
        )
    assert run.rc == 0, run.out[-4000:]
    assert run.outcome("Check Ollama found the GPUs") == "ok"
    # the start's epoch, then the server config line and the two GPUs' lines
    assert "LINES=4 REQUESTS=False" in run.out, run.out[-3000:]


def test_a_log_without_any_such_line_is_a_failed_check_not_a_failed_read(tmp_path):
    run, _ = gpu_check(tmp_path, started="@1796623200", journal=REQUESTS, kept="")
    assert run.rc != 0
    assert (
        run.outcome("Read when Ollama last started, and its log of its first minutes since then")
        == "ok"
    )
    assert (
        "found 0 CUDA device(s) at its last start, 2 expected (no start of the server in its log)"
        in " ".join(run.out.split())
    )


def test_a_journal_that_cannot_be_read_fails_the_read_with_journalctl_s_words(tmp_path):
    (tmp_path / "journal.fails").write_text("")
    run, _ = gpu_check(tmp_path, started="@1796623200", journal=TWO_GPUS, kept="")
    assert run.rc != 0
    assert (
        run.outcome("Read when Ollama last started, and its log of its first minutes since then")
        == "fatal"
    )
    assert "No journal files were found." in run.out
