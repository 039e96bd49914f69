"""localllm.fleet.ollama_pull against the Ollama stand-in and a registry on 127.0.0.1.

A pull is cut into slices of max_seconds: the module disconnects when time is up, Ollama
keeps the partial blob (sha256-<hex>-partial plus its -partial-N bookkeeping, as upstream's
server/download.go does) and the next call resumes with a Range request from where the
last one stopped. The slow registry here sends 1.5 MB/s so that a 6 MB model takes 4 s.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ollama_module_testing import (
    answer,
    api_url,
    free_port,
    publish_model,
    raw_server,
    routed,
    run,
    sha256_hex,
    slow_server,
    state_home,  # noqa: F401 - fixture
    store_listing,
    warning_texts,
    write_gguf,
)
from role_testing import ansible_playbook
from standin_testing import registry

pytest_plugins = ["standin_fixtures"]
pytestmark = pytest.mark.usefixtures("state_home")

RATE = 1.5e6
PROGRESS = re.compile(
    r"^127\.0\.0\.1:\d+/library/big:latest: [\d.]+ MB of 6\.0 MB \(\d+%\), [\d.]+ [KM]B/s, "
    r"about \d+s left$"
)


@pytest.fixture(scope="module")
def big_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("registry")
    gguf = write_gguf(root / "big.gguf", megabytes=6, name="big")
    digest = publish_model(root, "library/big", "latest", gguf)
    gguf.unlink()
    return root, digest


def partial_files(models: Path) -> dict[str, int]:
    return {k: v for k, v in store_listing(models).items() if "-partial" in k}


def stopped_part(models: Path, timeout: float = 10.0) -> int:
    """Bytes the server recorded as done once it has stopped the cancelled download (it
    writes the part bookkeeping when a transfer ends, as upstream does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for part in (models / "blobs").glob("*-partial-0"):
            completed = json.loads(part.read_text() or "{}").get("Completed", 0)
            if completed:
                time.sleep(0.3)  # let the cancelled transfer finish its bookkeeping
                return json.loads(part.read_text())["Completed"]
        time.sleep(0.1)
    raise AssertionError("the server never stopped the interrupted download")


def test_pull_from_a_registry_then_nothing_to_do(server: Any, mirror: Path) -> None:
    with registry(mirror) as port:
        name = f"127.0.0.1:{port}/library/deepseek-r1:1.5b"
        args = {"name": name, "insecure": True, "api_url": api_url(server)}
        assert run("ollama_pull", args, check=True)["changed"] is True
        assert store_listing(server.models) == {}

        pulled = run("ollama_pull", args)
        assert pulled["changed"] is True
        assert pulled["done"] is True
        assert pulled["status"] == "success"
        assert pulled["completed"] == pulled["total"] > 0
        assert pulled["progress"].endswith(", done")
        manifest = (mirror / "v2/library/deepseek-r1/manifests/1.5b").read_bytes()
        assert pulled["digest"] == sha256_hex(manifest)

        again = run("ollama_pull", args)
        assert again["changed"] is False
        assert again["done"] is True
        assert again["status"] == "present"

        refreshed = run("ollama_pull", {**args, "update": True})
        assert refreshed["changed"] is False
        assert refreshed["done"] is True
        assert refreshed["status"] == "success"
        assert refreshed["progress"].endswith("already up to date")


def test_interrupted_pull_resumes_where_it_stopped(
    server: Any, big_registry: tuple[Path, str]
) -> None:
    root, manifest_digest = big_registry
    with slow_server(root, "registry", rate=RATE) as reg:
        name = f"127.0.0.1:{reg.port}/library/big:latest"
        args = {"name": name, "insecure": True, "max_seconds": 1, "api_url": api_url(server)}
        first = run("ollama_pull", args)
        assert first["done"] is False
        assert first["changed"] is True
        assert 0 < first["completed"] < first["total"] == 6000736
        assert PROGRESS.match(first["progress"]), first["progress"]

        # Like upstream: no manifest, the partial blob and its bookkeeping stay.
        completed = stopped_part(server.models)
        assert 0 < completed < 6000736
        assert not list((server.models / "manifests").rglob("latest"))
        time.sleep(1)
        assert stopped_part(server.models) == completed  # it stays stopped

        rest = run("ollama_pull", {**args, "max_seconds": 0})
        assert rest["done"] is True
        assert rest["changed"] is True
        assert rest["digest"] == manifest_digest
        assert f"bytes={completed}-6000735" in reg.ranges  # resumed, not restarted
        assert partial_files(server.models) == {}


def test_pull_errors_carry_ollamas_text_and_the_name(server: Any, mirror: Path) -> None:
    with registry(mirror) as port:
        name = f"127.0.0.1:{port}/library/nope:1"
        failed = run("ollama_pull", {"name": name, "insecure": True, "api_url": api_url(server)})
    assert failed["failed"] is True
    assert failed["msg"] == f"cannot pull {name}: pull model manifest: file does not exist"

    port = free_port()
    name = f"127.0.0.1:{port}/library/x:1"
    failed = run("ollama_pull", {"name": name, "insecure": True, "api_url": api_url(server)})
    assert failed["msg"].startswith(f"cannot pull {name}: pull model manifest: Get ")
    assert failed["msg"].endswith("connect: connection refused")

    failed = run("ollama_pull", {"name": "x", "api_url": f"http://127.0.0.1:{port}"})
    assert failed["msg"] == (
        f"cannot reach Ollama at http://127.0.0.1:{port}: connection refused; "
        "is the service running?"
    )


def test_check_mode_on_a_host_without_ollama_yet_reads_the_store_on_disk(
    tmp_path: Path,
) -> None:
    """A host new to the fleet: the plan (check mode) runs before the real run installs and
    starts Ollama. A model whose manifest is not in the store would be pulled; one whose
    manifest is there is present. Both warn that Ollama could not be asked. Outside check
    mode nothing changes: an Ollama that does not answer is an error."""
    port = free_port()
    store = tmp_path / "models"
    name = "mirror:8080/library/deepseek-r1:1.5b"
    args = {
        "name": name,
        "insecure": True,
        "api_url": f"http://127.0.0.1:{port}",
        "models_dir": str(store),
    }
    warning = (
        f"Ollama does not answer at http://127.0.0.1:{port} (connection refused): in check"
        f" mode {name} is looked for in the model store on disk ({store}); a real run starts"
        " Ollama first"
    )

    missing = run("ollama_pull", args, check=True)
    assert missing.get("failed") is not True, missing
    assert missing["changed"] is True
    assert missing["done"] is False
    assert missing["status"] == "not pulled (check mode)"
    assert missing["progress"] == f"{name}: would be pulled (Ollama does not answer yet)"
    assert warning_texts(missing) == [warning]
    assert not store.exists()  # the plan wrote nothing

    manifest = store / "manifests" / "mirror:8080" / "library" / "deepseek-r1" / "1.5b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    present = run("ollama_pull", args, check=True)
    assert present["changed"] is False
    assert present["done"] is True
    assert present["status"] == "present"
    assert warning_texts(present) == [warning]

    # Another tag of the same model is not it.
    other = run("ollama_pull", {**args, "name": "mirror:8080/library/deepseek-r1:7b"}, check=True)
    assert other["changed"] is True

    real = run("ollama_pull", args)
    assert real["failed"] is True
    assert real["msg"] == (
        f"cannot reach Ollama at http://127.0.0.1:{port}: connection refused; "
        "is the service running?"
    )
    # a task forced into check mode in a real run, only to ask, fails at once as well
    asked = run("ollama_pull", {**args, "plan_without_ollama": False}, check=True)
    assert asked["failed"] is True
    assert asked["msg"] == real["msg"]


def test_progress_shows_on_until_retries_at_default_verbosity(
    server: Any, big_registry: tuple[Path, str], tmp_path: Path
) -> None:
    """Through ansible-playbook: the action plugin marks unfinished results verbose.

    No clock decides the outcome: the registry holds the blob after 2 MB until the module
    comes back (the retry's pull asks for the manifest again), so the first call can never
    finish and the second one always can, however slow the machine is.
    """
    root, manifest_digest = big_registry
    plays = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Pull the big model",
                    "localllm.fleet.ollama_pull": {
                        "name": "{{ model }}",
                        "insecure": True,
                        "max_seconds": 1,
                        "api_url": "{{ api }}",
                    },
                    "register": "pulled",
                    "until": "pulled.done",
                    "retries": 200,
                    "delay": 0,
                },
                {
                    "name": "Show the digest",
                    "ansible.builtin.debug": {
                        "msg": "digest={{ pulled.digest }} changed={{ pulled.changed }}"
                    },
                },
            ],
        }
    ]
    with slow_server(root, "registry", hold_after=2_000_000) as reg:
        played = ansible_playbook(
            tmp_path,
            plays,
            "-e",
            f"model=127.0.0.1:{reg.port}/library/big:latest",
            "-e",
            f"api={api_url(server)}",
            timeout=300,
        )
    out = played.out
    assert played.rc == 0, out
    assert "FAILED - RETRYING: [localhost]: Pull the big model" in out
    # The retry's result is shown: its progress line (its figures depend on how far the
    # server got within the slice; test_interrupted_pull_resumes_where_it_stopped checks them).
    assert re.search(r"progress: '127\.0\.0\.1:\d+/library/big:latest: \S", out), out
    assert f"digest={manifest_digest} changed=True" in out
    assert "Removed unexpected internal key" not in out


