"""Upgrade, downgrade, rollback, integrity, bad input and removal on one host, in order.

Each step runs the role through ansible-playbook (lab_checks.run_playbook) the way an
operator would, then looks at the host. The tests depend on their order (pytest keeps the
file's order): they walk one installation through its life.
"""

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from lab_checks import run_playbook, write_tiny_gguf

A, B, BROKEN, OTHER = "0.13.5", "0.32.15", "0.32.16", "0.31.4"
HOST = "ollama-lifecycle"
MODEL = "lifecycle-probe"
INSTALL_PATHS = (
    "/opt/ollama /usr/local/bin/ollama /etc/systemd/system/ollama.service "
    "/etc/systemd/system/ollama.service.d"
)


def api_version(host) -> str:
    return json.loads(host.check_output("curl -fsS http://127.0.0.1:11434/api/version"))["version"]


def model_names(host) -> list[str]:
    tags = json.loads(host.check_output("curl -fsS http://127.0.0.1:11434/api/tags"))
    return sorted(m["name"] for m in tags["models"])


def install_snapshot(host) -> str:
    """Every path, link target, size and mtime under the install paths."""
    return host.check_output(
        f"find {INSTALL_PATHS} -printf '%p %l %s %T@\\n' 2>/dev/null | sort | sha256sum"
    )


def converge(**extra_vars):
    return run_playbook("converge.yml", extra_vars=extra_vars)


def assert_refused(run, *phrases):
    assert run.rc != 0, run.output[-3000:]
    for phrase in phrases:
        assert phrase in run.output, run.output[-3000:]


@pytest.fixture(scope="module")
def tiny_gguf():
    with tempfile.TemporaryDirectory() as tmp:
        yield write_tiny_gguf(Path(tmp) / "tiny.gguf")


def test_a_installed_from_a_tgz_release(host):
    assert api_version(host) == A
    assert host.file(f"/var/cache/localllm-fleet/ollama/{A}/ollama-linux-amd64.tgz").exists


def test_a_model_is_created(host, tiny_gguf):
    subprocess.run(["podman", "cp", str(tiny_gguf), f"{HOST}:/tmp/tiny.gguf"], check=True)
    host.check_output(
        "printf 'FROM /tmp/tiny.gguf\\nPARAMETER temperature 0.2\\n' > /tmp/Modelfile"
    )
    host.check_output(f"ollama create {MODEL} -f /tmp/Modelfile")
    assert f"{MODEL}:latest" in model_names(host)


def test_check_mode_predicts_an_upgrade_without_making_it(host):
    before = install_snapshot(host)
    run = run_playbook("converge.yml", extra_vars={"ollama_version": B}, check=True)
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() > 0, run.output[-3000:]
    assert install_snapshot(host) == before
    assert api_version(host) == A


def test_upgrade_a_to_b_keeps_the_model(host):
    run = converge(ollama_version=B)
    assert run.rc == 0, run.output[-3000:]
    assert api_version(host) == B
    assert f"{MODEL}:latest" in model_names(host)
    assert host.file("/opt/ollama/previous").linked_to == f"/opt/ollama/versions/{A}"


def test_downgrade_b_to_a_keeps_the_model(host):
    run = converge(ollama_version=A)
    assert run.rc == 0, run.output[-3000:]
    assert api_version(host) == A
    assert f"{MODEL}:latest" in model_names(host)


def test_broken_release_is_rolled_back_and_the_play_fails(host):
    assert converge(ollama_version=B).rc == 0
    run = converge(ollama_version=BROKEN)
    assert_refused(run, f"Ollama {BROKEN} did not answer", f"Rolled back to {B}")
    assert api_version(host) == B
    assert host.file("/opt/ollama/current").linked_to == f"/opt/ollama/versions/{B}"
    assert f"{MODEL}:latest" in model_names(host)


