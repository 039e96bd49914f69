"""localllm.fleet.ollama_info with smoke_stamp: the figures of the last smoke test that
passed, read from the ollama_models role's stamp in the same run as Ollama's state (for the
fleet report), and a stamp that is missing, unreadable or not one never failing the read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ollama_module_testing import answer, raw_server, routed, run, warning_texts

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_monitoring as fmon
from ansible_collections.localllm.fleet.plugins.modules import ollama_info

RECORD = {
    "timestamp": 1800000000,
    "results": [{"model": "fleet/qwq:32b", "ok": True, "tokens_per_second": 30.1, "eval_count": 9}],
}


def write_stamp(path: Path, record: object = RECORD) -> Path:
    path.write_text("d" * 64 + "\n" + json.dumps(record) + "\n")
    return path


@pytest.fixture
def ollama():
    """An Ollama API that answers the three reads ollama_info makes."""
    with raw_server(
        routed(
            {
                "/api/version": answer(b'{"version": "0.32.15"}'),
                "/api/tags": answer(b'{"models": []}'),
                "/api/ps": answer(b'{"models": []}'),
            }
        )
    ) as url:
        yield url


def test_the_last_passing_test_comes_with_ollamas_state(ollama, tmp_path):
    stamp = write_stamp(tmp_path / "s")
    result = run("ollama_info", {"api_url": ollama, "smoke_stamp": str(stamp)})
    assert not result.get("failed"), result
    assert result["version"] == "0.32.15"
    assert result["smoke"] == RECORD
    assert result["changed"] is False and not warning_texts(result)


def test_without_the_option_nothing_is_read_and_nothing_returned(ollama):
    result = run("ollama_info", {"api_url": ollama})
    assert not result.get("failed"), result
    assert "smoke" not in result


def test_a_host_never_tested_has_no_figures_and_no_warning(ollama, tmp_path):
    result = run("ollama_info", {"api_url": ollama, "smoke_stamp": str(tmp_path / "none")})
    assert not result.get("failed"), result
    assert result["smoke"] is None and not warning_texts(result)


def test_a_stamp_that_is_not_one_is_ignored_with_a_warning_naming_it(ollama, tmp_path):
    path = tmp_path / "s"
    path.write_text("d" * 64 + "\n{broken\n")
    result = run("ollama_info", {"api_url": ollama, "smoke_stamp": str(path)})
    assert not result.get("failed"), result
    assert result["smoke"] is None
    [warning] = warning_texts(result)
    assert warning.startswith(f"ignoring the smoke stamp {path}: ") and "not JSON" in warning


@pytest.mark.parametrize("kind", ["directory", "binary", "big", "older"])
def test_what_cannot_be_used_says_why_and_never_raises(tmp_path, kind):
    path = tmp_path / "s"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"d" * 64 + b"\n\xff\xfe\n")
    elif kind == "big":
        path.write_bytes(b"x" * (fmon.SMOKE_STAMP_MAX_BYTES + 10))
    else:
        path.write_text("d" * 64 + "\n")
    record, why = ollama_info.read_smoke_stamp(str(path))
    assert record is None
    expected = {
        "directory": "cannot read it",
        "binary": "not UTF-8",
        "big": "more than 65536 bytes",
        "older": "",
    }[kind]
    assert (expected in why) if expected else why == ""
