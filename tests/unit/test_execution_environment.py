"""The AWX / Automation Platform execution environment (examples/awx/): `ansible-builder create`
makes its build context offline from the collection tarball, and the collection declares the
packages the image needs (what the image's builder stage reads with `introspect`). No image
is built here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
VERSION = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
TARBALL = f"localllm-fleet-{VERSION}.tar.gz"

pytestmark = pytest.mark.controller


def locked(name: str) -> str:
    """The version requirements.txt pins for a package."""
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.lower().startswith(f"{name.lower()}=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{name} is not in requirements.txt")


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, check=False, cwd=cwd, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """examples/awx/ beside build/<collection tarball>, as `make collection` leaves them."""
    root = tmp_path_factory.mktemp("ee")
    shutil.copytree(REPO / "examples" / "awx", root / "examples" / "awx")
    run(
        BIN / "ansible-galaxy",
        "collection",
        "build",
        "--output-path",
        root / "build",
        REPO,
        cwd=root,
    )
    assert (root / "build" / TARBALL).is_file()
    return root


def test_ansible_builder_creates_the_context_offline(tree):
    context = tree / "context"
    run(
        BIN / "ansible-builder",
        "create",
        "-f",
        tree / "examples" / "awx" / "execution-environment.yml",
        "-c",
        context,
        cwd=tree,
    )
    containerfile = (context / "Containerfile").read_text()
    # the versions this repository is tested with
    pins = f"ansible-core=={locked('ansible-core')} ansible-runner=="
    assert f'ARG ANSIBLE_INSTALL_REFS="{pins}' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    # the collections are installed from requirements.yml in /build, and the tarball it names
    # is in the context at that place
    assert "COPY _build /build" in containerfile
    assert "collection install" in containerfile
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    files = [c["name"] for c in requirements["collections"] if c.get("type") == "file"]
    assert files == [f"collections/{TARBALL}"], "requirements.yml names another version"
    assert (context / "_build" / files[0]).is_file()
    names = {c["name"] for c in requirements["collections"]}
    dependencies = yaml.safe_load((REPO / "galaxy.yml").read_text())["dependencies"]
    assert set(dependencies) <= names, "a dependency of galaxy.yml is not in the image"
    # the builder stage reads each collection's declared packages with this script
    assert (context / "_build" / "scripts" / "introspect.py").is_file()
    assert "introspect.py introspect" in containerfile


def test_the_collection_declares_the_packages_an_image_needs(tree):
    collections = tree / "collections"
    run(
        BIN / "ansible-galaxy",
        "collection",
        "install",
        "--no-deps",
        "--offline",
        "--force",  # ansible.cfg's collections path already holds the repository's own copy
        "-p",
        collections,
        tree / "build" / TARBALL,
        cwd=tree,
    )
    result = run(BIN / "ansible-builder", "introspect", collections, cwd=tree)
    found = yaml.safe_load(result.stdout.split("---", 1)[1])
    python = [line.split("#")[0].strip() for line in found["python"]]
    system = [line.split("#")[0].strip() for line in found["system"]]
    assert all("from collection localllm.fleet" in line for line in found["python"])
    # the inventory plugin's SSH library, at a version that takes the one tested here
    paramiko = [Requirement(r) for r in python if Requirement(r).name == "paramiko"]
    assert paramiko, python
    assert paramiko[0].specifier.contains(locked("paramiko"))
    # the ssh client for ansible-playbook's connections, on both package families
    assert "openssh-client [platform:dpkg]" in system
    assert "openssh-clients [platform:rpm]" in system
