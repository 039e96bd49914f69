"""The GitLab pipeline of examples/gitops/ run for real: gitlab-ci-local (shell executor) in a
throwaway fleet repository, against the scenario's lab host.

The fleet repository is what docs/gitops.md tells an operator to make: this project (HEAD),
the pipeline at its root, and inventories/prod/ naming gitops-cpu, with its host key in the
reviewed known_hosts and the fleet CA's passphrase vault-encrypted. The runner has only what
GitLab would give it: the CI variables FLEET_VAULT_PASSWORD and FLEET_SSH_PRIVATE_KEY (a File
variable) in its own home, and the toolchain (.venv, the pipeline's cache). In order:
  1. main's first pipeline, the manual gate held: lint and plan pass against the fresh host
     (the plan shows Ollama installed and the tier's model pulled, warning that Ollama cannot
     be asked yet), the apply stage starts nothing, and nothing reaches the host or makes the
     fleet CA;
  2. main, the gate pressed (--manual apply): the apply job converges the host;
  3. main again: the same apply changes nothing (changed=0);
  4. a merge request changing a model parameter: lint and plan pass, the plan artifact shows
     the change as a diff, no apply job exists, and the host keeps its parameter.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from lab_checks import parse_recap

HOST = "gitops-cpu"
HOST_ADDRESS = "10.89.42.230"
MODEL = "fleet/deepseek-r1:1.5b"  # the CPU tier's model under the default policy
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
GITLAB_CI_LOCAL = PROJECT / "scripts" / "gitlab-ci-local"
GIT = ["git", "-c", "user.name=operator", "-c", "user.email=operator@fleet.invalid"]
# A merge request's pipeline as GitLab starts it: its source, and no CI_COMMIT_BRANCH.
MERGE_REQUEST = [
    "--variable",
    "CI_PIPELINE_SOURCE=merge_request_event",
    "--unset-variable",
    "CI_COMMIT_BRANCH",
]


ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>.+?)\] \**$")


@dataclass
class Fleet:
    root: Path
    repo: Path
    home: Path


@dataclass
class Pipeline:
    rc: int
    output: str
    seconds: float

    def job_lines(self, job: str, kind: str = ">") -> list[str]:
        """The job's output lines (kind ">") or the commands it ran (kind "$"), without
        gitlab-ci-local's prefix (the job's name padded to the longest one) or colours (the
        pipeline sets ANSIBLE_FORCE_COLOR)."""
        prefix = re.compile(rf"^{re.escape(job)} +{re.escape(kind)} ?")
        lines = ANSI.sub("", self.output).splitlines()
        return [prefix.sub("", line) for line in lines if prefix.match(line)]

    def job_log(self, job: str) -> str:
        return "\n".join(self.job_lines(job))

    def ran(self, job: str) -> bool:
        return bool(self.job_lines(job, "$"))


def changed_tasks(log: str, host: str) -> set[str]:
    """The tasks (and handlers) that reported a change on `host` in a playbook's output."""
    changed, task = set(), ""
    for line in log.splitlines():
        match = TASK.match(line.strip())
        if match:
            task = match["name"]
        elif line.startswith(f"changed: [{host}]"):
            changed.add(task)
    return changed


def sh(*command: str | Path, cwd: Path | None = None, **kwargs) -> str:
    result = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        **kwargs,
    )
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result.stdout


