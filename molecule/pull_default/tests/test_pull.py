"""Pull mode: each host converges itself from the fleet's git repository on its own timer.

The tests run in order: the timer is installed and scheduled; the first run (the service the
timer starts) classifies each host with gpu_tier's probe and policy and converges Ollama and
the tier's model; a commit changing a model parameter reaches the host on the next run; a
run with no new commit does nothing; runs never overlap.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from lab_checks import parse_recap, run_playbook

SERVICE = "localllm-fleet-pull.service"
TIMER = "localllm-fleet-pull.timer"
LOCK = "/run/lock/localllm-fleet-pull.lock"
HOSTS = {"pull-cpu": ("tiny", "deepseek-r1:1.5b"), "pull-gpu": ("medium", "deepseek-r1:32b")}
REASONS = {
    "pull-cpu": "tier tiny: no NVIDIA GPU on the PCI bus (lspci): no usable GPU: "
    "deepseek-r1:1.5b on CPU",
    "pull-gpu": "tier medium: 1 x NVIDIA GeForce RTX 4090 (24564 MiB): deepseek-r1:32b",
}
GIT = "git -c user.name=operator -c user.email=operator@fleet.invalid"


def podman(name: str, command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", "exec", name, "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_everywhere(command: str) -> dict[str, subprocess.CompletedProcess]:
    """The same command on every scenario host at once (the fleet converges in parallel)."""
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        return dict(zip(HOSTS, pool.map(lambda name: podman(name, command), HOSTS), strict=True))


def last_run_log(name: str) -> str:
    """The journal of the service's last invocation."""
    invocation = podman(name, f"systemctl show -p InvocationID --value {SERVICE}").stdout.strip()
    return podman(name, f"journalctl -o cat _SYSTEMD_INVOCATION_ID={invocation}").stdout


def start_everywhere() -> dict:
    """Start the service on every host at once, as their timers would; its result and log."""
    started = time.monotonic()
    results = run_everywhere(f"systemctl start {SERVICE}")
    return {
        "results": results,
        "logs": {name: last_run_log(name) for name in HOSTS},
        "seconds": time.monotonic() - started,
    }


def name_of(host) -> str:
    return host.check_output("hostname")


def model_parameters(name: str) -> str:
    body = json.dumps({"model": f"fleet/{HOSTS[name][1]}"})
    answer = podman(name, f"curl -fsS http://127.0.0.1:11434/api/show -d '{body}'").stdout
    return " ".join(json.loads(answer).get("parameters", "").split())


# ---------------------------------------------------------------------------- installed


def test_timer_is_enabled_and_scheduled(host):
    timer = host.service(TIMER)
    assert timer.is_enabled
    assert timer.is_running
    props = host.check_output(
        f"systemctl show {TIMER} -p NextElapseUSecMonotonic -p RandomizedDelayUSec "
        "-p FixedRandomDelay -p Unit"
    )
    values = dict(line.split("=", 1) for line in props.splitlines())
    assert values["Unit"] == SERVICE
    assert values["RandomizedDelayUSec"] == "10min"
    assert values["FixedRandomDelay"] == "yes"
    # Scheduled: a next elapse is set (the boot delay plus this host's fixed random delay).
    assert values["NextElapseUSecMonotonic"] not in ("", "infinity", "0")


def test_ansible_pull_comes_from_the_locked_wheelhouse(host):
    version = host.check_output("/opt/localllm-fleet/pull/current/bin/ansible-pull --version")
    assert "core 2.19.14" in version
    assert host.package("git").is_installed


def test_service_is_hardened_where_a_converge_allows(host):
    props = host.check_output(
        f"systemctl show {SERVICE} -p NoNewPrivileges -p PrivateTmp -p ProtectHome "
        "-p ProtectClock -p RestrictSUIDSGID -p Type"
    )
    values = dict(line.split("=", 1) for line in props.splitlines())
    assert values == {
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ProtectClock": "yes",
        "RestrictSUIDSGID": "yes",
        "Type": "oneshot",
    }


