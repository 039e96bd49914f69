"""localllm.fleet.ollama_bundle: import a bundle into a running stand-in's store.

Only the blobs a store lacks are unpacked, each verified while it is written; a bundle with
a corrupt or missing blob leaves the store exactly as it was (files, sizes and times).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from ollama_module_testing import (
    REPO,
    flip_byte,
    run,
    store_from_registry,
    store_snapshot,
)

pytest_plugins = ["standin_fixtures"]

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


@pytest.fixture(scope="module")
def bundle_file(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deepseek-r1:1.5b and deepseek-r1:8b (they share blobs), exported by the script."""
    work = tmp_path_factory.mktemp("bundle")
    store_from_registry(mirror, work / "models", [("deepseek-r1", "1.5b"), ("deepseek-r1", "8b")])
    out = work / "lab.bundle"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "model-bundle"), "export", "deepseek-r1:1.5b",
         "deepseek-r1:8b", "-o", str(out), "-q", "--models-dir", str(work / "models")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return out


def refs(mirror: Path, tag: str) -> dict[str, int]:
    data = json.loads((mirror / "v2/library/deepseek-r1/manifests" / tag).read_bytes())
    return {e["digest"]: e["size"] for e in [data["config"], *data["layers"]]}


def import_(src: Path, models: Path, check: bool = False) -> dict[str, Any]:
    return run(
        "ollama_bundle",
        {"src": str(src), "models_dir": str(models), "owner": OWNER, "group": GROUP},
        check=check,
    )


def names(server: Any) -> list[str]:
    return sorted(m["name"] for m in json.loads(server.request("GET", "/api/tags")[2])["models"])


def test_import_into_a_running_server(server: Any, bundle_file: Path, mirror: Path) -> None:
    wanted = {**refs(mirror, "1.5b"), **refs(mirror, "8b")}
    assert names(server) == []

    result = import_(bundle_file, server.models)
    assert result["changed"] is True
    assert result["models"] == ["deepseek-r1:1.5b", "deepseek-r1:8b"]
    assert result["blobs_added"] == len(wanted)
    assert result["bytes_added"] == sum(wanted.values())
    for digest in wanted:
        blob = server.models / "blobs" / digest.replace(":", "-")
        assert stat.S_IMODE(blob.stat().st_mode) == 0o644
    # No restart: Ollama reads manifests from disk on each request.
    assert names(server) == ["deepseek-r1:1.5b", "deepseek-r1:8b"]
    status, shown = server.post("/api/show", {"model": "deepseek-r1:8b"})
    assert status == 200
    assert shown["details"]["family"] == "qwen3"
    assert not [p for p in (server.models / "blobs").iterdir() if p.name.startswith(".")]

    before = store_snapshot(server.models)
    again = import_(bundle_file, server.models)
    assert again["changed"] is False
    assert again["blobs_added"] == 0
    assert again["blobs_present"] == len(wanted)
    assert store_snapshot(server.models) == before


