"""fleet_gateway's venv install (roles/fleet_gateway/tasks/venv.yml), run for real on the
control node against a wheelhouse made here: pip installs exactly the lock offline, and a
wheel whose sha256 is not the lock's stops the install before anything is installed,
removes the half-made venv, the unpacked wheels and the tarball, and says why."""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from role_testing import PlaybookRun, run_task_file

pytestmark = pytest.mark.controller  # makes a venv and runs pip (offline)

VERSION = "litellm-9.9.9-0123456789ab"


def _install(tmp_path: Path, variables: dict) -> PlaybookRun:
    """venv.yml alone, with the role's defaults and vars."""
    return run_task_file(tmp_path, "fleet_gateway", "venv.yml", variables)


def _wheel(version: str) -> tuple[str, bytes]:
    """A minimal valid wheel of a package named litellm (what the role asks the venv for)."""
    name = f"litellm-{version}-py3-none-any.whl"
    info = f"litellm-{version}.dist-info"
    files = {
        "litellm/__init__.py": b"",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: litellm\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return name, buffer.getvalue()


def _setup(tmp_path: Path, *, lock_sha256: str | None = None) -> tuple[dict, Path, Path, Path]:
    download = tmp_path / "download"
    root = tmp_path / "opt"
    download.mkdir()
    (root / "versions").mkdir(parents=True)
    name, wheel = _wheel("9.9.9")
    tarball = download / f"{VERSION}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo(f"{VERSION}/wheels/{name}")
        info.size = len(wheel)
        archive.addfile(info, io.BytesIO(wheel))
    digest = lock_sha256 or hashlib.sha256(wheel).hexdigest()
    lock = tmp_path / "litellm.lock"
    lock.write_text(f"litellm==9.9.9 --hash=sha256:{digest}\n")
    variables = {
        "fleet_gateway_install_root": str(root),
        "fleet_gateway_download_dir": str(download),
        "fleet_gateway_lock": str(lock),
        "fleet_gateway_python": sys.executable,
        "__fleet_gateway_version": VERSION,
        "__fleet_gateway_tarball": str(tarball),
        "__fleet_gateway_wheelhouse": {"version": "9.9.9"},
        "__fleet_gateway_current_version": "litellm-9.9.8-fedcba987654",
    }
    return variables, root / "versions" / VERSION, download / VERSION, tarball


def test_the_locked_wheelhouse_is_installed_offline_and_marked_complete(tmp_path):
    variables, venv, _unpacked, tarball = _setup(tmp_path)
    run = _install(tmp_path, variables)
    assert not run.failed, run.out
    assert (venv / ".localllm-complete").read_text() == f"{VERSION}\n"
    assert list(venv.glob("lib/python3*/site-packages/litellm-9.9.9.dist-info"))
    assert tarball.exists()  # kept for a reinstall


def test_a_wheel_that_is_not_the_lock_s_installs_nothing_and_says_why(tmp_path):
    variables, venv, unpacked, tarball = _setup(tmp_path, lock_sha256="0" * 64)
    run = _install(tmp_path, variables)
    assert run.failed
    assert f"LiteLLM {VERSION} could not be installed" in run.out
    assert "DO NOT MATCH THE HASHES" in run.out  # pip's own refusal, quoted
    assert "the version in service (litellm-9.9.8-fedcba987654) is unchanged" in run.out
    # nothing half-made is left: the venv, the unpacked wheels and the untrusted tarball go
    assert not venv.exists()
    assert not unpacked.exists()
    assert not tarball.exists()