def test_versions_beyond_the_kept_ones_leave_with_their_artifacts(host):
    assert converge(ollama_version=B).rc == 0  # after the rollback: prune runs again
    versions = set(host.check_output("ls /opt/ollama/versions").split())
    cached = set(host.check_output("ls /var/cache/localllm-fleet/ollama").split())
    assert len(versions) == 2 and B in versions, versions  # ollama_keep_versions: 2
    assert cached == versions


def test_checksum_mismatch_changes_nothing(host):
    before = install_snapshot(host)
    run = converge(ollama_version=OTHER, ollama_checksum="0" * 64)
    assert_refused(run, "did not match")
    assert install_snapshot(host) == before
    assert api_version(host) == B


def test_missing_release_changes_nothing(host):
    before = install_snapshot(host)
    run = converge(ollama_version="0.99.0")
    assert_refused(run, "no such release (HTTP 404)", "0.99.0")
    assert install_snapshot(host) == before


def test_wrong_version_string_changes_nothing(host):
    before = install_snapshot(host)
    run = converge(ollama_version="latest")
    assert_refused(run, "ollama_version 'latest' is not a release version")
    assert install_snapshot(host) == before


def test_unreachable_mirror_changes_nothing(host):
    before = install_snapshot(host)
    run = converge(ollama_version=OTHER, ollama_download_base_url="http://mirror:9/ollama")
    assert_refused(run, "the mirror did not answer")
    assert install_snapshot(host) == before
    assert api_version(host) == B


def test_port_taken_changes_nothing(host):
    before = install_snapshot(host)
    host.check_output(
        "systemd-run --unit lifecycle-squatter python3 -m http.server 11500 --bind 127.0.0.1"
    )
    try:
        host.check_output("sleep 1")
        run = converge(ollama_host="127.0.0.1:11500")
    finally:
        host.run("systemctl stop lifecycle-squatter")
    assert_refused(run, "Port 11500", "already in use")
    assert install_snapshot(host) == before
    assert api_version(host) == B


def test_full_disk_changes_nothing(host):
    before = install_snapshot(host)
    host.check_output("mkdir -p /mnt/tiny && mount -t tmpfs -o size=64k tmpfs /mnt/tiny")
    try:
        run = converge(ollama_version=OTHER, ollama_install_root="/mnt/tiny/ollama")
    finally:
        host.run("umount /mnt/tiny")
    assert_refused(run, "Not enough disk", "/mnt/tiny")
    assert install_snapshot(host) == before
    assert api_version(host) == B


def test_absent_removes_everything_but_the_models(host):
    run = converge(ollama_state="absent")
    assert run.rc == 0, run.output[-3000:]
    for path in (
        "/opt/ollama",
        "/usr/local/bin/ollama",
        "/etc/systemd/system/ollama.service",
        "/etc/systemd/system/ollama.service.d",
    ):
        assert not host.file(path).exists, path
    assert not host.user("ollama").exists
    assert host.run("curl -fsS http://127.0.0.1:11434/").rc != 0
    manifests = "/usr/share/ollama/.ollama/models/manifests/registry.ollama.ai/library"
    assert host.file(f"{manifests}/{MODEL}/latest").exists


def test_absent_again_changes_nothing(host):
    run = converge(ollama_state="absent")
    assert run.rc == 0 and run.changed() == 0, run.output[-3000:]


def test_absent_with_remove_models_deletes_the_store(host):
    run = converge(ollama_state="absent", ollama_remove_models=True)
    assert run.rc == 0, run.output[-3000:]
    assert not host.file("/usr/share/ollama").exists


def test_check_mode_on_a_fresh_host_predicts_the_install(host):
    run = run_playbook("converge.yml", extra_vars={"ollama_version": B}, check=True)
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() > 0, run.output[-3000:]
    for path in ("/opt/ollama", "/usr/local/bin/ollama", "/etc/systemd/system/ollama.service"):
        assert not host.file(path).exists, path
    assert not host.user("ollama").exists
