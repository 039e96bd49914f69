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


# ---------------------------------------------------------------------------- hostile bundles

FORMAT = "localllm.fleet/model-bundle"
NAME = "lab/tiny:1"
MANIFEST = "manifests/registry.ollama.ai/lab/tiny/1"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def craft(path: Path, index: bytes | None = None, manifest: bytes | None = None,
          layer_size: int | None = None) -> Path:  # fmt: skip
    """A small bundle: one model, a config and a layer blob; pieces can be replaced."""
    config, layer = b'{"model_format":"gguf"}', b"GGUF" + b"\0" * 60
    if manifest is None:
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "config": {"digest": _sha(config), "size": len(config)},
                "layers": [{"digest": _sha(layer), "size": layer_size or len(layer)}],
            }
        ).encode()
    if index is None:
        index = json.dumps(
            {
                "format": FORMAT,
                "version": 1,
                "models": [
                    {
                        "name": NAME,
                        "manifest": MANIFEST,
                        "digest": _sha(manifest),
                        "size": len(manifest),
                        "blobs": [_sha(config), _sha(layer)],
                    }
                ],
                "blobs": [
                    {"digest": _sha(config), "size": len(config)},
                    {"digest": _sha(layer), "size": len(layer)},
                ],
            }
        ).encode()
    members = [("index.json", index), (MANIFEST, manifest)]
    members += [(f"blobs/{_sha(b).replace(':', '-')}", b) for b in (config, layer)]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
    return path


def test_a_crafted_bundle_is_a_valid_bundle(tmp_path: Path) -> None:
    """The control for the tests below: the unmodified crafted bundle verifies."""
    result = bundle("verify", str(craft(tmp_path / "ok.bundle")))
    assert result.returncode == 0, result.stderr


def _index(**changes) -> bytes:
    data = {"format": FORMAT, "version": 1, "models": [], "blobs": []}
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        (_index(blobs=5), "'blobs' must be a list"),
        (_index(models={"a": 1}), "'models' must be a list"),
        (_index(blobs=[{"digest": "sha256:" + "a" * 64, "size": True}]), "invalid size"),
        (_index(blobs=[{"digest": "sha256:" + "a" * 64 + "\n", "size": 1}]), "invalid blob digest"),
        (b'{"format": "' + FORMAT.encode() + b'", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
         "nested too deeply"),
        (b"[" * 200000, "nested too deeply"),
        (b"\xff\xfe", "index.json is not JSON"),
        (b'"just a string"', "lacks format"),
    ],
    ids=["blobs-int", "models-dict", "bool-size", "digest-newline", "bomb-in-object", "bomb",
         "not-utf8", "string"],
)  # fmt: skip
def test_a_hostile_index_is_not_a_model_bundle(tmp_path: Path, index: bytes, reason: str) -> None:
    path = craft(tmp_path / "hostile.bundle", index=index)
    for command in ("inspect", "verify"):
        result = bundle(command, str(path))
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "is not a model bundle: " in result.stderr
        assert reason in result.stderr


def test_a_manifest_nesting_bomb_is_not_a_model_bundle(tmp_path: Path) -> None:
    path = craft(tmp_path / "bomb.bundle", manifest=b"[" * 200000)
    result = bundle("verify", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "is not a model bundle: the manifest of lab/tiny:1 is nested too deeply" in result.stderr


def test_a_manifest_whose_sizes_disagree_with_the_index_is_refused(tmp_path: Path) -> None:
    path = craft(tmp_path / "liar.bundle", layer_size=4096)
    result = bundle("verify", str(path))
    assert result.returncode == 1
    assert "manifest of lab/tiny:1: blob sha256:" in result.stderr
    assert "has 4096 bytes in the manifest, 64 in the index" in result.stderr


def test_export_into_a_directory_is_refused_before_anything_is_written(
    store: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    target.mkdir()
    result = bundle("export", "deepseek-r1:1.5b", "-o", str(target), "--models-dir", str(store))
    assert result.returncode == 1
    assert f"model-bundle: {target} is a directory: give the bundle's file name" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert list(target.iterdir()) == []
