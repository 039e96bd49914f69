"""localllm.fleet.download against the lab mirror (tests/lab/mirror-server) on 127.0.0.1.

Bytes go to <dest>.part; a slice that runs out of time returns done=false and the next
call resumes with a Range request; the whole file is verified before it is renamed into
place, and a wrong download is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ollama_module_testing import (  # noqa: F401
    answer,
    free_port,
    raw_server,
    routed,
    run,
    slow_server,
    state_home,
)

from ansible_collections.localllm.fleet.plugins.module_utils.digest_cache import DigestCache

pytestmark = pytest.mark.usefixtures("state_home")

SIZE = 3_000_000
RATE = 1.5e6


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    (root / "models").mkdir()
    (root / "models" / "weights.gguf").write_bytes(os.urandom(SIZE))
    return root


def checksum(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def args(url: str, dest: Path, digest: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "dest": str(dest), "checksum": digest, **extra}


def test_download_is_verified_installed_and_then_left_alone(files: Path, tmp_path: Path) -> None:
    source = files / "models" / "weights.gguf"
    dest = tmp_path / "weights.gguf"
    with slow_server(files, "mirror") as mirror:
        task = args(f"{mirror.url}/models/weights.gguf", dest, checksum(source))
        task.update(mode="0640", max_seconds=0)
        result = run("download", task)
        assert result["changed"] is True
        assert result["done"] is True
        assert result["bytes"] == result["total"] == SIZE
        assert result["checksum"] == checksum(source)
        assert result["progress"].startswith("weights.gguf: 3.0 MB of 3.0 MB (100%)")
        assert dest.read_bytes() == source.read_bytes()
        assert stat.S_IMODE(dest.stat().st_mode) == 0o640
        assert not Path(str(dest) + ".part").exists()
        # What was verified is remembered, so ollama_model need not hash it again.
        assert DigestCache().get(str(dest)) == checksum(source)

        requests = len(mirror.ranges)
        again = run("download", task)
        assert again["changed"] is False
        assert again["done"] is True
        assert len(mirror.ranges) == requests  # nothing fetched

        perms = run("download", {**task, "mode": "0600"})
        assert perms["changed"] is True
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        assert len(mirror.ranges) == requests


def test_download_resumes_after_an_interruption(files: Path, tmp_path: Path) -> None:
    source = files / "models" / "weights.gguf"
    dest = tmp_path / "weights.gguf"
    part = Path(str(dest) + ".part")
    with slow_server(files, "mirror", rate=RATE) as mirror:
        task = args(f"{mirror.url}/models/weights.gguf", dest, checksum(source), max_seconds=1)
        first = run("download", task)
        assert first["done"] is False
        assert first["changed"] is True
        assert 0 < first["bytes"] < SIZE
        assert first["total"] == SIZE
        assert re.match(
            r"^weights\.gguf: [\d.]+ (KB|MB) of 3\.0 MB \(\d+%\), [\d.]+ (KB|MB)/s, "
            r"about \d+s left$",
            first["progress"],
        ), first["progress"]
        assert part.stat().st_size == first["bytes"]
        assert not dest.exists()

        # The connection died mid-write: the tail of the .part is lost.
        kept = first["bytes"] // 2
        with open(part, "r+b") as handle:
            handle.truncate(kept)
        rest = run("download", {**task, "max_seconds": 0})
        assert rest["done"] is True
        assert rest["changed"] is True
        assert mirror.ranges[-1] == f"bytes={kept}-"
        assert dest.read_bytes() == source.read_bytes()
        assert not part.exists()


def test_a_server_without_ranges_makes_it_start_over(files: Path, tmp_path: Path) -> None:
    source = files / "models" / "weights.gguf"
    dest = tmp_path / "weights.gguf"
    part = Path(str(dest) + ".part")
    part.write_bytes(b"stale bytes of another attempt")
    with slow_server(files, "plain") as plain:
        result = run(
            "download",
            args(f"{plain.url}/models/weights.gguf", dest, checksum(source), max_seconds=0),
        )
    assert result["done"] is True
    assert dest.read_bytes() == source.read_bytes()


def test_a_corrupt_download_is_rejected_and_deleted(files: Path, tmp_path: Path) -> None:
    source = files / "models" / "weights.gguf"
    dest = tmp_path / "weights.gguf"
    wrong = "sha256:" + "ab" * 32
    with slow_server(files, "mirror") as mirror:
        result = run(
            "download", args(f"{mirror.url}/models/weights.gguf", dest, wrong, max_seconds=0)
        )
    assert result["failed"] is True
    assert f"expected {wrong}, got {checksum(source)}" in result["msg"]
    assert "the download was deleted" in result["msg"]
    assert not dest.exists()
    assert not Path(str(dest) + ".part").exists()


def test_a_wrong_file_at_dest_is_replaced(files: Path, tmp_path: Path) -> None:
    source = files / "models" / "weights.gguf"
    dest = tmp_path / "weights.gguf"
    dest.write_bytes(b"not the weights")
    with slow_server(files, "mirror") as mirror:
        result = run(
            "download",
            args(f"{mirror.url}/models/weights.gguf", dest, checksum(source), max_seconds=0),
        )
    assert result["changed"] is True
    assert "downloading it again" in result["msg"]
    assert dest.read_bytes() == source.read_bytes()


def test_check_mode_fetches_and_writes_nothing(files: Path, tmp_path: Path) -> None:
    source = files / "models" / "weights.gguf"
    dest = tmp_path / "weights.gguf"
    with slow_server(files, "mirror") as mirror:
        result = run(
            "download",
            args(f"{mirror.url}/models/weights.gguf", dest, checksum(source)),
            check=True,
        )
        assert mirror.ranges == []
    assert result["changed"] is True
    assert result["done"] is False
    assert list(tmp_path.iterdir()) == [tmp_path / "remote-home"]


def test_an_unreachable_mirror_is_named(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/models/weights.gguf"
    result = run("download", args(url, tmp_path / "x.gguf", "sha256:" + "0" * 64))
    assert result["failed"] is True
    assert result["msg"] == f"cannot download {url}: connection refused"


@pytest.mark.parametrize(
    ("url", "digest", "message"),
    [
        ("/models/missing.gguf", "sha256:" + "0" * 64, "HTTP 404"),
        ("/models/weights.gguf", "md5:abc", "checksum 'md5:abc' is not a sha256 digest"),
        ("/models/weights.gguf", "sha256:sha256:" + "0" * 64, "is not a sha256 digest"),
    ],
)
def test_bad_input_fails_clearly(
    files: Path, tmp_path: Path, url: str, digest: str, message: str
) -> None:
    with slow_server(files, "mirror") as mirror:
        result = run("download", args(mirror.url + url, tmp_path / "x.gguf", digest))
    assert result["failed"] is True
    assert message in result["msg"]
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize("form", ["bare", "upper"])
def test_the_checksum_may_be_bare_hex_or_any_case(files: Path, tmp_path: Path, form: str) -> None:
    source = files / "models" / "weights.gguf"
    dest = tmp_path / "weights.gguf"
    digest = checksum(source)
    given = digest.removeprefix("sha256:") if form == "bare" else f"  {digest.upper()} "
    with slow_server(files, "mirror") as mirror:
        result = run(
            "download", args(f"{mirror.url}/models/weights.gguf", dest, given, max_seconds=0)
        )
    assert result["done"] is True, result
    assert result["checksum"] == digest
    assert dest.read_bytes() == source.read_bytes()


@contextlib.contextmanager
def range_refusing_server() -> Iterator[str]:
    """A server that answers every GET with 416 and no Content-Range (some proxies do)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("complete", [True, False])