def test_nonsense_progress_numbers_are_ignored_not_a_traceback() -> None:
    """Progress numbers Ollama never sends (strings, huge floats, negatives, lists, booleans)
    are ignored; the pull's outcome is still decided by its `success` line."""
    lines = [
        b'{"status":"pulling manifest"}',
        b'{"status":"pulling d","digest":"sha256:d","total":"lots","completed":-5}',
        b'{"status":"pulling d","digest":"sha256:d","total":1e400,"completed":[1]}',
        b'{"status":"pulling d","digest":"sha256:d","total":10,"completed":true}',
        b'{"status":"success"}',
    ]
    after = b'{"models":[{"name":"m:1","digest":"abc","size":"big"}]}'
    tags = iter([b'{"models":[]}', after])

    def tags_before_then_after(conn: Any, stop: Any, request: bytes) -> None:
        answer(next(tags))(conn, stop, request)

    server = routed(
        {
            "/api/tags": tags_before_then_after,
            "/api/pull": answer(b"\n".join(lines) + b"\n", kind="application/x-ndjson"),
        }
    )
    with raw_server(server) as url:
        result = run("ollama_pull", {"name": "m:1", "api_url": url, "max_seconds": 0})
    assert result.get("failed") is not True, result
    assert (result["done"], result["digest"]) == (True, "abc")
    assert result["total"] == 10


