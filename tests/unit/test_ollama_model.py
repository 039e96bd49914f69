"""localllm.fleet.ollama_model against the Ollama stand-in: idempotent by content.

Every test runs the module's real main() as Ansible would (ollama_module_testing.run)
against `ollama serve` from the stand-in's release artifact, on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from ollama_module_testing import (
    api_url,
    free_port,
    run,
    sha256_hex,
    shared_server,  # noqa: F401 - fixture
    state_home,  # noqa: F401 - fixture
    store_snapshot,
    warning_texts,
    write_gguf,
)

from ansible_collections.localllm.fleet.plugins.module_utils import digest_cache

pytest_plugins = ["standin_fixtures"]
pytestmark = pytest.mark.usefixtures("state_home")


def present(server: Any, name: str, modelfile: str, *, check: bool = False, **extra: Any):
    args = {"name": name, "modelfile": modelfile, "api_url": api_url(server), **extra}
    return run("ollama_model", args, check=check, diff=True)


def creates(server: Any) -> int:
    """How many POST /api/create the server has logged, once its log has caught up: the
    log is read from its stderr by a thread, so a sentinel request is made and waited for
    (the server logs requests in order). Bounded, and decided by the log, not a clock."""
    marker = f"/api/sentinel-{len(server.log)}"
    server.request("GET", marker)
    deadline = time.monotonic() + 30
    while not any(marker in line for line in list(server.log)):
        if time.monotonic() > deadline:
            raise AssertionError("the server never logged the sentinel request")
        time.sleep(0.01)
    return "".join(server.log).count('POST    "/api/create"')


def tags(server: Any) -> dict[str, str]:
    data = json.loads(server.request("GET", "/api/tags")[2])
    return {m["name"]: m["digest"] for m in data["models"]}


@pytest.fixture(scope="module")
def base(shared_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    """A base model imported from a GGUF file, with template, system, params and license."""
    work = tmp_path_factory.mktemp("base")
    write_gguf(work / "base.gguf", name="base")
    (work / "Modelfile").write_text(
        "FROM ./base.gguf\n"
        'TEMPLATE """{{ if .System }}<sys>{{ .System }}</sys>{{ end }}{{ .Prompt }}"""\n'
        "SYSTEM You are the base.\n"
        "PARAMETER temperature 0.6\n"
        "PARAMETER top_p 0.95\n"
        'PARAMETER stop "<|end|>"\n'
        'PARAMETER stop "<|user|>"\n'
        "LICENSE base license\n"
    )
    result = run(
        "ollama_model",
        {
            "name": "lab/base:1",
            "modelfile_path": str(work / "Modelfile"),
            "api_url": api_url(shared_server),
        },
    )
    assert result["changed"] is True, result
    return {"dir": work, "digest": result["digest"], "home": Path.home()}


def test_module_scoped_fixtures_write_their_cache_into_a_temporary_home(
    base: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`base` is built before any function-scoped fixture (state_home) runs: HOME must
    already point away from the account's real home directory by then."""
    home = base["home"].resolve()
    assert home != Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()
    assert tmp_path_factory.getbasetemp().resolve() in home.parents
    assert (home / ".cache" / "localllm-fleet" / "sha256.json").is_file()


# ---------------------------------------------------------------------------- idempotence


def test_gguf_import_is_created_once_then_left_alone(server: Any, tmp_path: Path) -> None:
    write_gguf(tmp_path / "m.gguf", name="m")
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM ./m.gguf\nPARAMETER num_ctx 8192\nSYSTEM Be brief.\n")
    args = {"name": "fleet/m", "modelfile_path": str(modelfile), "api_url": api_url(server)}

    checked = run("ollama_model", args, check=True)
    assert checked["changed"] is True
    assert checked["differences"] == ["created"]
    assert store_snapshot(server.models) == {}  # not even the blob was uploaded
    assert not (Path.home() / ".cache").exists()  # nor the digest remembered

    first = run("ollama_model", args)
    assert first["changed"] is True
    assert first["differences"] == ["created"]
    assert first["name"] == "fleet/m:latest"
    assert first["digest"] == tags(server)["fleet/m:latest"]

    before = store_snapshot(server.models)
    second = run("ollama_model", args)
    assert second["changed"] is False
    assert second["differences"] == []
    assert second["digest"] == first["digest"]
    assert store_snapshot(server.models) == before  # not even re-written in place
    assert creates(server) == 1


