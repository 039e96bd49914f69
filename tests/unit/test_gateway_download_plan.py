"""fleet_gateway's wheelhouse fetch (tasks_from download.yml) in check mode: on a host new to
the fleet the download directory is only planned (base.yml's directory task reports it would
make it), so the download from the mirror or the push from the control node waits for the
real run instead of failing the plan (get_url refuses a destination directory that does not
exist, even in check mode); once the directory exists, the plan shows the push as a change.
A tarball on the control node is verified against its checksum either way."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from role_testing import REPO, run_task_file

ROLE = REPO / "roles" / "fleet_gateway"

TARBALL = "litellm-1.0.0-abc.tar"


def plan_download(
    tmp_path: Path, dir_planned: bool, *, sha256: str | None = None, source_kind: str = "local"
):
    source = tmp_path / "control" / TARBALL
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"wheels\n")
    digest = sha256 or hashlib.sha256(source.read_bytes()).hexdigest()
    (source.parent / f"{TARBALL}.sha256").write_text(f"{digest}  {TARBALL}\n")
    download_dir = tmp_path / "host" / "wheelhouse"
    if not dir_planned:
        download_dir.mkdir(parents=True)
    variables = {
        "role_path": str(ROLE),
        **(
            {"fleet_gateway_wheelhouse_local": str(source)}
            if source_kind == "local"
            # a mirror nothing answers on: the plan must not need it
            else {
                "fleet_gateway_wheelhouse_url": "http://127.0.0.1:9/wheelhouse",
                "fleet_gateway_wheelhouse_sha256": digest,
            }
        ),
        "fleet_gateway_download_dir": str(download_dir),
        "__fleet_gateway_version": "1.0.0",
        "__fleet_gateway_current_version": "",
        "__fleet_gateway_wheelhouse": {"tarball": TARBALL},
        # what base.yml's directory task registered
        "__fleet_gateway_dirs_made": {"changed": dir_planned},
    }
    # The task file alone: an include_role would run fleet_tls and fleet_haproxy here first.
    run = run_task_file(tmp_path, "fleet_gateway", "download.yml", variables, "--check", "--diff")
    return run, download_dir


@pytest.mark.parametrize("source_kind", ["url", "local"])
def test_a_fresh_host_plan_leaves_the_fetch_to_the_real_run(tmp_path, source_kind):
    run, _ = plan_download(tmp_path, dir_planned=True, source_kind=source_kind)
    assert run.rc == 0, run.out[-4000:]
    assert run.recap()["failed"] == 0
    assert run.recap()["changed"] == 0
    fetch = {
        "url": "Download the wheelhouse, verified against its sha256",
        "local": "Push the wheelhouse from the control node",
    }[source_kind]
    assert run.outcome(fetch) == "skipping"


def test_with_the_directory_there_the_plan_shows_the_push(tmp_path):
    run, download_dir = plan_download(tmp_path, dir_planned=False)
    assert run.rc == 0, run.out[-4000:]
    assert run.outcome("Push the wheelhouse from the control node") == "changed"
    assert list(download_dir.iterdir()) == []  # planned, not pushed


def test_a_tarball_that_is_not_its_checksum_still_stops_the_plan(tmp_path):
    run, _ = plan_download(tmp_path, dir_planned=True, sha256="0" * 64)
    assert run.rc != 0
    assert "the file is corrupt or not this wheelhouse" in " ".join(run.out.split())