# ---------------------------------------------------------------------------- first run


@pytest.fixture(scope="module")
def first_run():
    return start_everywhere()


def test_first_run_classifies_the_host_and_converges_it(host, first_run):
    name = name_of(host)
    tier, model = HOSTS[name]
    result = first_run["results"][name]
    log = first_run["logs"][name]
    assert result.returncode == 0, log[-3000:]
    assert f"tier {tier}:" in log
    recap = parse_recap(log)
    assert recap[name]["failed"] == 0
    assert recap[name]["changed"] > 0
    assert host.service("ollama").is_running
    tags = json.loads(host.check_output("curl -fsS http://127.0.0.1:11434/api/tags"))
    names = {m["name"] for m in tags["models"]}
    assert f"fleet/{model}" in names, names


def test_each_host_classifies_itself_like_the_inventory_plugin(host, first_run):
    """A host without a GPU gets the CPU tier, the RTX 4090 its 24 GB tier (the reasons
    scripts/fleet-plan gives for these lab profiles), and the ollama role sees the GPU."""
    name = name_of(host)
    assert REASONS[name] in " ".join(first_run["logs"][name].split())
    unit = host.file("/etc/systemd/system/ollama.service").content_string
    assert ("nvidia-modprobe" in unit) == (name == "pull-gpu"), unit


# ---------------------------------------------------------------------------- a commit


@pytest.fixture(scope="module")
def commit_run(first_run):
    """An operator's commit: the models' temperature 0.6 -> 0.2, pushed to the repository."""
    edit = (
        "rm -rf /root/work && git clone -q /srv/fleet.git /root/work && cd /root/work && "
        "sed -i 's/temperature: 0.6/temperature: 0.2/' site/hosts.yml && "
        f"{GIT} commit -qam 'models: temperature 0.2' && git push -q origin main"
    )
    edits = run_everywhere(edit)
    for name, result in edits.items():
        assert result.returncode == 0, (name, result.stderr)
    run = start_everywhere()
    run["parameters"] = {name: model_parameters(name) for name in HOSTS}
    return run


def test_a_commit_reaches_the_host_on_the_next_run(host, commit_run):
    name = name_of(host)
    assert commit_run["results"][name].returncode == 0, commit_run["logs"][name][-3000:]
    parameters = commit_run["parameters"][name]
    assert "temperature 0.2" in parameters, parameters
    recap = parse_recap(commit_run["logs"][name])
    assert recap[name]["changed"] > 0


@pytest.fixture(scope="module")
def unchanged_run(commit_run):
    return start_everywhere()


def test_a_run_without_a_new_commit_does_nothing(host, unchanged_run):
    name = name_of(host)
    log = unchanged_run["logs"][name]
    assert unchanged_run["results"][name].returncode == 0, log[-3000:]
    assert "Repository has not changed, quitting" in log
    assert "PLAY RECAP" not in log
    assert unchanged_run["seconds"] < 60


# ---------------------------------------------------------------------------- no overlap


