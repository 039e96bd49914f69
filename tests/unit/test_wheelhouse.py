"""Hash-locked wheelhouses: the lock format, the names derived from it, and scripts/wheelhouse
lock/build/verify end to end against a local wheel directory (no index is contacted): a
tampered wheel is found by `verify`, and pip installs nothing from it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import wheelhouse as wh

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "wheelhouse"
HEX_A, HEX_B = "a" * 64, "b" * 64


def test_wheel_names_are_parsed_and_projects_normalised():
    parts = wh.parse_wheel_filename("Typing_Extensions-4.16.0-py3-none-any.whl")
    assert (parts["project"], parts["version"], parts["platform"]) == (
        "typing-extensions", "4.16.0", "any",
    )  # fmt: skip
    parts = wh.parse_wheel_filename(
        "pydantic_core-2.41.5-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    )
    assert (parts["build"], parts["abi"]) == ("1", "cp311")
    with pytest.raises(wh.WheelhouseError, match="not a wheel file name"):
        wh.parse_wheel_filename("litellm-1.0.tar.gz")


def lock_text():
    return wh.render_lock(
        ["litellm[proxy]==1.2.3", "prometheus-client==0.26.0"],
        [
            {"filename": "litellm-1.2.3-py3-none-any.whl", "sha256": HEX_A},
            {"filename": "prometheus_client-0.26.0-py3-none-any.whl", "sha256": HEX_B},
            {"filename": "Anyio-4.0.0-py3-none-any.whl", "sha256": HEX_A},
        ],
        {
            "format": "1",
            "top": "litellm[proxy]==1.2.3",
            "python": "3.11",
            "glibc": "2.36",
            "arch": "x86_64",
        },
    )


def test_a_lock_pins_every_wheel_with_its_hash_and_keeps_the_extras():
    text = lock_text()
    assert "litellm[proxy]==1.2.3 \\\n    --hash=sha256:" + HEX_A in text
    lock = wh.parse_lock(text)
    assert [r["project"] for r in lock["requirements"]] == ["anyio", "litellm", "prometheus-client"]
    assert lock["requirements"][1]["extras"] == "[proxy]"
    assert lock["header"]["top"] == "litellm[proxy]==1.2.3"


def test_the_wheelhouse_is_named_after_the_version_and_the_locks_digest():
    text = lock_text()
    info = wh.wheelhouse_info(text)
    assert info["id"] == f"litellm-1.2.3-{hashlib.sha256(text.rstrip().encode()).hexdigest()[:16]}"
    assert info["tarball"] == info["id"] + ".tar"
    assert (info["version"], info["wheels"]) == ("1.2.3", 3)
    # Ansible's file lookup strips the last newline: the name must not change with it.
    assert wh.wheelhouse_info(text.rstrip("\n"))["id"] == info["id"]
    assert wh.wheelhouse_info(text.replace(HEX_B, HEX_A))["id"] != info["id"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("litellm>=1.0 \\\n    --hash=sha256:" + HEX_A, "is not NAME\\[EXTRAS\\]==VERSION"),
        ("litellm==1.0", "needs exactly one --hash=sha256"),
        ("litellm==1.0 --hash=md5:abc", "is not --hash=sha256"),
        (f"a==1 --hash=sha256:{HEX_A}\nA==2 --hash=sha256:{HEX_B}", "a is pinned twice"),
        ("# only comments", "the lock pins nothing"),
        ("a==1 \\", "ends inside a continued line"),
    ],
)
def test_a_lock_that_does_not_pin_and_hash_everything_is_refused(text, message):
    with pytest.raises(wh.WheelhouseError, match=message):
        wh.parse_lock(text)


def test_a_resolution_that_does_not_match_the_requirement_is_refused():
    with pytest.raises(wh.WheelhouseError, match=r"gave litellm 1\.2\.4, not 1\.2\.3"):
        wh.render_lock(
            ["litellm==1.2.3"],
            [{"filename": "litellm-1.2.4-py3-none-any.whl", "sha256": HEX_A}],
            {},
        )
    with pytest.raises(wh.WheelhouseError, match="no wheel of litellm"):
        wh.render_lock(
            ["litellm==1.2.3"], [{"filename": "x-1-py3-none-any.whl", "sha256": HEX_A}], {}
        )


def test_files_are_matched_to_the_lock():
    lock = wh.parse_lock(lock_text())
    match = wh.expected_files(
        lock, ["litellm-1.2.3-py3-none-any.whl", "anyio-4.0.1-py3-none-any.whl", "notes.txt"]
    )
    assert match["missing"] == ["anyio", "prometheus-client"]
    assert match["extra"] == ["anyio-4.0.1-py3-none-any.whl", "notes.txt"]
    assert match["pairs"] == [["litellm-1.2.3-py3-none-any.whl", HEX_A]]


def test_perennial_manylinux_tags_are_listed_down_to_manylinux2014():
    tags = wh.manylinux_platforms("2.36", "x86_64")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags
    assert tags[-3:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    assert wh.manylinux_platforms("2.17", "aarch64")[-1] == "manylinux2014_aarch64"
    with pytest.raises(wh.WheelhouseError, match="glibc"):
        wh.manylinux_platforms("2.5", "x86_64")


def test_checksum_files_are_read_in_sha256sum_format():
    assert wh.checksum_for(f"{HEX_A}  x.tar\n", "x.tar") == HEX_A
    assert wh.checksum_for(f"{HEX_A.upper()} *./x.tar\n", "x.tar") == HEX_A
    with pytest.raises(wh.WheelhouseError, match=r"no line for y\.tar"):
        wh.checksum_for(f"{HEX_A}  x.tar\n", "y.tar")
    with pytest.raises(wh.WheelhouseError, match="is not '<sha256>  <file>'"):
        wh.checksum_for("garbage\n", "x.tar")


# ----------------------------------------------------------------- the script, end to end


def make_wheel(directory: Path, name: str, version: str, requires: list[str] = ()) -> Path:
    """A minimal valid pure-Python wheel (PEP 427) with one module."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: "
        + name
        + "\nVersion: "
        + version
        + "\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    target = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return target