@pytest.mark.parametrize("module", ["ollama_pull", "ollama_model", "ollama_info"])
def test_a_timeout_below_one_second_is_refused_by_every_api_module(module: str) -> None:
    args = {"name": "m:1", "timeout": 0, "api_url": "http://127.0.0.1:1"}
    if module == "ollama_model":
        args["modelfile"] = "FROM x\n"
    if module == "ollama_info":
        del args["name"]
    result = run(module, args)
    assert result.get("failed") is True
    assert "timeout must be at least 1 second" in result["msg"]


def test_a_pull_that_cannot_fit_stops_before_it_fills_the_disk(tmp_path: Path) -> None:
    """Ollama announces a 1 PB layer: the module stops the pull at once (closing the stream
    cancels it in Ollama) and says what is needed and what is free."""
    stopped = threading.Event()

    def endless_pull(conn: Any, stop: threading.Event, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n")
        conn.sendall(b'{"status":"pulling manifest"}\n')
        total = 10**15
        completed = 0
        while not stop.is_set():
            line = b'{"status":"pulling d","digest":"sha256:d","total":%d,"completed":%d}\n'
            try:
                conn.sendall(line % (total, completed))
            except OSError:
                stopped.set()  # the module went away
                return
            completed += 1 << 20
            time.sleep(0.05)

    store = tmp_path / "models"
    store.mkdir()
    server = routed({"/api/tags": answer(b'{"models":[]}'), "/api/pull": endless_pull})
    with raw_server(server) as url:
        result = run(
            "ollama_pull",
            {"name": "huge:1", "api_url": url, "max_seconds": 0, "models_dir": str(store)},
        )
        assert stopped.wait(30)
    assert result["failed"] is True
    assert re.match(
        rf"^not enough space in {re.escape(str(store))}: huge:1 needs 1000 TB, ", result["msg"]
    )
