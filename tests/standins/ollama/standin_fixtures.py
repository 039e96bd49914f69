"""pytest fixtures for the stand-in tests (`pytest_plugins = ["standin_fixtures"]`).

The artifact and the lab models are built once per test session, shared between xdist
workers through a file lock, exactly as `scripts/lab up` builds them.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import pytest
from standin_testing import Ollama, build_artifact, make_models, serving


@contextlib.contextmanager
def exclusive(path: str) -> Iterator[None]:
    """An exclusive flock shared by the xdist workers of one session."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _shared(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    workerinput = getattr(request.config, "workerinput", None)
    return workerinput["workerid"] if workerinput else "master"


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The extracted release (prefix with bin/ollama and lib/ollama)."""
    root = _shared(tmp_path_factory, worker_id) / "ollama-standin"
    root.mkdir(exist_ok=True)
    with exclusive(str(root / ".lock")):
        prefix = root / "prefix-0.32.15"
        if not (prefix / "bin" / "ollama").exists():
            build_artifact(root)
    return prefix


@pytest.fixture(scope="session")
def broken_artifact(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    root = _shared(tmp_path_factory, worker_id) / "ollama-standin-broken"
    root.mkdir(exist_ok=True)
    with exclusive(str(root / ".lock")):
        prefix = root / "prefix-0.32.16-http500"
        if not (prefix / "bin" / "ollama").exists():
            build_artifact(root, "0.32.16", "http500")
            build_artifact(root, "0.32.16", "exit")
            build_artifact(root, "0.32.17", "inference")
    return root


@pytest.fixture(scope="session")
def mirror(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """make-models output: v2/ registry tree and models/ GGUF files."""
    root = _shared(tmp_path_factory, worker_id) / "ollama-mirror"
    with exclusive(str(root) + ".lock"):
        if not (root / "models" / "SHA256SUMS").exists():
            make_models(root)
    return root


@pytest.fixture
def server(artifact: Path, tmp_path: Path) -> Iterator[Ollama]:
    """A fresh `ollama serve` with an empty store."""
    with serving(artifact, tmp_path / "home") as running:
        yield running


@pytest.fixture
def tiny_gguf(mirror: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    target = work / "tiny.gguf"
    target.write_bytes((mirror / "models" / "deepseek-r1-1.5b-q4_k_m.gguf").read_bytes())
    return target