def test_one_parameter_change_changes_that_model_only(shared_server: Any, base: dict) -> None:  # noqa: F811
    one = "FROM lab/base:1\nPARAMETER temperature 0.6\nPARAMETER num_ctx 4096\n"
    other = "FROM lab/base:1\nPARAMETER num_ctx 2048\n"
    assert present(shared_server, "fleet/one", one)["changed"] is True
    assert present(shared_server, "fleet/other", other)["changed"] is True
    digests = tags(shared_server)

    assert present(shared_server, "fleet/one", one)["changed"] is False
    assert present(shared_server, "fleet/other", other)["changed"] is False

    changed = present(shared_server, "fleet/one", one.replace("0.6", "0.5"))
    assert changed["changed"] is True
    assert changed["differences"] == ["parameter temperature: 0.6 -> 0.5"]
    assert changed["digest"] != digests["fleet/one:latest"]
    assert present(shared_server, "fleet/other", other)["changed"] is False
    after = tags(shared_server)
    assert after["fleet/other:latest"] == digests["fleet/other:latest"]
    assert after["lab/base:1"] == digests["lab/base:1"]


def test_what_the_base_contributes_is_merged_as_ollama_merges_it(
    shared_server: Any,  # noqa: F811
    base: dict,
) -> None:
    # The base's template, system, stop list, top_p and license are inherited; a stop line
    # replaces the base's whole list, a SYSTEM replaces the base's, a LICENSE is appended.
    modelfile = (
        "FROM lab/base:1\n"
        "SYSTEM You are the child.\n"
        'PARAMETER stop "<|eot|>"\n'
        "PARAMETER num_ctx 16384\n"
        "LICENSE child license\n"
        "MESSAGE user hello\n"
        "MESSAGE assistant hi\n"
    )
    created = present(shared_server, "fleet/child", modelfile)
    assert created["changed"] is True
    after = created["diff"]["after"]
    assert "TEMPLATE <sys>" not in after  # the template is quoted (it has no newline)...
    assert "{{ if .System }}<sys>" in after  # ...and it is the base's
    assert "SYSTEM You are the child." in after
    assert "PARAMETER stop <|eot|>\n" in after
    assert "<|user|>" not in after
    assert "PARAMETER top_p 0.95" in after
    assert "PARAMETER temperature 0.6" in after
    shown = json.loads(shared_server.request("POST", "/api/show", {"model": "fleet/child"})[2])
    assert shown["license"] == "base license\nchild license"

    again = present(shared_server, "fleet/child", modelfile)
    assert again["changed"] is False, again["differences"]
    assert again["diff"]["before"] == again["diff"]["after"]

    # Setting what the base already has changes nothing either.
    explicit = modelfile + "PARAMETER top_p 0.95\n"
    assert present(shared_server, "fleet/child", explicit)["changed"] is False


def test_text_values_compare_as_ollama_prints_them(shared_server: Any, base: dict) -> None:  # noqa: F811
    # Values with leading blanks, quotes and newlines go through `ollama show` quoting.
    modelfile = (
        "FROM lab/base:1\n"
        'TEMPLATE """ {{ .Prompt }} said "hi"\n"""\n'
        'SYSTEM """Line one.\nLine "two".\n"""\n'
        "PARAMETER seed 1152921504606846977\n"
        "PARAMETER use_mmap false\n"
    )
    assert present(shared_server, "fleet/quoted", modelfile)["changed"] is True
    again = present(shared_server, "fleet/quoted", modelfile)
    assert again["changed"] is False, again["differences"]


