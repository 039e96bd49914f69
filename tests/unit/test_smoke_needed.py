"""When site.yml smoke-tests a host's models (roles/ollama_models/tasks/smoke_needed.yml):
a converged host whose last test passed is not asked again, and anything the test covers
that changed (the plan, a Modelfile, a model registered again, Ollama's release, the smoke
settings), a missing stamp or ollama_models_smoke_always makes it run. Run through
ansible-playbook on localhost, with the stamp under tmp_path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from role_testing import REPO, run_role_tasks

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_monitoring as fmon

PLAN = [{"target": "fleet/qwen3:8b", "from": "qwen3:8b", "modelfile": "qwen3-8b", "num_ctx": 8192}]
RENDERED = {"fleet/qwen3:8b": "FROM qwen3:8b\nPARAMETER num_ctx 8192\n"}


def _smoke_needed_then(tmp_path: Path, task: dict, variables: dict):
    """Run smoke_needed.yml (reading the stamp), then `task`, which sees the role's variables
    as the role's main.yml does after it (public)."""
    return run_role_tasks(
        tmp_path,
        "ollama_models",
        "smoke_needed.yml",
        {
            # read outside the role: its vars read the ollama role's defaults by path
            "role_path": str(REPO / "roles" / "ollama_models"),
            "ollama_models_modelfile_dir": str(tmp_path),
            "__ollama_models_plan": PLAN,
            "__ollama_models_rendered": RENDERED,
            **variables,
        },
        after=[task],
        public=True,
    )


def decide(tmp_path: Path, **variables) -> bool:
    """Run smoke_needed.yml once and return the role's decision."""
    run = _smoke_needed_then(
        tmp_path,
        {
            "name": "Show",
            "ansible.builtin.debug": {
                "msg": "NEEDED={{ _ollama_models_smoke_needed | bool | to_json }}"
            },
        },
        variables,
    )
    assert not run.failed, run.out[-3000:]
    found = re.search(r"NEEDED=(true|false)", run.out)
    assert found, run.out[-3000:]
    return json.loads(found[1])


# What smoke.yml leaves for the stamp: the figures, and text that must never be kept.
RESULTS = [
    {
        "model": "fleet/qwen3:8b",
        "ok": True,
        "tokens_per_second": 12.5,
        "eval_count": 20,
        "answer": "the answer a model wrote",
        "thinking": "what it thought",
    }
]


def _stamp_task() -> dict:
    """The role's own step that stamps a passing test (smoke_run.yml), as the role has it."""
    path = REPO / "roles" / "ollama_models" / "tasks" / "smoke_run.yml"
    blocks = yaml.safe_load(path.read_text())
    name = "Stamp the passing smoke test"
    found = [t for b in blocks for t in b.get("block", []) if t.get("name") == name]
    assert len(found) == 1
    task = dict(found[0])
    # owner/group root: the test runs as whoever runs it.
    task["ansible.builtin.copy"] = {
        k: v for k, v in task["ansible.builtin.copy"].items() if k not in ("owner", "group")
    }
    return task


def stamp(tmp_path: Path, **variables) -> None:
    """Write the stamp as a passing test does (smoke_run.yml's step after smoke.yml)."""
    run = _smoke_needed_then(
        tmp_path, _stamp_task(), {"ollama_models_smoke_results": RESULTS, **variables}
    )
    assert not run.failed, run.out[-3000:]
    assert (tmp_path / ".smoke-passed").exists()


def test_a_host_never_tested_is_tested(tmp_path):
    assert decide(tmp_path) is True


def test_a_passed_test_with_nothing_changed_is_not_repeated(tmp_path):
    stamp(tmp_path)
    assert decide(tmp_path) is False


def test_always_tests_even_when_nothing_changed(tmp_path):
    stamp(tmp_path)
    assert decide(tmp_path, ollama_models_smoke_always=True) is True


@pytest.mark.parametrize(
    "change",
    [
        {"__ollama_models_rendered": {"fleet/qwen3:8b": "FROM qwen3:8b\nPARAMETER num_ctx 4096\n"}},
        {"__ollama_models_plan": [{**PLAN[0], "num_ctx": 4096}]},
        {"ollama_version": "0.99.0"},
        {"ollama_models_smoke_prompt": "Say hello."},
        {"__ollama_models_registered": {"changed": True, "results": []}},
        {"__ollama_switched": {"changed": True}},
        {"__ollama_dropin_file": {"changed": True}},
        {"__ollama_models_preload_unit": {"changed": True}},
    ],
    ids=[
        "modelfile",
        "plan",
        "ollama-version",
        "smoke-prompt",
        "registered",
        "ollama-release",
        "ollama-settings",
        "preload-unit",
    ],
)
def test_a_change_the_test_covers_tests_again(tmp_path, change):
    stamp(tmp_path)
    assert decide(tmp_path, **change) is True


def test_a_stamp_from_site_yml_holds_for_models_yml(tmp_path):
    # site.yml runs the ollama role first (its defaults, ollama_version among them, are loaded);
    # models.yml runs ollama_models alone. The same host must not test again for that.
    default = yaml.safe_load((REPO / "roles" / "ollama" / "defaults" / "main.yml").read_text())
    stamp(tmp_path, ollama_version=default["ollama_version"])
    assert decide(tmp_path) is False


def test_the_stamp_holds_the_figures_for_the_report_and_never_text(tmp_path):
    stamp(tmp_path)
    text = (tmp_path / ".smoke-passed").read_text()
    digest, figures = text.splitlines()
    assert len(digest) == 64 and text.endswith("\n")
    record = fmon.smoke_stamp_record(text.encode())
    assert record is not None and record["timestamp"] > 1_700_000_000
    assert record["results"] == [
        {"model": "fleet/qwen3:8b", "ok": True, "tokens_per_second": 12.5, "eval_count": 20}
    ]
    assert "answer" not in figures and "thought" not in figures


def test_a_stamp_of_an_older_release_still_holds(tmp_path):
    # Before the figures were added the stamp was the digest alone: not a reason to test again.
    stamp(tmp_path)
    path = tmp_path / ".smoke-passed"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    assert decide(tmp_path) is False
    assert fmon.smoke_stamp_record(path.read_bytes()) is None


def test_a_stamp_with_another_digest_tests_again(tmp_path):
    stamp(tmp_path)
    path = tmp_path / ".smoke-passed"
    path.write_text("0" * 64 + "\n" + path.read_text().splitlines()[1] + "\n")
    assert decide(tmp_path) is True