def podman(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", "exec", HOST, "sh", "-c", command],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def ssh_port() -> int:
    instances = yaml.safe_load(Path(os.environ["MOLECULE_INSTANCE_CONFIG"]).read_text())
    return int(next(i["port"] for i in instances if i["instance"] == HOST))


def vault_encrypt(name: str, value: str, password_file: Path) -> str:
    """`ansible-vault encrypt_string`, as the example inventory's README says."""
    return sh(
        PROJECT / ".venv" / "bin" / "ansible-vault",
        "encrypt_string",
        "--vault-password-file",
        password_file,
        "--stdin-name",
        name,
        input=value,
    )


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_inventory(repo: Path, vault_password_file: Path) -> None:
    prod = repo / "inventories" / "prod"
    write(
        prod / "hosts.yml",
        f"""---
# gitops-cpu, a lab host reached on its loopback SSH port (tests/test_gitops.py).
all:
  children:
    fleet:
      vars:
        ansible_user: fleet
        ansible_ssh_private_key_file: ~/.ssh/fleet_ed25519
        ansible_ssh_common_args: >-
          -o UserKnownHostsFile={{{{ inventory_dir }}}}/known_hosts
          -o StrictHostKeyChecking=yes
      children:
        models:
          hosts:
            {HOST}:
              ansible_host: 127.0.0.1
              ansible_port: {ssh_port()}
              fleet_host_address: {HOST_ADDRESS}
""",
    )
    write(
        prod / "gpu_tier.yml",
        """---
plugin: localllm.fleet.gpu_tier
source: hosts.yml
known_hosts:
  - known_hosts
host_key_checking: strict
strict: false
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/localllm-fleet/inventory
cache_timeout: 86400
""",
    )
    write(
        prod / "group_vars" / "fleet" / "main.yml",
        """---
# The lab mirror (plain HTTP, accepted explicitly) instead of a site's internal mirrors.
ollama_download_base_url: http://mirror:8080/ollama
ollama_models_registry: mirror:8080
ollama_models_registry_insecure: true
ollama_models_gguf_base_url: http://mirror:8080/models
ollama_allow_unverified_http: true
ollama_models_allow_unverified_http: true
# The parameter the merge request changes.
ollama_models_parameters:
  temperature: 0.6
fleet_tls_ca_dir: "{{ inventory_dir }}/pki"
fleet_tls_ca_passphrase: "{{ vault_fleet_tls_ca_passphrase }}"
fleet_firewall_admin_cidrs: [10.89.42.1/32]
""",
    )
    passphrase = secrets.token_hex(16)
    write(
        prod / "group_vars" / "fleet" / "vault.yml",
        "---\n" + vault_encrypt("vault_fleet_tls_ca_passphrase", passphrase, vault_password_file),
    )
    # The host's own key, as scripts/lab and molecule's create step read it: the reviewed file.
    shutil.copy(EPHEMERAL / "known_hosts", prod / "known_hosts")


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    root = EPHEMERAL / "gitops"
    shutil.rmtree(root, ignore_errors=True)
    repo, home = root / "fleet", root / "runner-home"
    repo.mkdir(parents=True)
    home.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(PROJECT), "archive", "HEAD"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    shutil.copy(PROJECT / "examples" / "gitops" / ".gitlab-ci.yml", repo / ".gitlab-ci.yml")

    vault_password = secrets.token_hex(16)
    password_file = root / "vault-password"
    password_file.write_text(vault_password + "\n")
    make_inventory(repo, password_file)
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh(*GIT, "commit", "-qm", "fleet: gitops-cpu", cwd=repo)

    # The project's CI/CD variables, where gitlab-ci-local reads them (the runner's home): a
    # masked variable and a File variable (the job gets the path of a copy, as on GitLab).
    write(
        home / ".gitlab-ci-local" / "variables.yml",
        yaml.safe_dump(
            {
                "global": {
                    "FLEET_VAULT_PASSWORD": vault_password,
                    "FLEET_SSH_PRIVATE_KEY": str(PROJECT / ".lab" / "ssh" / "id_ed25519"),
                }
            }
        ),
    )
    return Fleet(root, repo, home)


def run_pipeline(fleet: Fleet, name: str, *args: str, branch: str = "main") -> Pipeline:
    """gitlab-ci-local in the fleet repository, with a runner's environment only (no Ansible or
    molecule settings of this test run leak into the jobs); the output is kept for failures."""
    sh("git", "checkout", "-q", branch, cwd=fleet.repo)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(fleet.home),
        "LANG": "C.UTF-8",
        # The pipeline's cached toolchain: scripts/setup finds it matching requirements.txt.
        "LOCALLLM_VENV": str(PROJECT / ".venv"),
    }
    started = time.monotonic()
    result = subprocess.run(
        [str(GITLAB_CI_LOCAL), "--no-color", *args],
        cwd=fleet.repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    seconds = time.monotonic() - started
    pipeline = Pipeline(result.returncode, result.stdout + result.stderr, seconds)
    (fleet.root / f"{name}.log").write_text(pipeline.output)
    print(f"gitops: {name}: exit {pipeline.rc} in {pipeline.seconds:.0f} s")
    return pipeline


def model_parameters() -> str:
    body = json.dumps({"model": MODEL})
    answer = podman(f"curl -fsS http://127.0.0.1:11434/api/show -d '{body}'")
    assert answer.returncode == 0, answer.stderr
    return " ".join(json.loads(answer.stdout).get("parameters", "").split())


# ------------------------------------------------------------------------- main: the gate


@pytest.fixture(scope="module")
def gate_held(fleet) -> Pipeline:
    """main's first pipeline, before anyone presses "apply": lint, then the plan of a fleet
    whose host has nothing yet (kept aside: the merge request's plan replaces plan/)."""
    pipeline = run_pipeline(fleet, "main-gate-held")
    if (fleet.repo / "plan").is_dir():
        shutil.copytree(fleet.repo / "plan", fleet.root / "first-plan", dirs_exist_ok=True)
    return pipeline


def test_main_waits_for_a_person_before_applying(fleet, gate_held):
    assert gate_held.rc == 0, gate_held.output[-5000:]
    assert "PASS  lint" in gate_held.output
    assert "PASS  plan" in gate_held.output
    assert not gate_held.ran("apply"), gate_held.output[-3000:]
    assert not (fleet.repo / "report").exists()
    assert podman("command -v ollama").returncode != 0  # nothing reached the host
    assert podman("test -e /etc/fleet-tls || test -e /etc/haproxy/conf.d").returncode != 0
    assert not (fleet.repo / "inventories" / "prod" / "pki").exists()  # no CA made by a plan


def test_the_first_plan_shows_the_fresh_host_set_up(fleet, gate_held):
    """A host new to the fleet is planned end to end, not failed at the first task that
    needs what an earlier one would install (Ollama's API, its units, the packages)."""
    diff = ANSI.sub("", (fleet.root / "first-plan" / "site-check-diff.txt").read_text())
    recap = parse_recap(diff)
    assert recap[HOST]["failed"] == 0, diff[-5000:]
    assert recap[HOST]["unreachable"] == 0
    assert recap[HOST]["changed"] > 0
    changed = changed_tasks(diff, HOST)
    for task in (
        "localllm.fleet.ollama : Install the service unit",
        "localllm.fleet.ollama_models : Pull the bases from the registry"
        " (resumes; progress every slice)",
        "localllm.fleet.fleet_exporters : Write node_exporter's options and harden its unit,"
        " and install the collector's service and timer",
    ):
        assert task in changed, sorted(changed)
    # the model the host would serve, as a diff of its Modelfile, and why Ollama is not asked
    assert "+PARAMETER temperature 0.6" in diff
    words = " ".join(diff.split())  # the YAML callback folds long values
    assert "deepseek-r1:1.5b: would be pulled (Ollama does not answer yet)" in words
    assert "Ollama does not answer at http://127.0.0.1:11434 (connection refused)" in words
    # the certificates: the CA, the host's key and its certificate are the real run's
    assert "check mode: there is no fleet CA in" in words


# ------------------------------------------------------------------------- main: apply


@pytest.fixture(scope="module")
def first_apply(fleet, gate_held) -> Pipeline:
    return run_pipeline(fleet, "main-apply", "--stage", "apply", "--manual", "apply")


def test_the_apply_job_converges_the_host(fleet, first_apply):
    log = first_apply.job_log("apply")
    assert first_apply.rc == 0, first_apply.output[-5000:]
    assert "PASS  apply" in first_apply.output
    recap = parse_recap(log)
    assert recap[HOST]["failed"] == 0
    assert recap[HOST]["unreachable"] == 0
    assert recap[HOST]["changed"] > 0
    # the secrets reached the job as CI variables, written by fleet-ci access, never printed
    assert "vault password and SSH key written (mode 0600)" in log
    variables = yaml.safe_load((fleet.home / ".gitlab-ci-local" / "variables.yml").read_text())
    assert variables["global"]["FLEET_VAULT_PASSWORD"] not in first_apply.output
    # the host serves its tier's model with the committed parameter, behind its edge
    assert "temperature 0.6" in model_parameters()
    assert podman("systemctl is-active ollama haproxy").returncode == 0
    # the report is the job's artifact
    assert HOST in (fleet.repo / "report" / "fleet-report.md").read_text()


@pytest.fixture(scope="module")
def second_apply(fleet, first_apply) -> Pipeline:
    """The operator commits the fleet CA the first run made (inventories/example/README.md,
    step 7), then main's pipeline applies again."""
    sh("git", "add", "inventories/prod/pki", cwd=fleet.repo)
    sh(
        *GIT,
        "commit",
        "-qm",
        "fleet CA (its key encrypted with the vaulted passphrase)",
        cwd=fleet.repo,
    )
    return run_pipeline(fleet, "main-apply-again", "--stage", "apply", "--manual", "apply")


def test_a_second_apply_changes_nothing(second_apply):
    log = second_apply.job_log("apply")
    assert second_apply.rc == 0, second_apply.output[-5000:]
    recap = parse_recap(log)
    assert recap[HOST]["failed"] == 0
    # nothing at all: the smoke test measures only when something it covers changed
    # (roles/ollama_models/README.md), so not even a new measurement is written
    assert changed_tasks(log, HOST) == set()
    assert recap[HOST]["changed"] == 0, log[-5000:]


# ------------------------------------------------------------------------- merge request


@pytest.fixture(scope="module")
def merge_request(fleet, second_apply) -> Pipeline:
    """An operator's merge request: the models' temperature 0.6 -> 0.2."""
    sh("git", "checkout", "-q", "-b", "temperature", cwd=fleet.repo)
    main_yml = fleet.repo / "inventories" / "prod" / "group_vars" / "fleet" / "main.yml"
    main_yml.write_text(main_yml.read_text().replace("temperature: 0.6", "temperature: 0.2"))
    sh(*GIT, "commit", "-qam", "models: temperature 0.2", cwd=fleet.repo)
    return run_pipeline(fleet, "merge-request", *MERGE_REQUEST, branch="temperature")


def test_a_merge_request_is_linted_and_planned_and_never_applied(merge_request):
    assert merge_request.rc == 0, merge_request.output[-5000:]
    assert "PASS  lint" in merge_request.output
    assert "PASS  plan" in merge_request.output
    assert not merge_request.ran("apply")
    assert "examples/gitops/fleet-ci lint" in merge_request.job_lines("lint", "$")
    assert "playbook: playbooks/site.yml" in merge_request.job_log("lint")  # the syntax check


def test_the_plan_artifact_shows_the_change_as_a_diff(fleet, merge_request):
    plan_dir = fleet.repo / "plan"
    fleet_plan = (plan_dir / "fleet-plan.txt").read_text()
    assert HOST in fleet_plan
    assert "deepseek-r1:1.5b" in fleet_plan
    diff = ANSI.sub("", (plan_dir / "site-check-diff.txt").read_text())
    assert "-PARAMETER temperature 0.6" in diff, diff[-5000:]
    assert "+PARAMETER temperature 0.2" in diff
    recap = parse_recap(diff)
    assert recap[HOST]["changed"] > 0
    assert recap[HOST]["failed"] == 0


def test_nothing_of_the_merge_request_reached_the_host(merge_request):
    assert "temperature 0.6" in model_parameters()