def test_reimport_of_a_non_canonical_gguf_is_skipped(server: Any, tmp_path: Path) -> None:
    # Ollama re-serializes this file on import: the model layer is not the file's digest.
    gguf = write_gguf(tmp_path / "raw.gguf", name="raw", canonical=False)
    args = {
        "name": "fleet/raw",
        "modelfile": "FROM ./raw.gguf\nPARAMETER temperature 0.7\n",
        "base_dir": str(tmp_path),
        "api_url": api_url(server),
    }
    first = run("ollama_model", args)
    assert first["changed"] is True
    shown = json.loads(server.request("POST", "/api/show", {"model": "fleet/raw"})[2])
    assert sha256_hex(gguf.read_bytes()) not in shown["modelfile"]

    second = run("ollama_model", args)
    assert second["changed"] is False
    assert creates(server) == 1

    # Without the remembered import (a new control user, a wiped cache) the module cannot
    # predict the re-serialized digest: it creates again, sees the manifest did not
    # change, and says so.
    shutil.rmtree(Path.home() / ".cache")
    third = run("ollama_model", args)
    assert third["changed"] is False
    assert third["differences"] == []
    assert third["digest"] == first["digest"]
    assert creates(server) == 2
    assert run("ollama_model", args)["changed"] is False


def test_a_model_with_a_lost_blob_is_repaired(shared_server: Any, base: dict) -> None:  # noqa: F811
    modelfile = "FROM lab/base:1\nSYSTEM Repair me.\n"
    present(shared_server, "fleet/broken", modelfile)
    shown = json.loads(shared_server.request("POST", "/api/show", {"model": "fleet/broken"})[2])
    system_blob = shared_server.models / "blobs" / ("sha256-" + sha256_hex(b"Repair me."))
    assert system_blob.exists() and shown["system"] == "Repair me."
    system_blob.unlink()
    assert shared_server.request("POST", "/api/show", {"model": "fleet/broken"})[0] == 500

    repaired = present(shared_server, "fleet/broken", modelfile)
    assert repaired["changed"] is True
    assert repaired["differences"][0].startswith(
        "repaired: Ollama cannot read the registered model (open "
    )
    assert system_blob.exists()
    assert present(shared_server, "fleet/broken", modelfile)["changed"] is False