def test_runs_never_overlap(host, unchanged_run):
    """Someone holds the lock (a manual fleet-pull run): the timer's run waits for it; two
    starts of the service at once make one run."""
    name = name_of(host)
    held_from = float(host.check_output("date +%s.%N"))
    host.check_output(f"systemd-run --unit=hold-fleet-pull-lock flock {LOCK} sleep 12")
    time.sleep(1)
    host.check_output(f"systemctl start --no-block {SERVICE}")
    host.check_output(f"systemctl start --no-block {SERVICE}")
    time.sleep(5)
    # Waiting for the lock: started, but ansible-pull has not begun.
    assert host.check_output(f"systemctl show -p ActiveState --value {SERVICE}") == "activating"
    assert "lock taken" not in last_run_log(name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = host.check_output(f"systemctl show -p ActiveState --value {SERVICE}")
        if state in ("inactive", "failed"):
            break
        time.sleep(2)
    log = last_run_log(name)
    assert state == "inactive", log[-2000:]
    # One run for the two starts, after the holder let go.
    assert log.count("lock taken") == 1, log
    invocation = host.check_output(f"systemctl show -p InvocationID --value {SERVICE}")
    taken = host.check_output(
        f"journalctl -o short-unix _SYSTEMD_INVOCATION_ID={invocation} | grep 'lock taken'"
    )
    assert float(taken.split()[0]) >= held_from + 11, (held_from, taken)


# ---------------------------------------------------------------------------- signed commits


def gpg(home: str, *args: str, stdin: bytes | None = None) -> bytes:
    command = ["gpg", "--batch", "--homedir", home, "--pinentry-mode", "loopback", *args]
    return subprocess.run(command, input=stdin, capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def verifying(unchanged_run):
    """An operator's signing key (made here), trusted by the hosts through the role; each host
    holds the secret key in /root/signer to sign the operator's commits."""
    with tempfile.TemporaryDirectory() as home:
        os.chmod(home, 0o700)
        gpg(home, "--passphrase", "", "--quick-gen-key", "Fleet Operator <op@fleet.invalid>",
            "ed25519", "sign", "never")  # fmt: skip
        trusted = os.path.join(home, "trusted.asc")
        with open(trusted, "wb") as handle:
            handle.write(gpg(home, "--armor", "--export"))
        secret = gpg(home, "--armor", "--passphrase", "", "--export-secret-keys")
        for name in HOSTS:
            subprocess.run(
                ["podman", "exec", "-i", name, "sh", "-c",
                 "mkdir -m 700 -p /root/signer && gpg --batch --homedir /root/signer --import"],
                input=secret, capture_output=True, check=True, timeout=60,
            )  # fmt: skip
        run = run_playbook(
            extra_vars={"fleet_pull_verify_commit": True, "fleet_pull_trusted_keys": trusted}
        )
    assert run.rc == 0, run.output[-3000:]
    return run


def push_everywhere(temperature: str, sign: bool) -> None:
    """The operator's next commit on every host's repository, signed with the trusted key or
    not, pushed."""
    git = f"GNUPGHOME=/root/signer {GIT} -c user.signingkey=op@fleet.invalid" if sign else GIT
    commit = f"{git} commit -q {'-S' if sign else ''} -am 'models: temperature {temperature}'"
    edit = (
        "cd /root/work && git pull -q && "
        f"sed -i 's/temperature: .*/temperature: {temperature}/' site/hosts.yml && "
        f"{commit} && git push -q origin main"
    )
    for name, result in run_everywhere(edit).items():
        assert result.returncode == 0, (name, result.stderr)


@pytest.fixture(scope="module")
def unsigned_run(verifying):
    push_everywhere("0.3", sign=False)
    run = start_everywhere()
    run["checkout_kept"] = {
        name: podman(name, "test -e /var/lib/localllm-fleet/pull/checkout").returncode == 0
        for name in HOSTS
    }
    run["parameters"] = {name: model_parameters(name) for name in HOSTS}
    return run


@pytest.fixture(scope="module")
def signed_run(unsigned_run):
    push_everywhere("0.4", sign=True)
    run = start_everywhere()
    run["parameters"] = {name: model_parameters(name) for name in HOSTS}
    return run


def test_with_verification_an_unsigned_commit_is_refused(host, unsigned_run):
    name = name_of(host)
    log = unsigned_run["logs"][name]
    assert unsigned_run["results"][name].returncode != 0, log[-2000:]
    assert "Failed to verify GPG signature" in log
    assert "PLAY RECAP" not in log
    assert "temperature 0.2" in unsigned_run["parameters"][name]
    # The failed run forgot the checkout: the next one converges even without a new commit.
    assert not unsigned_run["checkout_kept"][name]


def test_with_verification_a_signed_commit_runs(host, signed_run):
    name = name_of(host)
    log = signed_run["logs"][name]
    assert signed_run["results"][name].returncode == 0, log[-3000:]
    assert "temperature 0.4" in signed_run["parameters"][name]
