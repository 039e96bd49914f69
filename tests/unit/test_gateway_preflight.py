"""fleet_gateway's preflight and plan (tasks/preflight.yml, tasks/plan.yml): everything that
could stop the gateway, checked before the host changes, in few steps (its play runs on one
host while the others wait). One check names every problem of the settings and facts,
another every problem of the host (the fleet TLS material, the interpreter the lock was made
for); then what is installed is recorded. Run on localhost with the facts of a Debian 12
host given, an interpreter stand-in that reports a version, and the TLS directory and
install root in the test's directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from role_testing import REPO, run_task_file

pytestmark = pytest.mark.controller  # ansible-playbook runs the role's task file

LOCK = REPO / "roles" / "fleet_gateway" / "files" / "litellm.lock"
DEBIAN = {
    "service_mgr": "systemd",
    "distribution": "Debian",
    "distribution_version": "12.8",
    "distribution_major_version": "12",
    "architecture": "x86_64",
}


def wheelhouse_id() -> str:
    from ansible_collections.localllm.fleet.plugins.module_utils.wheelhouse import wheelhouse_id

    return wheelhouse_id(LOCK.read_text())


def python_reporting(tmp_path: Path, version: str) -> Path:
    """An interpreter stand-in: answers the version question with `version`."""
    tool = tmp_path / f"python-{version or 'broken'}"
    body = (
        f"echo {version}" if version else "echo 'cannot execute: Exec format error' >&2; exit 126"
    )
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return tool


def host(tmp_path: Path, *, tls: tuple[str, ...] = ("ca.pem", "host.crt", "host.key"),
         installed: bool = True) -> dict:  # fmt: skip
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    for name in tls:
        (tls_dir / name).write_text("x\n")
    root = tmp_path / "litellm"
    if installed:
        version = root / "versions" / wheelhouse_id()
        version.mkdir(parents=True)
        (version / ".localllm-complete").write_text("")
        (root / "current").symlink_to(f"versions/{wheelhouse_id()}")
    return {"fleet_tls_dir": str(tls_dir), "fleet_gateway_install_root": str(root)}


def nothing_installed() -> dict:
    """What the preflight records on a host without the locked version in service."""
    return {"version": wheelhouse_id(), "current": "", "previous": "", "installed": False}


def preflight(tmp_path: Path, settings: dict, *args: str, facts: dict | None = None):
    out = tmp_path / "recorded.json"
    show = {
        "ansible.builtin.copy": {
            "content": (
                "{{ {'version': __fleet_gateway_version,"
                " 'current': __fleet_gateway_current_version,"
                " 'previous': __fleet_gateway_previous_version,"
                " 'installed': __fleet_gateway_target_installed} | to_json }}"
            ),
            "dest": str(out),
            "mode": "0600",
        },
        "check_mode": False,
    }
    run = run_task_file(
        tmp_path,
        "fleet_gateway",
        "preflight.yml",
        {"role_path": str(REPO / "roles" / "fleet_gateway"), **settings},
        *args,
        after=[show],
        facts=facts or DEBIAN,
    )
    return run, (json.loads(out.read_text()) if out.exists() else None)


def flat(run) -> str:
    return " ".join(run.out.split())


def test_a_converged_gateway_passes_and_its_install_is_recorded(tmp_path):
    settings = {**host(tmp_path), "fleet_gateway_python": str(python_reporting(tmp_path, "3.11.2"))}
    run, recorded = preflight(tmp_path, settings)
    assert run.rc == 0, run.out[-4000:]
    assert recorded == {
        "version": wheelhouse_id(),
        "current": wheelhouse_id(),
        "previous": wheelhouse_id(),
        "installed": True,
    }
    assert (
        run.outcome(
            "Say when the patch level differs from the lock's (environment markers may differ)"
        )
        == "skipping"
    )


def test_a_fresh_gateway_has_nothing_installed_and_hears_about_the_patch_level(tmp_path):
    settings = {
        **host(tmp_path, installed=False),
        "fleet_gateway_python": str(python_reporting(tmp_path, "3.11.9")),
    }
    run, recorded = preflight(tmp_path, settings)
    assert run.rc == 0, run.out[-4000:]
    assert recorded == nothing_installed()
    assert "was resolved with Python 3.11.2 and this host has 3.11.9" in flat(run)


def test_every_problem_of_the_settings_and_facts_is_named_at_once(tmp_path):
    settings = {
        **host(tmp_path),
        "fleet_gateway_python": str(python_reporting(tmp_path, "3.11.2")),
        "fleet_gateway_tls_cert_src": "/etc/ssl/endpoint.pem",
    }
    facts = {**DEBIAN, "service_mgr": "openrc", "distribution": "Alpine",
             "distribution_major_version": "3", "architecture": "aarch64"}  # fmt: skip
    run, recorded = preflight(tmp_path, settings, facts=facts)
    assert run.rc != 0
    text = flat(run)
    assert "localhost is managed by openrc, not systemd" in text
    assert "Alpine 3 is not supported. Tested: Debian 12" in text
    assert "The role's lock is resolved for x86_64 and this host is aarch64" in text
    assert "Set both fleet_gateway_tls_cert_src and fleet_gateway_tls_key_src" in text
    assert "Nothing was changed." in text
    # Stopped before the host was read.
    assert recorded is None
    assert "Look at the fleet TLS material" not in run.out


def test_every_problem_of_the_host_is_named_at_once(tmp_path):
    settings = {
        **host(tmp_path, tls=("ca.pem",)),
        "fleet_gateway_python": str(python_reporting(tmp_path, "3.12.1")),
    }
    run, recorded = preflight(tmp_path, settings)
    assert run.rc != 0
    text = flat(run)
    assert "lacks host.crt and host.key: the gateway needs the fleet CA" in text
    assert "is 3.12.1, and" in text and "is for Python 3.11: lock for this host's Python" in text
    assert recorded is None


def test_an_interpreter_that_does_not_run_is_named(tmp_path):
    settings = {**host(tmp_path), "fleet_gateway_python": str(python_reporting(tmp_path, ""))}
    run, _ = preflight(tmp_path, settings)
    assert run.rc != 0
    assert "is not runnable (cannot execute: Exec format error)" in flat(run)
    assert "lacks" not in flat(run)


def test_a_plan_does_not_require_the_tls_material_fleet_tls_only_planned(tmp_path):
    settings = {
        **host(tmp_path, tls=(), installed=False),
        "fleet_gateway_python": str(python_reporting(tmp_path, "3.11.2")),
    }
    run, recorded = preflight(tmp_path, settings, "--check")
    assert run.rc == 0, run.out[-4000:]
    assert recorded == nothing_installed()
    # A real run refuses the same host.
    run, _ = preflight(tmp_path, settings)
    assert run.rc != 0
    assert "lacks ca.pem and host.crt and host.key" in flat(run)


# The plan (tasks/plan.yml): the plan, then the facts the role, the report and the firewall
# read, then one notice with what deserves one.

PLAN_SHOW = {
    "ansible.builtin.copy": {
        "content": (
            "{{ {'clients': __fleet_gateway_client_summary | map(attribute='name') | list,"
            " 'serving': fleet_gateway_serving is defined,"
            " 'config': __fleet_gateway_litellm_config is defined,"
            " 'openings': fleet_firewall_role_openings,"
            " 'private': fleet_firewall_role_private_ports} | to_json }}"
        ),
        "dest": "PLACEHOLDER",
        "mode": "0600",
    }
}


def plan(tmp_path: Path, clients: list) -> tuple:
    out = tmp_path / "plan.json"
    show = {"ansible.builtin.copy": {**PLAN_SHOW["ansible.builtin.copy"], "dest": str(out)}}
    run = run_task_file(
        tmp_path,
        "fleet_gateway",
        "plan.yml",
        {
            "role_path": str(REPO / "roles" / "fleet_gateway"),
            "fleet_gateway_model_hosts": [],
            "fleet_gateway_clients": clients,
            "fleet_haproxy_metrics_address": "*",
        },
        after=[show],
    )
    return run, (json.loads(out.read_text()) if out.exists() else None)


def test_the_plan_sets_what_the_role_the_report_and_the_firewall_read_and_warns(tmp_path):
    run, planned = plan(tmp_path, [{"name": "app", "key": "k" * 40, "models": ["*"]}])
    assert run.rc == 0, run.out[-4000:]
    assert planned["clients"] == ["app"]
    assert planned["serving"] and planned["config"]
    names = [opening["name"] for opening in planned["openings"]]
    assert names == ["fleet_gateway", "fleet_gateway_metrics"]
    assert 4000 in planned["private"]
    assert "No model host serves anything the gateway could route to" in flat(run)
    assert "k" * 40 not in run.out


def test_a_bad_client_stops_the_plan_before_anything_is_set(tmp_path):
    key = "x7Qv9" * 5  # 25 characters
    run, planned = plan(tmp_path, [{"name": "app", "key": key, "models": ["*"]}])
    assert run.rc != 0
    assert "the key is 25 characters, shorter than the minimum 32" in flat(run)
    assert key not in run.out
    assert planned is None