def test_big_files_are_hashed_once(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_gguf(tmp_path / "h.gguf", name="h")
    args = {
        "name": "fleet/h",
        "modelfile_path": str(tmp_path / "Modelfile"),
        "api_url": api_url(server),
    }
    (tmp_path / "Modelfile").write_text("FROM ./h.gguf\n")
    hashed: list[str] = []
    real = digest_cache.sha256_file

    def counting(path: str, progress: Any = None) -> str:
        hashed.append(path)
        return real(path, progress)

    monkeypatch.setattr(digest_cache, "sha256_file", counting)
    assert run("ollama_model", args)["changed"] is True
    assert len(hashed) == 1
    assert run("ollama_model", args)["changed"] is False
    assert len(hashed) == 1  # remembered by device, inode, size and times
    (tmp_path / "h.gguf").touch()
    assert run("ollama_model", args)["changed"] is False
    assert len(hashed) == 2  # touched: hashed again (same content, so nothing to do)


# ---------------------------------------------------------------------------- check and diff


def test_check_mode_writes_nothing(shared_server: Any, base: dict) -> None:  # noqa: F811
    modelfile = "FROM lab/base:1\nPARAMETER temperature 0.3\n"
    before = store_snapshot(shared_server.models)
    created = present(shared_server, "fleet/checked", modelfile, check=True)
    assert created["changed"] is True
    assert created["differences"] == ["created"]
    assert created["digest"] is None
    assert created["diff"]["before"] == ""
    assert "PARAMETER temperature 0.3" in created["diff"]["after"]
    assert store_snapshot(shared_server.models) == before

    assert present(shared_server, "fleet/checked", modelfile)["changed"] is True
    before = store_snapshot(shared_server.models)
    update = present(shared_server, "fleet/checked", modelfile.replace("0.3", "0.4"), check=True)
    assert update["changed"] is True
    assert update["differences"] == ["parameter temperature: 0.3 -> 0.4"]
    assert "PARAMETER temperature 0.3" in update["diff"]["before"]
    assert "PARAMETER temperature 0.4" in update["diff"]["after"]
    removal = run(
        "ollama_model",
        {"name": "fleet/checked", "state": "absent", "api_url": api_url(shared_server)},
        check=True,
    )
    assert removal["changed"] is True
    assert removal["differences"] == ["deleted"]
    assert store_snapshot(shared_server.models) == before
    unchanged = present(shared_server, "fleet/checked", modelfile, check=True)
    assert unchanged["changed"] is False


def test_diff_shows_the_model_before_and_after(shared_server: Any, base: dict) -> None:  # noqa: F811
    first = "FROM lab/base:1\nPARAMETER num_predict 128\n"
    present(shared_server, "fleet/diffed", first)
    result = present(shared_server, "fleet/diffed", first + "SYSTEM Answer in French.\n")
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert result["differences"] == [
        'system: "You are the base." -> "Answer in French."',
    ]
    assert before.splitlines()[0] == after.splitlines()[0] == "FROM lab/base:1"
    assert "SYSTEM You are the base." in before
    assert "SYSTEM Answer in French." in after
    assert [line for line in after.splitlines() if line not in before.splitlines()] == [
        "SYSTEM Answer in French."
    ]


# ---------------------------------------------------------------------------- removal


def test_absent_removes_the_model_once(shared_server: Any, base: dict) -> None:  # noqa: F811
    present(shared_server, "fleet/gone", "FROM lab/base:1\n")
    args = {"name": "fleet/gone", "state": "absent", "api_url": api_url(shared_server)}
    first = run("ollama_model", args)
    assert first["changed"] is True
    assert "fleet/gone:latest" not in tags(shared_server)
    assert "lab/base:1" in tags(shared_server)
    assert run("ollama_model", args)["changed"] is False


def test_absent_removes_a_model_with_a_lost_blob(shared_server: Any, base: dict) -> None:  # noqa: F811
    present(shared_server, "fleet/lost", "FROM lab/base:1\nSYSTEM Lose me.\n")
    (shared_server.models / "blobs" / ("sha256-" + sha256_hex(b"Lose me."))).unlink()
    assert shared_server.request("POST", "/api/show", {"model": "fleet/lost"})[0] == 500
    args = {"name": "fleet/lost", "state": "absent", "api_url": api_url(shared_server)}

    checked = run("ollama_model", args, check=True, diff=True)
    assert (checked["changed"], checked["differences"]) == (True, ["deleted"])
    assert "fleet/lost:latest" in tags(shared_server)
    removed = run("ollama_model", args, diff=True)
    assert removed["changed"] is True
    assert removed["differences"] == ["deleted"]
    assert removed["diff"] == {"before": "", "after": ""}
    assert "fleet/lost:latest" not in tags(shared_server)
    assert "lab/base:1" in tags(shared_server)
    assert run("ollama_model", args)["changed"] is False


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("modelfile", "message"),
    [
        ("FROM lab/base:1\nPARAMETER temperature hot\n", "invalid float value [hot]"),
        ("FROM lab/base:1\nPARAMETER num_ctx big\n", "invalid int value [big]"),
        ("FROM lab/base:1\nPARAMETER colour blue\n", "unknown parameter 'colour'"),
        ("PARAMETER temperature 1\n", "no FROM line"),
        (
            "FROM lab/base:1\nMESSAGE robot hi\n",
            '(line 2): message role must be one of "system", "user", or "assistant"',
        ),
    ],
)
def test_invalid_modelfile_fails_with_ollamas_text(
    shared_server: Any,  # noqa: F811
    base: dict,
    modelfile: str,
    message: str,
) -> None:
    before = store_snapshot(shared_server.models)
    result = present(shared_server, "fleet/bad", modelfile)
    assert result["failed"] is True
    assert result["msg"] == message
    assert store_snapshot(shared_server.models) == before


def test_missing_base_is_named(shared_server: Any) -> None:  # noqa: F811
    result = present(shared_server, "fleet/orphan", "FROM deepseek-r1:671b\n")
    assert result["failed"] is True
    assert result["msg"] == (
        "base model 'deepseek-r1:671b' is not on this host: pull or import it first"
    )


def test_check_mode_predicts_a_creation_whose_base_is_still_to_be_fetched(
    shared_server: Any,  # noqa: F811
) -> None:
    before = store_snapshot(shared_server.models)
    result = present(shared_server, "fleet/later", "FROM deepseek-r1:671b\n", check=True)
    assert result.get("failed") is not True
    assert result["changed"] is True
    assert result["differences"] == [
        "created: its base deepseek-r1:671b is not on this host yet (a real run fetches it first)"
    ]
    assert store_snapshot(shared_server.models) == before