@pytest.fixture(scope="module")
def local_index(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wheels")
    make_wheel(directory, "fleettop", "1.0", ["fleetdep==2.0"])
    make_wheel(directory, "fleetdep", "2.0")
    return directory


def script(*args: str, index: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        # pip reads this machine's configuration; the test points it at local files only.
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(index),
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


def test_lock_build_verify_and_a_tampered_wheel(local_index, tmp_path):
    lock = tmp_path / "test.lock"
    result = script(
        "lock", "--requirement", "fleettop==1.0", "--python", sys.executable, "--lock", str(lock),
        index=local_index,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    parsed = wh.parse_lock(lock.read_text())
    assert [r["project"] for r in parsed["requirements"]] == ["fleetdep", "fleettop"]

    out = tmp_path / "out"
    result = script("build", str(out), "--lock", str(lock), index=local_index)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    tarball = out / info["tarball"]
    assert (
        out / f"{info['tarball']}.sha256"
    ).read_text() == f"{info['sha256']}  {info['tarball']}\n"
    with tarfile.open(tarball) as archive:
        names = sorted(archive.getnames())
    assert names == sorted(
        [
            info["id"],
            f"{info['id']}/SHA256SUMS",
            f"{info['id']}/requirements.lock",
            f"{info['id']}/wheels",
            f"{info['id']}/wheels/fleetdep-2.0-py3-none-any.whl",
            f"{info['id']}/wheels/fleettop-1.0-py3-none-any.whl",
        ]
    )
    # The same lock builds the same bytes.
    again = script("build", str(tmp_path / "again"), "--lock", str(lock), index=local_index)
    assert json.loads(again.stdout)["sha256"] == info["sha256"]
    assert script("verify", str(tarball), "--lock", str(lock), index=local_index).returncode == 0
    assert script("verify", str(out), "--lock", str(lock), index=local_index).returncode == 0

    with (out / "wheels" / "fleetdep-2.0-py3-none-any.whl").open("ab") as handle:
        handle.write(b"tampered")
    result = script("verify", str(out), "--lock", str(lock), index=local_index)
    assert result.returncode == 1
    assert "wheels/fleetdep-2.0-py3-none-any.whl: sha256" in result.stderr

    # What the role runs on the host: pip refuses before installing anything.
    target = tmp_path / "target"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(out / "wheels"),
         "--require-hashes", "--only-binary", ":all:", "--target", str(target),
         "--requirement", str(lock)],
        capture_output=True, text=True, env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
        check=False,
    )  # fmt: skip
    assert install.returncode != 0
    assert "DO NOT MATCH THE HASHES" in install.stderr
    assert not (target / "fleettop.py").exists() and not (target / "fleetdep.py").exists()


def test_build_refuses_a_lock_without_its_header(local_index, tmp_path):
    lock = tmp_path / "bare.lock"
    lock.write_text(f"fleetdep==2.0 --hash=sha256:{HEX_A}\n")
    result = script("build", str(tmp_path / "out"), "--lock", str(lock), index=local_index)
    assert result.returncode == 1
    assert "# top:" in result.stderr
