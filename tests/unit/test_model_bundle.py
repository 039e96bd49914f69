"""scripts/model-bundle: export, inspect and verify model bundles.

The store is laid out from the lab registry (tests/standins/ollama/make-models) exactly as
`ollama pull` leaves it. The script runs under the machine's plain python3: it needs only
the standard library.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from ollama_module_testing import REPO, flip_byte, store_from_registry

pytest_plugins = ["standin_fixtures"]

SCRIPT = REPO / "scripts" / "model-bundle"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
MODELS = [("deepseek-r1", "1.5b"), ("deepseek-r1", "8b")]


def bundle(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def store(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store") / "models"
    store_from_registry(mirror, root, MODELS)
    return root


def manifest_refs(store: Path, model: str, tag: str) -> list[tuple[str, int]]:
    raw = (store / "manifests/registry.ollama.ai/library" / model / tag).read_bytes()
    data = json.loads(raw)
    return [(e["digest"], e["size"]) for e in [data["config"], *data["layers"]]]


def test_export_writes_index_manifests_then_blobs(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "lab.bundle"
    result = bundle("export", "deepseek-r1:1.5b", "deepseek-r1:8b", "-o", str(out),
                    "--models-dir", str(store))  # fmt: skip
    assert result.returncode == 0, result.stderr
    digest = "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()
    assert result.stdout == f"{digest}  {out}\n"
    assert "deepseek-r1:1.5b, deepseek-r1:8b" in result.stderr

    with tarfile.open(out) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        sizes = {m.name: m.size for m in tar.getmembers()}
    refs = manifest_refs(store, "deepseek-r1", "1.5b") + manifest_refs(store, "deepseek-r1", "8b")
    blobs = list(dict.fromkeys(d for d, _ in refs))
    assert names == [
        "index.json",
        "manifests/registry.ollama.ai/library/deepseek-r1/1.5b",
        "manifests/registry.ollama.ai/library/deepseek-r1/8b",
        *[f"blobs/{d.replace(':', '-')}" for d in blobs],
    ]
    assert len(blobs) < len(refs)  # the two tags share blobs; each is in the bundle once
    assert index["format"] == "localllm.fleet/model-bundle"
    assert index["version"] == 1
    assert [m["name"] for m in index["models"]] == ["deepseek-r1:1.5b", "deepseek-r1:8b"]
    raw = (store / "manifests/registry.ollama.ai/library/deepseek-r1/8b").read_bytes()
    assert index["models"][1]["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert index["blobs"] == [{"digest": d, "size": dict(refs)[d]} for d in blobs]
    assert all(sizes[f"blobs/{d.replace(':', '-')}"] == s for d, s in refs)


def test_export_is_reproducible_and_streams_to_stdout(store: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.bundle", tmp_path / "b.bundle"
    for out in (first, second):
        assert bundle("export", "deepseek-r1:8b", "-o", str(out), "-q",
                      "--models-dir", str(store)).returncode == 0  # fmt: skip
    assert first.read_bytes() == second.read_bytes()
    piped = subprocess.run(
        [PYTHON, str(SCRIPT), "export", "deepseek-r1:8b", "-o", "-", "-q", "--models-dir",
         str(store)],
        capture_output=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    assert piped.stdout == first.read_bytes()


def test_inspect_and_verify(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "lab.bundle"
    bundle("export", "deepseek-r1:1.5b", "-o", str(out), "--models-dir", str(store))
    listed = bundle("inspect", str(out))
    assert listed.returncode == 0
    assert listed.stdout.startswith("deepseek-r1:1.5b  manifest sha256:")
    count = len(manifest_refs(store, "deepseek-r1", "1.5b"))
    assert f"  {count} blobs  " in listed.stdout
    summary = json.loads(bundle("inspect", str(out), "--json").stdout)
    assert summary["models"][0]["name"] == "deepseek-r1:1.5b"
    assert summary["size"] == sum(s for _, s in manifest_refs(store, "deepseek-r1", "1.5b"))

    ok = bundle("verify", str(out))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{out}: OK (deepseek-r1:1.5b; {count} blobs")

    model_layer = manifest_refs(store, "deepseek-r1", "1.5b")[1][0]
    flip_byte(out, f"blobs/{model_layer.replace(':', '-')}")
    bad = bundle("verify", str(out))
    assert bad.returncode == 1
    assert f"blob {model_layer} (deepseek-r1:1.5b) is corrupt: it hashes to sha256:" in bad.stderr


def test_a_corrupt_store_never_becomes_a_bundle(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    subprocess.run(["cp", "-a", str(store), str(copy)], check=True)
    model_layer = manifest_refs(copy, "deepseek-r1", "8b")[1][0]
    blob = copy / "blobs" / model_layer.replace(":", "-")
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = tmp_path / "bad.bundle"
    result = bundle("export", "deepseek-r1:8b", "-o", str(out), "--models-dir", str(copy))
    assert result.returncode == 1
    assert f"blob {model_layer} of deepseek-r1:8b is corrupt in the store" in result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model-bundle")] == []


def test_unknown_models_and_usage(store: Path, tmp_path: Path) -> None:
    result = bundle("export", "qwq:32b", "-o", str(tmp_path / "x"), "--models-dir", str(store))
    assert result.returncode == 1
    assert f"model qwq:32b is not in the store {store}" in result.stderr
    not_a_bundle = tmp_path / "plain.tar"
    with tarfile.open(not_a_bundle, "w") as tar:
        tar.add(SCRIPT, arcname="model-bundle")
    result = bundle("inspect", str(not_a_bundle))
    assert result.returncode == 1
    assert "is not a model bundle: its first member is not index.json" in result.stderr
    assert bundle("export", "-o", "x").returncode == 2