def test_only_missing_blobs_are_unpacked(bundle_file: Path, mirror: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    store_from_registry(mirror, models, [("deepseek-r1", "1.5b")])
    have, want = refs(mirror, "1.5b"), refs(mirror, "8b")
    missing = {d: s for d, s in want.items() if d not in have}
    assert 0 < len(missing) < len(want)

    # A blob the store already has is not even read: corrupting it in the bundle is harmless.
    corrupt = tmp_path / "partly-corrupt.bundle"
    corrupt.write_bytes(bundle_file.read_bytes())
    shared = next(d for d in want if d in have)
    flip_byte(corrupt, "blobs/" + shared.replace(":", "-"), at=0)

    checked = import_(corrupt, models, check=True)
    assert checked["changed"] is True
    assert checked["models"] == ["deepseek-r1:8b"]
    assert checked["blobs_added"] == len(missing)
    assert checked["bytes_added"] == sum(missing.values())
    assert not (models / "manifests/registry.ollama.ai/library/deepseek-r1/8b").exists()

    result = import_(corrupt, models)
    assert result["changed"] is True
    assert result["models"] == ["deepseek-r1:8b"]
    assert result["blobs_added"] == len(missing)
    assert result["blobs_present"] == len(have)
    manifest = models / "manifests/registry.ollama.ai/library/deepseek-r1/8b"
    assert manifest.read_bytes() == (mirror / "v2/library/deepseek-r1/manifests/8b").read_bytes()


def test_a_corrupt_blob_leaves_the_store_as_it_was(
    bundle_file: Path, mirror: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    store_from_registry(mirror, models, [("deepseek-r1", "1.5b")])
    model_layer = next(iter(refs(mirror, "8b")))  # the config blob is first...
    model_layer = list(refs(mirror, "8b"))[1]  # ...the model layer second
    corrupt = tmp_path / "corrupt.bundle"
    corrupt.write_bytes(bundle_file.read_bytes())
    flip_byte(corrupt, "blobs/" + model_layer.replace(":", "-"))

    before = store_snapshot(models)
    result = import_(corrupt, models)
    assert result["failed"] is True
    assert result["msg"].startswith(
        f"blob {model_layer} of model deepseek-r1:8b is corrupt in the bundle: "
        "its content hashes to sha256:"
    )
    assert store_snapshot(models) == before


def test_a_bundle_without_a_listed_blob_is_refused(
    bundle_file: Path, mirror: Path, tmp_path: Path
) -> None:
    model_layer = list(refs(mirror, "8b"))[1]
    lacking = tmp_path / "lacking.bundle"
    with tarfile.open(bundle_file) as source, tarfile.open(lacking, "w") as target:
        for member in source.getmembers():
            if member.name != "blobs/" + model_layer.replace(":", "-"):
                target.addfile(member, source.extractfile(member))
    models = tmp_path / "models"
    result = import_(lacking, models)
    assert result["failed"] is True
    assert "the bundle lacks blobs its index lists" in result["msg"]
    assert model_layer in result["msg"]
    assert "deepseek-r1:8b" in result["msg"]
    assert not models.exists()  # not even the directories it would have made


@pytest.mark.parametrize("where", ["inside a blob", "between members"])
def test_a_truncated_bundle_is_refused(
    bundle_file: Path, mirror: Path, tmp_path: Path, where: str
) -> None:
    model_layer = list(refs(mirror, "8b"))[1]
    with tarfile.open(bundle_file) as tar:
        member = tar.getmember("blobs/" + model_layer.replace(":", "-"))
    end = member.offset_data + (100 if where == "inside a blob" else -member.offset_data % 512)
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(bundle_file.read_bytes()[: end if where == "inside a blob" else member.offset])
    models = tmp_path / "models"
    models.mkdir()
    result = import_(cut, models)
    assert result["failed"] is True
    if where == "inside a blob":
        assert result["msg"] == f"the bundle ends inside {member.name} (truncated)"
    else:
        assert "it is incomplete or damaged; nothing was imported" in result["msg"]
    assert store_snapshot(models) == {}
    assert list(models.iterdir()) == []


def test_not_a_bundle_and_unknown_owner(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    result = import_(junk, tmp_path / "models")
    assert result["failed"] is True
    assert "is not a" in result["msg"]
    result = run(
        "ollama_bundle",
        {"src": str(junk), "models_dir": str(tmp_path / "m"), "owner": "no-such-user-xyz"},
    )
    assert result["msg"] == (
        "owner 'no-such-user-xyz' does not exist on this host (is Ollama installed?)"
    )


def test_check_mode_before_the_bundle_and_the_user_exist(bundle_file: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    owner = {"owner": "no-such-user-xyz", "group": "no-such-group-xyz"}
    missing = tmp_path / "not-copied-yet.bundle"
    result = run(
        "ollama_bundle", {"src": str(missing), "models_dir": str(models), **owner}, check=True
    )
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["msg"] == f"would import {missing} (not on the host yet)"
    assert (result["models"], result["blobs_added"], result["bytes_added"]) == ([], 0, 0)
    assert result["blobs_present"] == 0

    checked = run(
        "ollama_bundle", {"src": str(bundle_file), "models_dir": str(models), **owner}, check=True
    )
    assert checked["changed"] is True, checked
    assert checked["models"] == ["deepseek-r1:1.5b", "deepseek-r1:8b"]
    assert not models.exists()


def test_hostile_bundles_fail_the_module_with_the_reason(tmp_path: Path) -> None:
    from test_model_bundle import _index, craft

    for name, kwargs, reason in (
        ("blobs-int", {"index": _index(blobs=5)}, "'blobs' must be a list"),
        ("bomb", {"index": b"[" * 200000}, "nested too deeply"),
        ("manifest-bomb", {"manifest": b"[" * 200000}, "nested too deeply"),
        ("liar", {"layer_size": 4096}, "has 4096 bytes in the manifest, 64 in the index"),
    ):
        models = tmp_path / name / "models"
        path = craft(tmp_path / f"{name}.bundle", **kwargs)
        result = import_(path, models)
        assert result.get("failed") is True, result
        assert "is not a model bundle: " in result["msg"]
        assert reason in result["msg"]
        assert not (models / "manifests").exists()
        assert (
            not list((models / "blobs").glob("sha256-*")) if (models / "blobs").exists() else True
        )


@pytest.mark.parametrize("owner", ["\u00b2", "\uff11\uff10\uff10\uff10"])
def test_an_owner_of_non_ascii_digits_is_a_name_not_a_traceback(tmp_path: Path, owner: str) -> None:
    from test_model_bundle import craft

    path = craft(tmp_path / "ok.bundle")
    result = run(
        "ollama_bundle", {"src": str(path), "models_dir": str(tmp_path / "m"), "owner": owner}
    )
    assert result.get("failed") is True
    assert result["msg"] == f"owner {owner!r} does not exist on this host (is Ollama installed?)"
