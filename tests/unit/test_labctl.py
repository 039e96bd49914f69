"""The lab's code (tests/lab/labctl) where it decides without podman: the fleet read from
inventories/lab/hosts.yml, the network's layout and egress guard, which images a run builds
and when they are rebuilt, the demo client key, `scripts/lab status` as the Makefile and
scripts/demo read it, and the entry point's commands and flags."""

from __future__ import annotations

import ipaddress
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))

from labctl import cli, common, fleet, images, keys, network  # tests/lab, put on sys.path above

LAB_SUBNET = yaml.safe_load((REPO / "inventories" / "lab" / "hosts.yml").read_text())["all"][
    "children"
]["lab"]["vars"]["lab_subnet"]


def test_the_package_finds_the_repository_it_lives_in():
    # .lab/ (keys, mirror, known_hosts) and the lock are per checkout: a wrong ROOT would
    # put the lab's state somewhere else and lose the existing lab.
    assert common.ROOT == REPO
    assert common.STATE == REPO / ".lab"
    assert fleet.INVENTORY == REPO / "inventories" / "lab" / "hosts.yml"
    assert common.CONTAINERS_CONF.is_file()


def test_entry_point_keeps_every_command_and_flag():
    def usage(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "lab"), *args, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "{up,images,status,down,publish}" in usage()
    assert "--no-ubuntu" in usage("up")
    assert "--no-ubuntu" in usage("images")
    assert "--py39" in usage("images")
    assert "--json" in usage("status")
    assert "--purge" in usage("down")


def test_an_unknown_command_is_refused():
    with pytest.raises(SystemExit) as exc:
        cli.main(["start"])
    assert exc.value.code == 2


def test_the_lab_fleet_is_consistent():
    hosts, common_vars = fleet.load_fleet()
    names = [h.name for h in hosts]
    ports = [h.port for h in hosts]
    addresses = [h.ip for h in hosts] + [str(common_vars["lab_mirror_ip"])]
    assert len(set(names)) == len(names) >= 9
    assert len(set(ports)) == len(ports)
    assert len(set(addresses)) == len(addresses)
    assert {h.image for h in hosts} <= {spec.name for spec in images.IMAGES}
    assert all(h.container == f"localllm-lab-{h.name}" for h in hosts)
    gateway = next(h for h in hosts if h.name == "gateway1")
    assert gateway.offline_dns
    assert all(":" in mapping for h in hosts for mapping in h.publish)


def test_a_fleet_address_in_the_scenario_half_is_refused(tmp_path, monkeypatch):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "lab": {
                            "vars": {"lab_subnet": "10.89.42.0/24", "lab_mirror_ip": "10.89.42.2"},
                            "hosts": {
                                "ok": {
                                    "ansible_port": 1,
                                    "lab_ip": "10.89.42.11",
                                    "lab_profile": "cpu",
                                },
                                "stray": {
                                    "ansible_port": 2,
                                    "lab_ip": "10.89.42.130",
                                    "lab_profile": "cpu",
                                },
                            },
                        }
                    }
                }
            }
        )
    )
    monkeypatch.setattr(fleet, "INVENTORY", inventory)
    with pytest.raises(common.LabError, match=r"10\.89\.42\.130 must be in the lower half"):
        fleet.load_fleet()


def test_network_layout_gives_scenarios_the_upper_half():
    assert network.network_layout("10.89.42.0/24") == ("10.89.42.128/26", "10.89.42.192/26")


def test_scenario_fixed_addresses_are_in_the_last_quarter_and_unique():
    # Scenarios run in parallel (scripts/molecule-run): an address podman could hand out, or
    # one two scenarios share, would make one of them fail to start.
    _, fixed = network.network_layout(LAB_SUBNET)
    seen: dict[str, str] = {}
    for path in sorted((REPO / "molecule").glob("*/molecule.yml")):
        for platform in yaml.safe_load(path.read_text()).get("platforms") or []:
            if "ip" not in platform:
                continue
            where = f"{path.parent.name}/{platform['name']}"
            assert ipaddress.ip_address(platform["ip"]) in ipaddress.ip_network(fixed), where
            assert platform["ip"] not in seen, f"{where} and {seen.get(platform['ip'])}"
            seen[platform["ip"]] = where
    assert seen, "no scenario picks a fixed address: this test checks nothing"


