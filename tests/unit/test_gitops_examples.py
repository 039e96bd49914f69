"""examples/gitops/: the GitLab CI pipeline and the GitHub Actions workflow are valid for their
CI systems (the schemas check-jsonschema vendors, offline) and have the shape docs/gitops.md
promises (lint -> plan on merge requests -> apply on main behind a manual gate); fleet-ci, the
steps both run, handles the secrets and the batch settings as documented. Running the
pipelines against hosts is not done here."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GITOPS = REPO / "examples" / "gitops"
GITLAB = GITOPS / ".gitlab-ci.yml"
GITHUB = GITOPS / ".github" / "workflows" / "fleet.yml"
FLEET_CI = GITOPS / "fleet-ci"
CHECK_JSONSCHEMA = REPO / ".venv" / "bin" / "check-jsonschema"

pytestmark = pytest.mark.controller


def schema_check(schema: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("schema", "path"),
    [("vendor.gitlab-ci", GITLAB), ("vendor.github-workflows", GITHUB)],
)
def test_the_pipelines_validate_against_their_ci_schemas(schema, path):
    result = schema_check(schema, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_a_broken_workflow(tmp_path):
    workflow = yaml.safe_load(GITHUB.read_text())
    del workflow["jobs"]["apply"]["runs-on"]
    workflow["jobs"]["plan"]["needs"] = {"job": "lint"}
    broken = tmp_path / "fleet.yml"
    broken.write_text(yaml.safe_dump(workflow))
    result = schema_check("vendor.github-workflows", broken)
    assert result.returncode == 1
    assert "jobs.apply" in result.stdout or "runs-on" in result.stdout


def test_gitlab_lints_plans_merge_requests_and_applies_main_behind_a_gate():
    ci = yaml.safe_load(GITLAB.read_text())
    assert ci["stages"] == ["lint", "plan", "apply"]
    jobs = {name: job for name, job in ci.items() if isinstance(job, dict) and "script" in job}
    assert set(jobs) == {"lint", "plan", "apply"}
    assert {name: job["stage"] for name, job in jobs.items()} == {
        "lint": "lint",
        "plan": "plan",
        "apply": "apply",
    }
    assert jobs["plan"]["needs"] == ["lint"]
    assert jobs["apply"]["needs"] == ["plan"]
    # pipelines run for merge requests and for the default branch only
    conditions = [rule["if"] for rule in ci["workflow"]["rules"]]
    assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in conditions
    assert "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in conditions
    # apply: only on the default branch, started by a person, and the pipeline waits for it
    assert jobs["apply"]["rules"] == [
        {
            "if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH",
            "when": "manual",
            "allow_failure": False,
        }
    ]
    assert jobs["apply"]["environment"]["name"] == "production"
    # never two runs against the fleet at once
    assert jobs["plan"]["resource_group"] == jobs["apply"]["resource_group"]
    # the plan (and its diff) is the merge request's artifact, even when check mode fails
    assert jobs["plan"]["artifacts"]["paths"] == ["plan/"]
    assert jobs["plan"]["artifacts"]["when"] == "always"
    # secrets come from CI variables through fleet-ci, before anything that needs them
    for name in ("plan", "apply"):
        script = jobs[name]["script"]
        assert script[0] == "examples/gitops/fleet-ci access"
        assert script[1] == f"examples/gitops/fleet-ci {name}"
    assert "examples/gitops/fleet-ci access" not in jobs["lint"]["script"]
    assert "FLEET_VAULT_PASSWORD" not in ci.get("variables", {})
    assert "FLEET_SSH_PRIVATE_KEY" not in ci.get("variables", {})


def test_github_plans_pull_requests_and_applies_main_after_approval():
    workflow = yaml.safe_load(GITHUB.read_text())
    triggers = workflow["on"]
    assert triggers["pull_request"]["branches"] == ["main"]
    assert triggers["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    assert jobs["plan"]["needs"] == "lint"
    assert jobs["apply"]["needs"] == "plan"
    assert jobs["apply"]["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert jobs["apply"]["environment"] == "production"
    assert jobs["plan"]["environment"] != "production"  # planning waits for no reviewer
    # code from a fork's pull request never reaches the runner inside the fleet's network
    assert "self-hosted" not in jobs["lint"]["runs-on"]
    assert jobs["plan"]["if"].endswith(
        "github.event.pull_request.head.repo.full_name == github.repository"
    )
    group = jobs["plan"]["concurrency"]["group"]
    assert jobs["apply"]["concurrency"] == {"group": group, "cancel-in-progress": False}
    uploads = [
        s for s in jobs["plan"]["steps"] if str(s.get("uses", "")).startswith("actions/upload")
    ]
    assert uploads
    assert uploads[0]["with"]["path"] == "plan/"
    assert uploads[0]["if"] == "always()"
    for name, job in jobs.items():
        for step in job["steps"]:
            # secrets reach a step through its environment, never spliced into a script
            assert "secrets." not in step.get("run", ""), (name, step)
            if "secrets." in str(step.get("env", "")):
                assert step["run"] == "examples/gitops/fleet-ci access", (name, step)
    apply_env = next(s for s in jobs["apply"]["steps"] if s.get("name") == "Apply")["env"]
    assert set(apply_env) == {"FLEET_SERIAL", "FLEET_MAX_FAIL_PERCENTAGE"}


# ------------------------------------------------------------------------------ fleet-ci

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90LWEtcmVhbC1rZXk=\n-----END OPENSSH PRIVATE KEY-----"


def fleet_ci(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.run(
        [str(FLEET_CI), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**base, "HOME": str(tmp_path / "home"), **env},
        timeout=60,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_access_writes_the_secrets_readable_by_the_runner_only(tmp_path):
    result = fleet_ci(
        tmp_path, "access", FLEET_VAULT_PASSWORD="s3cret-vault", FLEET_SSH_PRIVATE_KEY=KEY
    )
    assert result.returncode == 0, result.stderr
    vault = tmp_path / "home" / ".config" / "localllm-fleet" / "vault-password"
    key = tmp_path / "home" / ".ssh" / "fleet_ed25519"
    assert vault.read_text() == "s3cret-vault\n"
    assert key.read_text() == KEY + "\n"
    assert mode(vault) == 0o600
    assert mode(key) == 0o600
    assert "s3cret-vault" not in result.stdout + result.stderr


def test_access_takes_the_key_from_a_gitlab_file_variable(tmp_path):
    source = tmp_path / "FLEET_SSH_PRIVATE_KEY"
    source.write_text(KEY + "\n")
    result = fleet_ci(
        tmp_path, "access", FLEET_VAULT_PASSWORD="v", FLEET_SSH_PRIVATE_KEY=str(source)
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "home" / ".ssh" / "fleet_ed25519").read_text() == KEY + "\n"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLEET_SSH_PRIVATE_KEY": KEY}, "FLEET_VAULT_PASSWORD is empty"),
        ({"FLEET_VAULT_PASSWORD": "v"}, "FLEET_SSH_PRIVATE_KEY is empty"),
        ({"FLEET_VAULT_PASSWORD": "v", "FLEET_SSH_PRIVATE_KEY": "oops"}, "holds no private key"),
    ],
)
def test_access_without_usable_secrets_fails_naming_them(tmp_path, env, message):
    result = fleet_ci(tmp_path, "access", **env)
    assert result.returncode == 1
    assert message in result.stderr


@pytest.fixture
def ready(tmp_path) -> Path:
    """A checkout with an inventory and the secrets written, as a plan job has them."""
    inventory = tmp_path / "inventories" / "prod" / "gpu_tier.yml"
    inventory.parent.mkdir(parents=True)
    inventory.write_text("plugin: localllm.fleet.gpu_tier\n")
    secrets = {"FLEET_VAULT_PASSWORD": "v", "FLEET_SSH_PRIVATE_KEY": KEY}
    assert fleet_ci(tmp_path, "access", **secrets).returncode == 0
    return tmp_path


def stub(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def stub_venv(tmp_path: Path, status: int = 0) -> Path:
    """A venv whose ansible-playbook records its arguments instead of running."""
    stub(
        tmp_path / "venv" / "bin" / "ansible-playbook",
        f'printf "%s\\n" "$@" > {tmp_path / "argv"}\necho "PLAY RECAP stand-in"\nexit {status}',
    )
    return tmp_path / "venv"


@pytest.mark.parametrize(
    ("env", "serial", "max_fail"),
    [({}, "10%", "0"), ({"FLEET_SERIAL": "25", "FLEET_MAX_FAIL_PERCENTAGE": "5"}, "25", "5")],
)
def test_apply_runs_site_yml_in_batches(ready, env, serial, max_fail):
    result = fleet_ci(ready, "apply", LOCALLLM_VENV=str(stub_venv(ready)), **env)
    assert result.returncode == 0, result.stderr
    argv = (ready / "argv").read_text().splitlines()
    assert argv[:3] == ["-i", "inventories/prod/gpu_tier.yml", "playbooks/site.yml"]
    assert f"fleet_serial={serial}" in argv
    assert f"fleet_max_fail_percentage={max_fail}" in argv
    assert "--check" not in argv
    assert str(ready / "home" / ".config" / "localllm-fleet" / "vault-password") in argv


def test_plan_and_apply_refuse_to_start_without_access(tmp_path):
    inventory = tmp_path / "inventories" / "prod" / "gpu_tier.yml"
    inventory.parent.mkdir(parents=True)
    inventory.write_text("plugin: localllm.fleet.gpu_tier\n")
    for step in ("plan", "apply"):
        result = fleet_ci(tmp_path, step)
        assert result.returncode == 1
        assert "run 'fleet-ci access' first" in result.stderr
    result = fleet_ci(tmp_path, "apply", FLEET_INVENTORY="inventories/nowhere/gpu_tier.yml")
    assert "inventory inventories/nowhere/gpu_tier.yml not found" in result.stderr


@pytest.mark.parametrize("plan_status", [0, 2])
def test_plan_keeps_the_plan_and_the_diff_and_tolerates_unreadable_hosts(ready, plan_status):
    # fleet-plan exits 2 when some hosts could not be read: shown, not a failed plan job
    stub(ready / "scripts" / "fleet-plan", f"echo 'HOST STATUS'\nexit {plan_status}")
    result = fleet_ci(ready, "plan", LOCALLLM_VENV=str(stub_venv(ready)))
    assert result.returncode == 0, result.stderr
    assert (ready / "plan" / "fleet-plan.txt").read_text() == "HOST STATUS\n"
    assert "PLAY RECAP" in (ready / "plan" / "site-check-diff.txt").read_text()
    argv = (ready / "argv").read_text().splitlines()
    assert "--check" in argv
    assert "--diff" in argv
    assert ("could not be read" in result.stdout) == (plan_status == 2)


def test_a_failed_plan_or_check_fails_the_job_and_keeps_what_it_saw(ready):
    stub(ready / "scripts" / "fleet-plan", "echo 'inventory broken' >&2\nexit 1")
    result = fleet_ci(ready, "plan", LOCALLLM_VENV=str(stub_venv(ready)))
    assert result.returncode == 1
    assert "fleet-plan failed (exit 1)" in result.stderr
    assert not (ready / "argv").exists()  # no check run on an inventory that did not build

    stub(ready / "scripts" / "fleet-plan", "echo 'HOST STATUS'")
    result = fleet_ci(ready, "plan", LOCALLLM_VENV=str(stub_venv(ready, status=2)))
    assert result.returncode == 2  # check mode failed on a host: the job fails
    assert "PLAY RECAP" in (ready / "plan" / "site-check-diff.txt").read_text()
