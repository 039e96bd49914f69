"""A fresh install from the lab mirror: serving, loopback only, hardened, idempotent."""

import json

import pytest
from lab_checks import run_playbook

VERSION = "0.32.15"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "DevicePolicy": "closed",
    "User": "ollama",
    "CapabilityBoundingSet": "",
}
# systemd-analyze security rates 0 (locked down) to 10 (exposed); an unhardened service
# scores about 9.6 and "OK" starts below 2. The role's unit scores 1.5 (network access and
# the GPU device ACL are what remains, and a server that serves GPUs needs both).
MAX_EXPOSURE = 2.0


def test_service_active_and_enabled(host):
    service = host.service("ollama")
    assert service.is_running
    assert service.is_enabled


def test_api_answers_the_pinned_version_on_loopback(host):
    body = host.check_output("curl -fsS http://127.0.0.1:11434/api/version")
    assert json.loads(body) == {"version": VERSION}
    assert host.check_output("curl -fsS http://127.0.0.1:11434/") == "Ollama is running"


def test_nothing_listens_beyond_loopback(host):
    listeners = [s for s in host.socket.get_listening_sockets() if s.endswith(":11434")]
    assert listeners == ["tcp://127.0.0.1:11434"]


def test_binary_and_layout(host):
    assert host.file("/opt/ollama/current").linked_to == f"/opt/ollama/versions/{VERSION}"
    assert (
        host.file("/usr/local/bin/ollama").linked_to == f"/opt/ollama/versions/{VERSION}/bin/ollama"
    )
    assert host.file(f"/opt/ollama/versions/{VERSION}/lib/ollama").is_directory
    assert f"ollama version is {VERSION}" in host.check_output("ollama -v")


def test_user_and_store(host):
    user = host.user("ollama")
    assert user.shell == "/bin/false"
    assert user.home == "/usr/share/ollama"
    store = host.file("/usr/share/ollama/.ollama/models")
    assert store.is_directory
    assert (store.user, store.group, store.mode) == ("ollama", "ollama", 0o750)


def test_dropin_carries_the_settings(host):
    dropin = host.file("/etc/systemd/system/ollama.service.d/override.conf").content_string
    assert 'Environment="OLLAMA_HOST=127.0.0.1:11434"' in dropin
    assert 'Environment="OLLAMA_MODELS=/usr/share/ollama/.ollama/models"' in dropin
    environment = host.check_output("systemctl show ollama -p Environment --value")
    assert "OLLAMA_KEEP_ALIVE=5m" in environment


def test_hardening_properties(host):
    names = sorted(HARDENING)
    out = host.check_output("systemctl show ollama " + " ".join(f"-p {n}" for n in names))
    actual = dict(line.split("=", 1) for line in out.splitlines())
    assert {n: actual.get(n) for n in names} == HARDENING


def test_store_writable_rest_read_only(host):
    paths = host.check_output("systemctl show ollama -p ReadWritePaths --value").split()
    assert sorted(paths) == ["/usr/share/ollama", "/usr/share/ollama/.ollama/models"]


def test_systemd_security_exposure(host):
    out = host.check_output("systemd-analyze security ollama.service --no-pager")
    last = out.strip().splitlines()[-1]
    exposure = float(last.split("ollama.service:")[1].split()[0])
    print(f"systemd-analyze security ollama.service: {exposure}")
    assert exposure <= MAX_EXPOSURE, last


def test_check_mode_on_converged_host_changes_nothing(host):
    # Once for all platforms: the playbook run covers every host of the scenario.
    if host.backend.get_hostname() != "ollama-debian12":
        pytest.skip("checked once for the whole scenario")
    run = run_playbook("converge.yml", check=True, diff=True)
    assert run.rc == 0, run.output[-3000:]
    assert run.recap, run.output[-3000:]
    assert run.changed() == 0, run.output[-3000:]


# ------------------------------------------------------------------ the GPU host's unit
# What a container can show; the GPUs themselves only a GPU host (docs/ollama-gpu.md).

DEVICE_GROUPS = ["nvidia-frontend", "nvidia", "nvidiactl", "nvidia-uvm", "nvidia-caps", "drm"]


def test_device_rules_as_systemd_parses_them(host):
    words = host.check_output("systemctl show ollama -p DeviceAllow --value").split()
    rules = list(zip(words[::2], words[1::2], strict=True))
    # systemd resolves char-<group> against /proc/devices when the service starts; the names
    # of drivers before 550.40 (nvidia-frontend) and after (nvidia, nvidiactl) are both there.
    # (systemd lists them newest first, and adds its own: char-rtc r for ProtectClock=yes.)
    ours = [rule for rule in rules if rule[0].removeprefix("char-") in DEVICE_GROUPS]
    assert sorted(ours) == sorted((f"char-{group}", "rw") for group in DEVICE_GROUPS), rules
    assert all(rule in ours or rule[1] == "r" for rule in rules), rules  # nothing else writable
    assert host.check_output("systemctl show ollama -p DevicePolicy --value") == "closed"


def test_it_starts_after_the_gpus_are_ready(host):
    after = host.check_output("systemctl show ollama -p After --value").split()
    wants = host.check_output("systemctl show ollama -p Wants --value").split()
    assert {"nvidia-persistenced.service", "nvidia-fabricmanager.service"} <= set(after)
    assert "nvidia-persistenced.service" in wants
    pre = host.check_output("systemctl show ollama -p ExecStartPre --value")
    # the device files, created outside the sandbox; a missing nvidia-modprobe is no failure
    assert "argv[]=/usr/bin/nvidia-modprobe -c=0 ;" in pre, pre
    assert "argv[]=/usr/bin/nvidia-modprobe -u -c=0 ;" in pre, pre
    assert pre.count("ignore_errors=yes") == 2, pre
    assert host.service("ollama").is_running  # here there is no nvidia-modprobe


def test_ollama_found_the_profiles_gpu(host):
    log = host.check_output("journalctl -u ollama --no-pager -o cat")
    assert 'msg="inference compute"' in log and "library=CUDA" in log
    assert 'description="NVIDIA GeForce RTX 4090"' in log


def test_a_quantized_cache_without_flash_attention_is_refused(host):
    if host.backend.get_hostname() != "ollama-debian12":
        pytest.skip("checked once")
    run = run_playbook(
        "converge.yml",
        extra_vars={"ollama_kv_cache_type": "q8_0", "ollama_flash_attention": False},
        limit="ollama-debian12",
    )
    assert run.rc != 0 and run.changed() == 0, run.output[-3000:]
    assert "ollama_kv_cache_type q8_0 needs flash attention" in " ".join(run.output.split())
