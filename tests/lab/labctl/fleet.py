"""The fleet as inventories/lab/hosts.yml defines it, and starting (or keeping) its hosts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from .common import IMAGE_REPO, LABEL, PREFIX, ROOT, STATE, LabError, log, podman
from .containers import ensure_container, lab_containers, ready_marker, wait_for_ssh

INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"

# --------------------------------------------------------------------------- fleet definition


@dataclass(frozen=True)
class Host:
    name: str
    port: int
    profile: str
    image: str
    ip: str
    # Extra ports published on the controller's loopback, "CONTROLLER_PORT:HOST_PORT".
    publish: tuple[str, ...] = ()
    # No resolver: names come from /etc/hosts only (the lab's hosts), nothing else resolves.
    offline_dns: bool = False

    @property
    def container(self) -> str:
        return PREFIX + self.name


def load_fleet() -> tuple[list[Host], dict]:
    try:
        import yaml  # only here, so that `down` works without the venv
    except ImportError as exc:
        raise LabError("PyYAML is missing: run scripts/setup, then use .venv/bin/python") from exc
    data = yaml.safe_load(INVENTORY.read_text())
    group = data["all"]["children"]["lab"]
    common = group.get("vars", {})
    hosts = []
    for name, hostvars in group["hosts"].items():
        merged = {**common, **(hostvars or {})}
        hosts.append(
            Host(
                name,
                int(merged["ansible_port"]),
                merged["lab_profile"],
                merged.get("lab_image", "debian12"),
                str(merged["lab_ip"]),
                tuple(str(p) for p in merged.get("lab_publish") or ()),
                bool(merged.get("lab_offline_dns", False)),
            )
        )
    subnet = ipaddress.ip_network(str(common["lab_subnet"]))
    for address in [h.ip for h in hosts] + [str(common["lab_mirror_ip"])]:
        if ipaddress.ip_address(address) not in next(subnet.subnets(prefixlen_diff=1)):
            raise LabError(
                f"{INVENTORY.name}: lab address {address} must be in the lower half of "
                f"lab_subnet {subnet} (the upper half is for scenario hosts)"
            )
    return hosts, common


# --------------------------------------------------------------------------- the hosts


def start_host(host: Host, authorized: Path, hosts: list[Host], common: dict) -> None:
    image = f"{IMAGE_REPO}:{host.image}"

    def provision() -> None:
        podman("exec", host.container, "/opt/localllm-lab/bin/lab-hw", "apply", host.profile)
        point_apt_at_mirror(host.container, common)

    extra: list[str] = []
    for mapping in host.publish:
        outside, inside = mapping.split(":")
        extra += ["-p", f"127.0.0.1:{int(outside)}:{int(inside)}"]
    if host.offline_dns:
        # Nothing answers DNS on the host's own loopback: a lookup of any name that is not in
        # /etc/hosts fails at once, and /etc/hosts holds the lab's hosts only.
        extra += ["--dns", "127.0.0.1", "--add-host", f"mirror:{common['lab_mirror_ip']}"]
        extra += [arg for other in hosts for arg in ("--add-host", f"{other.name}:{other.ip}")]
    created = ensure_container(
        host.container,
        image,
        [
            "--hostname",
            host.name,
            "--ip",
            host.ip,
            "--label",
            f"{LABEL}.profile={host.profile}",
            "--label",
            f"{LABEL}.ssh-port={host.port}",
            "-p",
            f"127.0.0.1:{host.port}:22",
            *extra,
            "-v",
            f"{authorized}:/etc/ssh/localllm-lab/authorized_keys:ro",
        ],
        provision,
    )
    if created:
        log(f"{host.name}: started ({host.profile}, ssh 127.0.0.1:{host.port})")


def point_apt_at_mirror(container: str, common: dict) -> None:
    """The host's apt reads the lab mirror only (tests/lab/lab-apt)."""
    keyring = STATE / "mirror" / "debian" / "localllm-lab-archive.gpg"
    podman("cp", str(keyring), f"{container}:/etc/localllm-lab/archive.gpg")
    podman(
        "exec", container, "/opt/localllm-lab/bin/lab-apt", str(common["lab_mirror_url"]),
        "/etc/localllm-lab/archive.gpg",
    )  # fmt: skip


def remove_strays(hosts: list[Host]) -> None:
    """Remove lab hosts that the inventory no longer lists (a renamed or dropped host)."""
    wanted = {h.container for h in hosts} | {PREFIX + "mirror"}
    for entry in lab_containers():
        name = entry["Names"][0]
        if name not in wanted:
            podman("rm", "-f", "-t", "0", name)
            ready_marker(name).unlink(missing_ok=True)
            log(f"{name.removeprefix(PREFIX)}: removed (no longer in {INVENTORY.name})")


def collect_host_keys(hosts: list[Host]) -> None:
    lines = []
    for host in hosts:
        wait_for_ssh(host.port)
        for kind in ("ed25519", "ecdsa", "rsa"):
            result = podman(
                "exec", host.container, "cat", f"/etc/ssh/ssh_host_{kind}_key.pub", check=False
            )
            if result.returncode == 0 and result.stdout.strip():
                algorithm, key = result.stdout.split()[:2]
                lines.append(f"[127.0.0.1]:{host.port} {algorithm} {key}")
    path = STATE / "ssh" / "known_hosts"
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(lines) + "\n")
    temporary.replace(path)