def test_a_416_without_content_range_lets_the_checksum_decide(
    files: Path, tmp_path: Path, complete: bool
) -> None:
    source = files / "models" / "weights.gguf"
    dest = tmp_path / "weights.gguf"
    part = Path(str(dest) + ".part")
    data = source.read_bytes()
    part.write_bytes(data if complete else data[: SIZE // 2])
    with range_refusing_server() as url:
        result = run("download", args(f"{url}/weights.gguf", dest, checksum(source), max_seconds=0))
    if complete:  # the .part was all of it: verified and installed, not deleted
        assert result["done"] is True, result
        assert result["bytes"] == result["total"] == SIZE
        assert dest.read_bytes() == data
    else:  # a wrong .part is still never installed
        assert result["failed"] is True
        assert "checksum mismatch" in result["msg"]
        assert not dest.exists()
    assert not part.exists()


@pytest.mark.controller
def test_the_action_shows_the_progress_of_an_unfinished_download(tmp_path: Path) -> None:
    """Through ansible-playbook: the action plugin marks a `done: false` result to be shown
    at default verbosity, and leaves a finished one to the callback's usual one line."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    there = tmp_path / "there.gguf"
    there.write_bytes(b"already downloaded")
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Finished
      localllm.fleet.download:
        url: http://127.0.0.1:9/there.gguf
        dest: {there}
        checksum: {checksum(there)}
    - name: Unfinished
      localllm.fleet.download:
        url: http://127.0.0.1:9/missing.gguf
        dest: {tmp_path / "missing.gguf"}
        checksum: sha256:{"0" * 64}
"""
    )
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "--check",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    finished = done.stdout.split("TASK [Unfinished]")[0]
    assert "ok: [localhost]" in finished
    assert "present and verified" not in finished
    assert "missing.gguf: would be downloaded from http://127.0.0.1:9/missing.gguf" in done.stdout


# ---------------------------------------------------------------------------- hostile or full


def test_a_checksum_mismatch_reports_the_real_size(files: Path, tmp_path: Path) -> None:
    with slow_server(files, "mirror") as mirror:
        result = run(
            "download",
            args(f"{mirror.url}/models/weights.gguf", tmp_path / "w.gguf", "sha256:" + "0" * 64,
                 max_seconds=0),
        )  # fmt: skip
    assert result["failed"] is True
    assert "(3.0 MB); the download was deleted" in result["msg"]
    assert "(0 B)" not in result["msg"]
    assert result["bytes"] == SIZE


def test_a_relative_dest_is_refused(files: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("download", args("http://127.0.0.1:9/x", Path("x.gguf"), "sha256:" + "0" * 64))
    assert result["failed"] is True
    assert result["msg"] == "dest must be an absolute path, not 'x.gguf'"
    assert list(tmp_path.iterdir()) == [tmp_path / "remote-home"]


def test_no_room_for_the_file_is_said_before_a_byte_is_written(tmp_path: Path) -> None:
    huge = 10**15  # 1 PB announced, a few bytes sent

    def handler(conn, stop, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n0123456789" % huge)

    dest = tmp_path / "big.gguf"
    with raw_server(handler) as url:
        result = run("download", args(f"{url}/big.gguf", dest, "sha256:" + "0" * 64))
    assert result["failed"] is True
    assert re.search(r"^not enough space in .*: big\.gguf needs 1000 TB, [\d.]+ [KMGT]?B free$",
                     result["msg"]), result["msg"]  # fmt: skip
    assert not dest.exists()
    assert not Path(f"{dest}.part").exists()


def test_a_disk_that_fills_up_leaves_no_partial_file(files: Path, tmp_path: Path) -> None:
    """The .part is a link to /dev/full: every write fails with ENOSPC, as on a full disk."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    dest = tmp_path / "weights.gguf"
    part = Path(f"{dest}.part")
    part.symlink_to("/dev/full")
    source = files / "models" / "weights.gguf"
    with slow_server(files, "plain") as mirror:
        result = run(
            "download", args(f"{mirror.url}/models/weights.gguf", dest, checksum(source),
                             max_seconds=0),
        )  # fmt: skip
    assert result["failed"] is True
    assert "the disk filled up while writing" in result["msg"]
    assert "No space left on device" in result["msg"]
    assert not os.path.lexists(part)
    assert not dest.exists()


def test_a_206_from_byte_zero_restarts_cleanly(files: Path, tmp_path: Path) -> None:
    """A server that answers a Range request with 206 from byte 0 (it ignores the range but
    says 206): the download starts over instead of failing on every run."""
    data = (files / "models" / "weights.gguf").read_bytes()

    def handler(conn, stop, request):
        head = b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n" % len(data)
        head += b"Content-Range: bytes 0-%d/%d\r\n\r\n" % (len(data) - 1, len(data))
        conn.sendall(head + data)

    dest = tmp_path / "weights.gguf"
    Path(f"{dest}.part").write_bytes(data[:1000])
    with raw_server(handler) as url:
        digest = checksum(files / "models" / "weights.gguf")
        result = run("download", args(f"{url}/w.gguf", dest, digest, max_seconds=0))
    assert result.get("failed") is not True, result
    assert result["done"] is True
    assert dest.read_bytes() == data


def test_a_redirect_to_another_scheme_is_refused(tmp_path: Path) -> None:
    def handler(conn, stop, request):
        conn.sendall(
            b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1:9/x.gguf\r\nContent-Length: 0\r\n\r\n"
        )

    with raw_server(handler) as url:
        result = run("download", args(f"{url}/x.gguf", tmp_path / "x.gguf", "sha256:" + "0" * 64))
    assert result["failed"] is True
    assert (
        "redirected to ftp://127.0.0.1:9/x.gguf: only http and https are followed" in result["msg"]
    )


def test_http_redirects_are_still_followed(files: Path, tmp_path: Path) -> None:
    source = files / "models" / "weights.gguf"
    with slow_server(files, "mirror") as mirror:

        def handler(conn, stop, request):
            location = f"{mirror.url}/models/weights.gguf".encode()
            conn.sendall(
                b"HTTP/1.1 301 Moved\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
            )

        with raw_server(handler) as url:
            result = run("download", args(f"{url}/old.gguf", tmp_path / "w.gguf", checksum(source),
                                          max_seconds=0))  # fmt: skip
    assert result["done"] is True, result
    assert (tmp_path / "w.gguf").read_bytes() == source.read_bytes()


def test_credentials_in_the_url_never_reach_the_output(files: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://fleet:s3cr%40t@127.0.0.1:{port}/models/weights.gguf"
    result = run("download", args(url, tmp_path / "x.gguf", "sha256:" + "0" * 64))
    assert result["failed"] is True
    assert result["msg"] == (
        f"cannot download http://***@127.0.0.1:{port}/models/weights.gguf: connection refused"
    )
    text = json.dumps(result)
    assert "s3cr" not in text
    assert "fleet:" not in text


@pytest.mark.parametrize("timeout", [0, -5])
def test_a_timeout_below_one_second_is_refused(tmp_path: Path, timeout: int) -> None:
    result = run(
        "download",
        args("http://127.0.0.1:9/x", tmp_path / "x.gguf", "sha256:" + "0" * 64, timeout=timeout),
    )
    assert result["failed"] is True
    assert result["msg"] == f"timeout must be at least 1 second, not {timeout}"