def test_missing_file_and_relative_paths_are_explained(shared_server: Any, tmp_path: Path) -> None:  # noqa: F811
    result = present(shared_server, "fleet/x", "FROM ./nowhere.gguf\n")
    assert result["failed"] is True
    assert "FROM ./nowhere.gguf is neither a model name nor an absolute path" in result["msg"]
    result = present(shared_server, "fleet/x", "FROM ./nowhere.gguf\n", base_dir=str(tmp_path))
    assert result["msg"] == (
        f"FROM ./nowhere.gguf: no file {tmp_path}/nowhere.gguf and not a valid model name either"
    )
    result = present(shared_server, "fleet/x", "FROM lab/base:1\nADAPTER ./lora.gguf\n")
    assert "ADAPTER ./lora.gguf is a relative path: give base_dir" in result["msg"]


def test_server_down_is_named(tmp_path: Path) -> None:
    port = free_port()
    result = run(
        "ollama_model",
        {"name": "fleet/x", "modelfile": "FROM x\n", "api_url": f"http://127.0.0.1:{port}"},
    )
    assert result["failed"] is True
    assert result["msg"] == (
        f"cannot reach Ollama at http://127.0.0.1:{port}: connection refused; "
        "is the service running?"
    )


def test_check_mode_on_a_host_without_ollama_yet_predicts_the_registration() -> None:
    """A host new to the fleet: a plan (check mode) runs before the real run installs and
    starts Ollama. The module predicts the model registered from its Modelfile and warns
    that it could not ask Ollama; a real run against the same host still fails."""
    port = free_port()
    args = {
        "name": "fleet/new",
        "modelfile": "FROM mirror:8080/library/deepseek-r1:1.5b\nPARAMETER temperature 0.6\n",
        "api_url": f"http://127.0.0.1:{port}",
    }
    planned = run("ollama_model", args, check=True, diff=True)
    assert planned.get("failed") is not True, planned
    assert planned["changed"] is True
    assert planned["digest"] is None
    assert planned["diff"]["before"] == ""
    assert "FROM mirror:8080/library/deepseek-r1:1.5b" in planned["diff"]["after"]
    assert "PARAMETER temperature 0.6" in planned["diff"]["after"]
    assert planned["differences"] == [
        "registered unless Ollama already holds the same: Ollama does not answer"
        " (connection refused)"
    ]
    assert warning_texts(planned) == [
        f"Ollama does not answer at http://127.0.0.1:{port} (connection refused): in check mode"
        " fleet/new:latest cannot be compared with what Ollama holds; the plan shows it"
        " registered from this Modelfile (a real run starts Ollama first)"
    ]

    real = run("ollama_model", args)
    assert real["failed"] is True
    assert real["msg"].startswith(f"cannot reach Ollama at http://127.0.0.1:{port}")


def test_deprecated_parameters_warn(shared_server: Any, base: dict) -> None:  # noqa: F811
    result = present(shared_server, "fleet/old", "FROM lab/base:1\nPARAMETER mirostat 1\n")
    assert result["changed"] is True
    assert warning_texts(result) == ["parameter mirostat is deprecated"]


def test_ollamas_own_errors_are_passed_on(shared_server: Any, base: dict) -> None:  # noqa: F811
    result = present(shared_server, "fleet/tmpl", "FROM lab/base:1\nTEMPLATE {{ .Prompt\n")
    assert result["failed"] is True
    assert result["msg"].startswith("fleet/tmpl: template error: ")


# ---------------------------------------------------------------------------- what is uploaded


def blobs(server: Any) -> set[str]:
    return {p.name for p in (server.models / "blobs").glob("sha256-*")}