def test_guard_drops_what_leaves_the_lab_network_and_replaces_itself():
    rules = network.guard_rules("10.89.42.0/24")
    # Declared, deleted, then made: loading it twice leaves one table, not two chains.
    assert rules.index("delete table inet localllm_lab") < rules.index("chain egress")
    assert "ip saddr 10.89.42.0/24 ip daddr != 10.89.42.0/24 counter drop" in rules
    # Ahead of podman's own forward rules, which would accept the packet first.
    assert "hook forward priority filter - 10" in rules


def test_no_ubuntu_builds_debian_only():
    assert [s.name for s in images.selected_images(no_ubuntu=True)] == ["debian12"]
    assert [s.name for s in images.selected_images(no_ubuntu=False)] == [
        "debian12",
        "ubuntu2204",
        "ubuntu2404",
    ]


def test_base_image_key_follows_suite_and_packages():
    debian, jammy, noble = images.IMAGES
    keys_ = {images.base_key(s) for s in (debian, jammy, noble, images.PY39_IMAGE)}
    assert len(keys_) == 4
    assert images.base_key(debian) == images.base_key(debian)


def test_overlay_digest_changes_with_a_files_content_or_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "ROOT", tmp_path)
    standin = tmp_path / "standin"
    standin.write_text("#!/bin/sh\n")
    standin.chmod(0o644)
    first = images.files_digest([standin])
    standin.chmod(0o755)
    executable = images.files_digest([standin])
    standin.write_text("#!/bin/sh\nexit 1\n")
    assert len({first, executable, images.files_digest([standin])}) == 3


def test_overlay_covers_the_standins_the_image_carries():
    files = set(images.overlay_files())
    for path in (
        REPO / "tests" / "standins" / "nvidia-smi",
        REPO / "tests" / "standins" / "lspci",
        REPO / "tests" / "standins" / "lab-hw",
        REPO / "tests" / "standins" / "hardware" / "gpus.json",
        REPO / "tests" / "lab" / "mirror-server",
        REPO / "tests" / "lab" / "lab-apt",
    ):
        assert path in files, path


def test_demo_client_key_is_private_and_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(keys, "STATE", tmp_path)
    key = keys.ensure_client_key()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    secret = key.read_text()
    assert len(secret.strip()) >= 32
    assert keys.ensure_client_key().read_text() == secret
    key.write_text("short\n")
    assert len(keys.ensure_client_key().read_text().strip()) >= 32


def test_status_lists_each_container_with_its_ssh_answer(monkeypatch, capsys):
    containers = [
        {
            "Names": ["localllm-lab-t4"],
            "State": "running",
            "Image": "localhost/localllm-lab:debian12",
            "Labels": {"io.localllm.lab.profile": "t4", "io.localllm.lab.ssh-port": "42204"},
        },
        {
            "Names": ["localllm-lab-mirror"],
            "State": "running",
            "Image": "localhost/localllm-lab:debian12",
            "Labels": {"io.localllm.lab.profile": "mirror"},
        },
        {
            "Names": ["localllm-lab-broken"],
            "State": "running",
            "Image": "localhost/localllm-lab:debian12",
            "Labels": {"io.localllm.lab.profile": "broken", "io.localllm.lab.ssh-port": "42206"},
        },
    ]

    def wait_for_ssh(port: int, timeout: float = 60) -> None:
        if port == 42206:
            raise common.LabError("no answer")

    monkeypatch.setattr(cli.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(cli, "lab_containers", lambda: containers)
    monkeypatch.setattr(cli, "wait_for_ssh", wait_for_ssh)

    assert cli.main(["status", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["host"], r["state"], r["ssh"]) for r in rows] == [
        ("broken", "running", "127.0.0.1:42206 no answer"),
        ("mirror", "running", "-"),
        ("t4", "running", "127.0.0.1:42204 ok"),
    ]
    assert cli.main(["status"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["HOST", "PROFILE", "STATE", "IMAGE", "SSH"]
    t4 = ["t4", "t4", "running", "localhost/localllm-lab:debian12", "127.0.0.1:42204", "ok"]
    assert table[3].split() == t4
    # Columns line up: every row's SSH column starts where the header's does.
    assert {row.index("127.0.0.1") for row in (table[1], table[3])} == {table[0].index("SSH")}


def test_status_without_podman_says_there_is_no_lab(monkeypatch, capsys):
    monkeypatch.setattr(cli.shutil, "which", lambda name: None)
    assert cli.main(["status"]) == 1
    assert "podman is not installed" in capsys.readouterr().out
