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
from test_fleet_metrics import collector_files

from ansible_collections.localllm.fleet.plugins.module_utils import python_archive as pa

ROOT = Path(__file__).resolve().parents[2]
MODULE_UTILS = ROOT / "plugins" / "module_utils"
PREFIX = "ansible_collections/localllm/fleet/plugins/module_utils"


def _collector_members() -> list[str]:
    # What the collector imports (test_fleet_metrics checks the role's list is the same).
    return collector_files()


def _pack(names: list[str]) -> bytes:
    return pa.build(
        (pa.member_name(PREFIX, name), (MODULE_UTILS / name).read_bytes()) for name in names
    )


def test_the_same_files_give_the_same_bytes_whatever_their_order():
    names = _collector_members()
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
    names = _collector_members()
    files = [(pa.member_name(PREFIX, n), (MODULE_UTILS / n).read_bytes()) for n in names]
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
    Path(f"{script}.zip").write_bytes(_pack(_collector_members()))
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
    import yaml

    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "tasks": [
                {
                    "ansible.builtin.copy": {
                        "src": "{{ lookup('localllm.fleet.python_archive', *names,"
                        " root=root, prefix=prefix) }}",
                        "dest": str(tmp_path / "code.zip"),
                        "mode": "0644",
                    }
                }
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = dict(
        os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false"
    )
    base = [
        str(ROOT / ".venv/bin/ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        str(tmp_path / "play.yml"),
    ]
    extra = [
        "-e",
        json.dumps({"names": _collector_members(), "root": str(MODULE_UTILS), "prefix": PREFIX}),
    ]
    first = subprocess.run([*base, *extra], capture_output=True, text=True, env=env, check=False)
    assert first.returncode == 0 and "changed=1" in first.stdout, first.stdout + first.stderr
    assert (tmp_path / "code.zip").read_bytes() == _pack(_collector_members())
    again = subprocess.run([*base, *extra], capture_output=True, text=True, env=env, check=False)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout
    hostile = [
        "-e",
        json.dumps({"names": ["../../etc/passwd"], "root": str(MODULE_UTILS), "prefix": PREFIX}),
    ]
    refused = subprocess.run(
        [*base, *hostile], capture_output=True, text=True, env=env, check=False
    )
    assert refused.returncode != 0
    assert "not a relative path of plain names" in refused.stdout + refused.stderr