@pytest.mark.parametrize("keyword", ["FROM", "ADAPTER", "DRAFT"])
def test_a_file_that_is_not_a_model_is_never_uploaded(
    server: Any, tmp_path: Path, keyword: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root-password: hunter2\n")
    secret.chmod(0o600)
    write_gguf(tmp_path / "base.gguf", name="leak-base")  # a real model beside the secret
    lines = {"FROM": f"FROM {secret}\n", "ADAPTER": f"FROM ./base.gguf\nADAPTER {secret}\n"}
    lines["DRAFT"] = f"FROM ./base.gguf\nDRAFT {secret}\n"
    result = present(server, "fleet/leak", lines[keyword], base_dir=str(tmp_path))
    assert result["failed"] is True
    assert result["msg"] == (
        f"{keyword} {secret} is not a GGUF or safetensors model file; nothing was uploaded"
    )
    assert "hunter2" not in json.dumps(result)
    assert f"sha256-{sha256_hex(secret.read_bytes())}" not in blobs(server)
    assert blobs(server) == set()


def test_etc_passwd_is_not_a_model(server: Any, tmp_path: Path) -> None:
    result = present(server, "fleet/passwd", "FROM /etc/passwd\n", base_dir=str(tmp_path))
    assert result["failed"] is True
    assert "FROM /etc/passwd is not a GGUF or safetensors model file" in result["msg"]
    assert blobs(server) == set()


def test_blobs_a_failed_create_uploaded_are_removed(server: Any, tmp_path: Path) -> None:
    write_gguf(tmp_path / "m.gguf", name="failing")
    modelfile = "FROM ./m.gguf\nTEMPLATE {{ .Prompt\n"  # the server refuses the template
    result = present(
        server, "fleet/broken", modelfile, base_dir=str(tmp_path), models_dir=str(server.models)
    )
    assert result["failed"] is True
    assert "template error" in result["msg"]
    assert f"sha256-{sha256_hex((tmp_path / 'm.gguf').read_bytes())}" not in blobs(server)
    assert blobs(server) == set()


def test_without_the_store_a_failed_create_says_what_it_left(server: Any, tmp_path: Path) -> None:
    write_gguf(tmp_path / "m.gguf", name="failing2")
    result = present(server, "fleet/broken", "FROM ./m.gguf\nTEMPLATE {{ .Prompt\n",
                     base_dir=str(tmp_path))  # fmt: skip
    assert result["failed"] is True
    assert "1 uploaded blob stays in the store until Ollama prunes it" in result["msg"]


def test_no_room_in_the_store_is_said_before_the_upload(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's file system has 1000 bytes free (as the module reads it): the import,
    which needs the file once uploaded and once re-serialized, is refused before upload."""
    from ansible_collections.localllm.fleet.plugins.module_utils import progress

    write_gguf(tmp_path / "m.gguf", name="big-one")
    size = (tmp_path / "m.gguf").stat().st_size
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setattr(progress, "free_bytes", lambda path: 1000)
    result = present(
        server, "fleet/huge", "FROM ./m.gguf\n", base_dir=str(tmp_path), models_dir=str(store)
    )
    assert result["failed"] is True
    assert result["msg"] == (
        f"not enough space in {store}: fleet/huge:latest needs "
        f"{progress.human_bytes(2 * size)}, 1.0 KB free"
    )
    assert blobs(server) == set()


def test_a_template_claiming_what_the_base_lacks_is_refused_naming_it(
    shared_server: Any,  # noqa: F811
    base: dict,
) -> None:
    tools = 'FROM lab/base:1\nTEMPLATE """{{ if .Tools }}T{{ end }}{{ .Prompt }}"""\n'
    result = present(shared_server, "fleet/claims", tools)
    assert result["failed"] is True
    assert result["msg"] == (
        "the TEMPLATE claims tools which the base lab/base:1 does not have (its capabilities: "
        "completion): use a template without it, or a base that has it"
    )
    assert "fleet/claims:latest" not in tags(shared_server)


def test_a_template_that_drops_a_capability_of_the_base_is_warned_about(
    shared_server: Any,  # noqa: F811
    base: dict,
    tmp_path: Path,
) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text('FROM lab/base:1\nTEMPLATE """{{ if .Tools }}T{{ end }}{{ .Prompt }}"""\n')
    assert shared_server.run("create", "lab/tooly:1", "-f", str(modelfile)).code == 0

    def template_warnings(result: dict) -> list[str]:
        texts = [w if isinstance(w, str) else w["event"]["msg"] for w in result.get("warnings", [])]
        return [t for t in texts if "TEMPLATE" in t]

    inherits = present(shared_server, "fleet/tooly", "FROM lab/tooly:1\nPARAMETER top_k 7\n")
    assert inherits["changed"] is True and template_warnings(inherits) == []
    drops = present(shared_server, "fleet/dropped", 'FROM lab/tooly:1\nTEMPLATE "{{ .Prompt }}"\n')
    assert template_warnings(drops) == [
        "the TEMPLATE drops tools that the base lab/tooly:1 has: clients lose it on this model"
    ]
