"""The python_archive lookup and module_utils/python_archive.py: one reproducible zip of the
collector's code (fleet_exporters ships it with one copy), importable with its namespace
packages, and the collector runs from it (also under Python 3.9: tests/py39/run)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from role_testing import ansible_playbook
from test_fleet_metrics import collector_files

from ansible_collections.localllm.fleet.plugins.module_utils import python_archive as pa

ROOT = Path(__file__).resolve().parents[2]
MODULE_UTILS = ROOT / "plugins" / "module_utils"
PREFIX = "ansible_collections/localllm/fleet/plugins/module_utils"


def _files(names: list[str]) -> list[tuple[str, bytes]]:
    # The collector's files (test_fleet_metrics checks the role ships the same list).
    return [(pa.member_name(PREFIX, name), (MODULE_UTILS / name).read_bytes()) for name in names]


def _pack(names: list[str]) -> bytes:
    return pa.build(_files(names))


def test_the_same_files_give_the_same_bytes_whatever_their_order():
    names = collector_files()
    first = _pack(names)
    assert _pack(list(reversed(names))) == first
    listing = zipfile.ZipFile(io.BytesIO(first)).infolist()
    assert {info.date_time for info in listing} == {(1980, 1, 1, 0, 0, 0)}
    # every parent directory has its entry (namespace packages need it), files after them
    names_in = [info.filename for info in listing]
    assert "ansible_collections/" in names_in
    assert f"{PREFIX}/modelfile/" in names_in
    assert names_in.index(f"{PREFIX}/") < names_in.index(f"{PREFIX}/fleet_metrics.py")


def test_a_changed_file_changes_the_archive():
    files = _files(collector_files())
    changed = [(files[0][0], files[0][1] + b"\n# edited\n"), *files[1:]]
    assert pa.build(changed) != pa.build(files)


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../x.py", "a/../../x.py", "a//b.py", "./a.py", "a\\b.py", ""]
)
def test_a_name_that_would_leave_the_archive_root_is_refused(name):
    with pytest.raises(pa.ArchiveError, match="relative path of plain names"):
        pa.member_name(PREFIX, name)


def test_nothing_to_pack_is_an_error():
    with pytest.raises(pa.ArchiveError, match="no files"):
        pa.build([])


def test_the_collector_runs_from_the_archive_with_an_isolated_python(tmp_path):
    # As the unit runs it: python3 -I -B <script> with the zip beside it, nothing else on
    # the path; a collection goes through fleet_metrics and the modelfile package (the
    # imports that need the namespace packages' directory entries) and writes its files.
    script = tmp_path / "localllm-fleet-metrics"
    script.write_text((ROOT / "roles/fleet_exporters/files/localllm-fleet-metrics").read_text())
    Path(f"{script}.zip").write_bytes(_pack(collector_files()))
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    settings = tmp_path / "metrics.json"
    settings.write_text(
        json.dumps(
            {
                "textfile_dir": str(textfiles),
                "host": {"tier": None, "expected_gpus": 0},
                "gpu": {"enabled": False, "timeout": 5, "kernel_log": "journal"},
                "ollama": {
                    "enabled": False,
                    "api_url": "http://127.0.0.1:9",
                    "timeout": 1,
                    "pinned_version": "0.32.15",
                    "expected_models": [],
                    "store": str(tmp_path),
                    "smoke_file": str(tmp_path / "smoke.json"),
                },
                "tls": {"certificates": []},
            }
        )
    )

    def collector(option: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-I", "-B", str(script), option, str(settings)],
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", "")},
            check=False,
            cwd=tmp_path,
        )

    ran = collector("--config")
    assert ran.returncode == 0, ran.stderr
    assert list(textfiles.glob("*.prom")), ran.stderr
    # Without the zip beside it the collector cannot import its code: the zip is what ran.
    Path(f"{script}.zip").unlink()
    missing = collector("--check")
    assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr


@pytest.mark.controller  # ansible-playbook runs the lookup
def test_the_lookup_returns_one_archive_per_content_and_refuses_a_hostile_name(tmp_path):
    copy = {
        "ansible.builtin.copy": {
            "src": "{{ lookup('localllm.fleet.python_archive', *names,"
            " root=root, prefix=prefix) }}",
            "dest": str(tmp_path / "code.zip"),
            "mode": "0644",
        }
    }
    plays = [{"hosts": "localhost", "gather_facts": False, "tasks": [copy]}]

    def run(names: list[str]):
        settings = {"names": names, "root": str(MODULE_UTILS), "prefix": PREFIX}
        return ansible_playbook(tmp_path, plays, "-e", json.dumps(settings))

    first = run(collector_files())
    assert first.rc == 0 and first.recap()["changed"] == 1, first.out
    assert (tmp_path / "code.zip").read_bytes() == _pack(collector_files())
    again = run(collector_files())
    assert again.rc == 0 and again.recap()["changed"] == 0, again.out
    refused = run(["../../etc/passwd"])
    assert refused.rc != 0
    assert "not a relative path of plain names" in refused.out
