# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)

DOCUMENTATION = r"""
name: gpu_tier
short_description: Probe hosts' NVIDIA GPUs over SSH; give each the largest model it can serve
version_added: 0.1.0
author: localllm.fleet developers
description:
  - Reads a list of hosts (from this file, from another inventory source, or from the inventory
    built so far), runs one probe command per host over SSH in parallel (paramiko, a bounded
    pool, connect and command timeouts, host keys checked against known_hosts), and turns
    what C(nvidia-smi), C(lspci), C(nproc) and C(/proc/meminfo) report into a tier of the
    model ladder.
  - "Sets per host: C(gpu_devices), C(gpu_count), C(gpu_memory_mib_total), C(gpu_nvswitch),
    C(gpu_tier), C(gpu_tier_reason), C(gpu_tier_num_ctx), C(gpu_probe_status),
    C(ollama_models), C(host_cpu_count), C(host_memory_mib), and the server settings the fit
    assumed, which the ollama role's drop-in takes: C(gpu_tier_num_parallel),
    C(gpu_tier_kv_cache_type), C(gpu_tier_context_length), C(gpu_tier_max_loaded_models)."
  - "Groups: C(tier_<name>) per tier, C(gpu) (models on GPU, or GPUs waiting for a driver),
    C(cpu) (models on CPU), C(gpu_driver_needed) (NVIDIA GPUs on PCI without a working
    driver: no tier yet), C(gpu_unreachable) (not probed or not readable, including a driver
    that is installed but cannot read its GPUs: no tier; the reason
    is in C(gpu_tier_reason))."
  - A host that could not be read never gets a tier. Probe output is untrusted data and is
    never templated.
  - Operators steer single hosts or groups with inventory variables C(gpu_tier_pin),
    C(gpu_tier_models), C(gpu_tier_max_context) and C(gpu_tier_exclude_gpus), and the whole
    fleet with O(policy). See docs/inventory.md and docs/tiers.md. A pin the host cannot hold
    even at the tier's context fails the inventory, naming the host and the arithmetic.
  - A host's C(ollama_version) (default the collection's pinned release) sets the NVIDIA
    driver it needs; a GPU whose driver is older does not count, and a host left without GPUs
    that way lands in C(gpu_driver_needed) with the reason.
  - Hosts that serve no models (gateways, monitoring) set C(gpu_tier_probe=false); they stay
    in the inventory with their groups and variables, are not probed and get no tier
    variables and no tier group.
  - The configuration file name must end in C(gpu_tier.yml) or C(gpu_tier.yaml).
requirements:
  - paramiko on the controller
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks this file as a source for this plugin.
    required: true
    type: str
    choices: ['localllm.fleet.gpu_tier']
  hosts:
    description:
      - Hosts to probe, when they are not in another inventory source.
      - A list whose items are a host name or pattern (V(gpu[01:16].example.com),
        V(db1:2222)) or a mapping with C(name), optional C(vars) and optional C(groups);
        or a mapping of host name to its variables.
      - Mutually exclusive with O(source).
    type: raw
  vars:
    description: Variables given to every host listed in O(hosts) (a host's own vars win).
    type: dict
    default: {}
  source:
    description:
      - Another inventory source (a file or directory in YAML, INI or any enabled plugin's
        format), relative to this file. Its hosts, groups and variables are added to the
        inventory and probed.
      - When neither O(hosts) nor O(source) is given, the hosts already in the inventory are
        probed (put this file after the other sources, like M(ansible.builtin.constructed)).
    type: str
  use_vars_plugins:
    description:
      - Read group_vars/ and host_vars/ next to the inventory sources (the vars plugins) when
        working out each host's connection settings and overrides.
    type: bool
    default: true
  known_hosts:
    description:
      - OpenSSH known_hosts files the host keys are checked against, relative to this file.
        A host's C(-o UserKnownHostsFile=...) in C(ansible_ssh_common_args) and its
        ssh_config C(UserKnownHostsFile) are read as well.
    type: list
    elements: str
    default: ['~/.ssh/known_hosts']
  host_key_checking:
    description:
      - V(strict) refuses a host whose key is not in known_hosts (it lands in
        C(gpu_unreachable) with the key's fingerprint and how to add it).
      - V(accept-new) trusts a key seen for the first time, appends it to the first
        O(known_hosts) file and warns. A changed or C(@revoked) key is refused either way.
    type: str
    choices: ['strict', 'accept-new']
    default: strict
  ssh_config_file:
    description: ssh_config(5) file for HostName, Port, User, IdentityFile, ProxyCommand, ProxyJump.
    type: str
    default: ~/.ssh/config
  connect_timeout:
    description: Seconds for each of TCP connect, SSH banner and authentication.
    type: int
    default: 10
  command_timeout:
    description: Seconds the probe command may run on a host, from start to exit status.
    type: int
    default: 30
  pool_size:
    description: SSH sessions at most at once.
    type: int
    default: 50
  policy:
    description:
      - "Changes to the tier policy. Keys C(catalog) (models merged into the built-in catalog),
        C(tiers) (replaces the ladder, largest first), C(tier_models) (tier to models, for
        example C({medium: [qwq:32b]})), C(gpu_overhead_mib), C(kv_cache_type) (f16, q8_0,
        q4_0), C(num_parallel), C(min_compute_capability), C(cpu_tier),
        C(cpu_memory_reserve_mib), C(unified_memory_reserve_mib)."
      - See docs/tiers.md for the defaults and the arithmetic.
    type: dict
    default: {}
notes:
  - "Successful probes are cached per host (O(cache)); unreachable hosts are probed again on
    every build. C(ansible-inventory --flush-cache) or C(meta: refresh_inventory) re-probes all."
  - C(ansible_connection=local) hosts are probed with a local shell; other non-SSH connections
    land in C(gpu_unreachable) unless their tier is pinned.
"""

EXAMPLES = r"""
# inventories/prod/fleet.gpu_tier.yml: probe the hosts of hosts.yml (minimal)
plugin: localllm.fleet.gpu_tier
source: hosts.yml

---
# Hosts listed here, with a pinned tier for one group and keyed groups by GPU model
plugin: localllm.fleet.gpu_tier
hosts:
  - gpu[01:04].example.com
  - name: ws7.example.com
    vars:
      ansible_user: ops
    groups: [research]
vars:
  ansible_user: fleet
  ansible_ssh_private_key_file: ~/.ssh/fleet_ed25519
known_hosts:
  - ~/.ssh/known_hosts
  - known_hosts.fleet
pool_size: 100
connect_timeout: 5
policy:
  tier_models:
    medium: ["qwq:32b"]
keyed_groups:
  - key: gpu_devices | map(attribute='name') | first | default('none')
    prefix: gpu_model
compose:
  fleet_site: inventory_hostname.split('.')[1] if '.' in inventory_hostname else 'default'
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/localllm-fleet/inventory
strict: true

---
# In an inventory directory after other sources: probe every host already there
plugin: localllm.fleet.gpu_tier
host_key_checking: accept-new
"""

import difflib
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.helpers import get_group_vars
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.vars import combine_vars

from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import (
    PROBE_FORMAT_VERSION,
    ProbeError,
    clip,
    parse_probe_output,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_release import (
    PINNED_VERSION,
)
from ansible_collections.localllm.fleet.plugins.module_utils.tier_policy._catalog import (
    OVERRIDE_VARS,
    Overrides,
    Policy,
    PolicyError,
    overrides_from_vars,
    policy_from_config,
)
from ansible_collections.localllm.fleet.plugins.module_utils.tier_policy._classify import (
    HostPlan,
    classify,
    unreachable_plan,
)
from ansible_collections.localllm.fleet.plugins.module_utils.tier_policy._fit import FitRefused
from ansible_collections.localllm.fleet.plugins.plugin_utils.ssh_probe import (
    HOST_KEY_POLICIES,
    Outcome,
    ProbeSettings,
    Target,
    TargetError,
    probe_many,
    target_from_vars,
)

try:  # ansible-core >= 2.19 never templates untagged strings; wrap_var still untags explicitly
    from ansible.utils.unsafe_proxy import wrap_var as _untrusted
except ImportError:  # pragma: no cover - a future core without the compatibility shim

    def _untrusted(value: Any) -> Any:
        return value


#: Variables the plugin templates per host to reach it and to read its overrides.
CONNECTION_VARS = (
    "ansible_connection",
    "ansible_host",
    "ansible_ssh_host",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
)
BASE_GROUPS = ("gpu", "cpu", "gpu_driver_needed", "gpu_unreachable")
CACHE_FORMAT = 1

# Config files being parsed (a `source` that leads back to its own file would never end).
_ACTIVE_PATHS: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


class _Host:
    """One host to classify: its inventory name, the vars to template with, the results."""

    def __init__(self, name: str, variables: Mapping[str, Any]) -> None:
        self.name = name
        self.variables = variables
        self.connection: dict[str, Any] = {}
        self.overrides = Overrides()
        # The Ollama release the host will run: its driver must meet that release's floor.
        self.ollama_version = PINNED_VERSION
        self.signature = ""
        self.target: Target | None = None
        self.error: str | None = None


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Probe hosts' GPUs and assign tiers (see DOCUMENTATION)."""

    NAME = "localllm.fleet.gpu_tier"

    #: Replaced in tests by a fake with the same signature as ssh_probe.probe_many.
    prober = staticmethod(probe_many)

    def verify_file(self, path: str) -> bool:
        if not super().verify_file(path):
            return False
        return path.endswith(("gpu_tier.yml", "gpu_tier.yaml"))

    # ------------------------------------------------------------------ parse

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        real = os.path.realpath(path)
        with _ACTIVE_LOCK:
            if real in _ACTIVE_PATHS:
                raise AnsibleParserError(
                    f"{path}: its `source` leads back to this gpu_tier file; point source at "
                    "the inventory with the hosts (e.g. hosts.yml), not at a directory holding "
                    "this file"
                )
            _ACTIVE_PATHS.add(real)
        try:
            self._parse(path, cache)
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE_PATHS.discard(real)

    def _parse(self, path: str, cache: bool) -> None:
        config = self._load_config(path)
        base_dir = os.path.dirname(os.path.abspath(path))
        settings = self._settings(path, base_dir)
        policy = self._policy(path)
        strict = self.get_option("strict")

        if config.get("hosts") is not None and self.get_option("source"):
            raise AnsibleParserError(
                f"{path}: options `hosts` and `source` are mutually exclusive; keep one"
            )
        if config.get("hosts") is not None:
            hosts = self._hosts_from_option(path, config["hosts"])
        elif self.get_option("source"):
            hosts = self._hosts_from_source(path, base_dir)
        else:
            hosts = self._hosts_from_inventory(path)

        hosts = [host for host in hosts if self._probed(host)]
        for host in hosts:
            self._resolve(host, policy)
        records, cached, fresh = self._probe_results(path, hosts, settings, cache)
        # Each host's plan is made once: the cache keeps what it read, the inventory gets it.
        plans = {host.name: self._plan(host, records.get(host.name), policy) for host in hosts}
        self._store_cache(path, cache, cached, fresh, plans)
        self._apply(path, hosts, plans, policy, strict)

    # ------------------------------------------------------------------ configuration

    def _load_config(self, path: str) -> dict[str, Any]:
        try:
            config = self._read_config_data(path)
        except AnsibleParserError:
            raise
        except AnsibleError as error:
            raise AnsibleParserError(
                f"{path}: invalid option value: {to_native(error)}; fix the value "
                "(see `ansible-doc -t inventory localllm.fleet.gpu_tier`)"
            ) from None  # the message carries the cause; a chain would repeat it
        known = set(self._options) | {"plugin"}
        for key in config:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = (
                    f"did you mean `{close[0]}`?"
                    if close
                    else "see `ansible-doc -t inventory localllm.fleet.gpu_tier`"
                )
                raise AnsibleParserError(f"{path}: unknown option `{key}`; {hint}")
        return dict(config)

    def _settings(self, path: str, base_dir: str) -> ProbeSettings:
        def positive(option: str, maximum: int) -> int:
            value = self.get_option(option)
            if not 1 <= value <= maximum:
                raise AnsibleParserError(
                    f"{path}: option `{option}` must be between 1 and {maximum}, got {value}"
                )
            return value

        mode = self.get_option("host_key_checking")
        if mode not in HOST_KEY_POLICIES:  # choices are checked by Ansible; keep the message ours
            raise AnsibleParserError(
                f"{path}: option `host_key_checking` must be one of {', '.join(HOST_KEY_POLICIES)}"
            )
        known = tuple(
            os.path.normpath(os.path.join(base_dir, os.path.expanduser(str(p))))
            for p in self.get_option("known_hosts") or []
        )
        return ProbeSettings(
            known_hosts=known,
            host_key_checking=mode,
            connect_timeout=float(positive("connect_timeout", 600)),
            command_timeout=float(positive("command_timeout", 3600)),
            pool_size=positive("pool_size", 1000),
        )

    def _policy(self, path: str) -> Policy:
        try:
            return policy_from_config(self.get_option("policy"))
        except PolicyError as error:
            raise AnsibleParserError(
                f"{path}: option {error.option}: {error.message} (see docs/tiers.md)"
            ) from None  # the message carries the cause

    # ------------------------------------------------------------------ hosts

    def _vars_plugins_vars(self, sources: Sequence[str], entities: Sequence[Any]) -> dict[str, Any]:
        if not self.get_option("use_vars_plugins"):
            return {}
        from ansible.vars.plugins import get_vars_from_inventory_sources  # noqa: PLC0415

        return get_vars_from_inventory_sources(self.loader, list(sources), list(entities), "all")

    def _host_variables(self, host: Any, sources: Sequence[str]) -> dict[str, Any]:
        variables = combine_vars(get_group_vars(host.get_groups()), host.get_vars())
        extra = self._vars_plugins_vars(sources, [*host.get_groups(), host])
        if extra:
            variables = combine_vars(variables, extra)
        return combine_vars(variables, self._vars or {})

    def _hosts_from_option(self, path: str, raw: Any) -> list[_Host]:
        defaults = self.get_option("vars") or {}
        entries: list[tuple[str, Mapping[str, Any], Sequence[str]]] = []
        if isinstance(raw, Mapping):
            for name, host_vars in raw.items():
                if host_vars is not None and not isinstance(host_vars, Mapping):
                    raise AnsibleParserError(
                        f"{path}: option `hosts`: the value of {name!r} must be a mapping of "
                        "variables (or empty)"
                    )
                entries.append((str(name), host_vars or {}, ()))
        elif isinstance(raw, list):
            for position, item in enumerate(raw):
                if isinstance(item, str):
                    entries.append((item, {}, ()))
                elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
                    unknown = set(item) - {"name", "vars", "groups"}
                    groups = item.get("groups") or []
                    if isinstance(groups, str):
                        groups = [groups]
                    if unknown or not isinstance(item.get("vars") or {}, Mapping):
                        raise AnsibleParserError(
                            f"{path}: option `hosts[{position}]`: use keys name, vars (a "
                            f"mapping) and groups (a list); got {sorted(item)}"
                        )
                    entries.append((item["name"], item.get("vars") or {}, groups))
                else:
                    raise AnsibleParserError(
                        f"{path}: option `hosts[{position}]` must be a host name or a mapping "
                        f"with `name`, got {item!r}"
                    )
        else:
            raise AnsibleParserError(
                f"{path}: option `hosts` must be a list of host names/mappings or a mapping of "
                "host name to variables"
            )
        if not entries:
            raise AnsibleParserError(f"{path}: option `hosts` is empty; list at least one host")

        names: list[str] = []
        for pattern, host_vars, groups in entries:
            expanded, port = self._expand_hostpattern(pattern)
            for name in expanded:
                self.inventory.add_host(name, port=port)
                for key, value in combine_vars(defaults, host_vars).items():
                    self._set_host_variable(name, key, value)
                for group_name in groups:
                    group = self.inventory.add_group(str(group_name))
                    self.inventory.add_host(name, group=group)
                names.append(name)
        sources = [path]
        return [
            _Host(name, self._host_variables(self.inventory.get_host(name), sources))
            for name in dict.fromkeys(names)
        ]

    def _hosts_from_source(self, path: str, base_dir: str) -> list[_Host]:
        from ansible.inventory.manager import InventoryManager  # noqa: PLC0415

        source = os.path.normpath(
            os.path.join(base_dir, os.path.expanduser(str(self.get_option("source"))))
        )
        if not os.path.exists(source):
            raise AnsibleParserError(
                f"{path}: option `source`: {source} does not exist (paths are relative to "
                "this file)"
            )
        if os.path.isdir(source) and os.path.realpath(path).startswith(
            os.path.realpath(source) + os.sep
        ):
            raise AnsibleParserError(
                f"{path}: option `source` is the directory holding this file, so its `source` "
                "leads back to this gpu_tier file; point it at the inventory file with the hosts "
                "(e.g. hosts.yml)"
            )
        if os.path.isfile(source) and self.verify_file(source):
            raise AnsibleParserError(
                f"{path}: option `source` names another gpu_tier file ({source}); point it at "
                "the inventory that lists the hosts"
            )
        try:
            manager = InventoryManager(loader=self.loader, sources=[source])
        except AnsibleError as error:
            raise AnsibleParserError(
                f"{path}: option `source`: {source} could not be parsed: {to_native(error)}"
            ) from None  # the message carries the cause
        if not manager.hosts:
            raise AnsibleParserError(
                f"{path}: option `source`: {source} has no hosts (is it an inventory file an "
                "enabled inventory plugin reads?)"
            )
        for group in manager.groups.values():
            self.inventory.add_group(group.name)
            for key, value in group.get_vars().items():
                self.inventory.set_variable(group.name, key, value)
        for group in manager.groups.values():
            for child in group.child_groups:
                self.inventory.add_child(group.name, child.name)
        hosts = []
        for host in manager.hosts.values():
            self.inventory.add_host(host.name)
            # The source's own inventory_dir/inventory_file: templates in its vars (key
            # paths like "{{ inventory_dir }}/...") must resolve as they do in the source.
            for key, value in host.get_vars().items():
                self._set_host_variable(host.name, key, value)
            for group in host.get_groups():
                if group.name != "all":
                    self.inventory.add_host(host.name, group=group.name)
            hosts.append(_Host(host.name, self._host_variables(host, [source])))
        return hosts

    def _hosts_from_inventory(self, path: str) -> list[_Host]:
        if not self.inventory.hosts:
            raise AnsibleParserError(
                f"{path}: no hosts to probe: give `hosts` or `source`, or list this file after "
                "the inventory sources that define the hosts"
            )
        try:
            sources = list(self.inventory.processed_sources)
        except AttributeError:
            sources = []
        return [
            _Host(name, self._host_variables(host, sources))
            for name, host in self.inventory.hosts.items()
        ]

    # ------------------------------------------------------------------ per-host settings

    def _probed(self, host: _Host) -> bool:
        """False for a host whose `gpu_tier_probe` is false: it serves no models."""
        value = host.variables.get("gpu_tier_probe", True)
        if isinstance(value, str):
            value = self._template(host.variables, value)
        if not isinstance(value, (bool, str)):
            raise AnsibleParserError(
                f"host {host.name}: gpu_tier_probe must be true or false, got {value!r}"
            )
        if isinstance(value, str):
            from ansible.module_utils.parsing.convert_bool import boolean  # noqa: PLC0415

            try:
                value = boolean(value, strict=True)
            except TypeError:
                raise AnsibleParserError(
                    f"host {host.name}: gpu_tier_probe must be true or false, got {value!r}"
                ) from None
        return bool(value)

    def _template(self, variables: Mapping[str, Any], value: Any) -> Any:
        self.templar.available_variables = variables
        return self.templar.template(value)

    def _resolve(self, host: _Host, policy: Policy) -> None:
        """Template the host's connection vars and overrides; errors become host errors,
        except malformed overrides, which are configuration errors."""
        for key in (*CONNECTION_VARS, *OVERRIDE_VARS.values(), "ollama_version"):
            if key in host.variables:
                try:
                    value = self._template(host.variables, host.variables[key])
                except Exception as error:  # undefined variables, bad filters, vault errors
                    if key in (*OVERRIDE_VARS.values(), "ollama_version"):
                        raise AnsibleParserError(
                            f"host {host.name}: cannot template {key}: {to_native(error)}"
                        ) from None  # the message carries the cause
                    host.error = f"cannot template {key}: {to_native(error)}"
                    return
                host.connection[key] = value
        try:
            host.overrides = overrides_from_vars(host.connection, policy)
        except PolicyError as error:
            raise AnsibleParserError(
                f"host {host.name}: {error.option}: {error.message} (set at host or group level)"
            ) from None  # the message carries the cause
        version = host.connection.get("ollama_version")
        if version not in (None, ""):
            host.ollama_version = str(version)
        c = host.connection
        connection = str(c.get("ansible_connection") or "ssh").split(".")[-1]
        if connection == "local":
            host.signature = "local"
        else:
            address = c.get("ansible_host") or c.get("ansible_ssh_host") or host.name
            port = c.get("ansible_port") or c.get("ansible_ssh_port") or ""
            user = c.get("ansible_user") or c.get("ansible_ssh_user") or ""
            host.signature = f"{connection}:{user}@{address}:{port}"

    def _target(self, host: _Host) -> Target | None:
        try:
            return target_from_vars(
                host.name,
                host.connection,
                self.get_option("ssh_config_file"),
                default_user=getattr(C, "DEFAULT_REMOTE_USER", None),
                default_key_file=getattr(C, "DEFAULT_PRIVATE_KEY_FILE", None),
            )
        except TargetError as error:
            host.error = str(error)
            return None

    # ------------------------------------------------------------------ probing and cache

    def _probe_results(
        self, path: str, hosts: list[_Host], settings: ProbeSettings, cache: bool
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, dict[str, Any]]]:
        """Probe records per host name (cached ones when valid, fresh ones otherwise), the
        cache's records as read, and the fresh records (by host name)."""
        cached: dict[str, Any] = {}
        if self.get_option("cache") and cache:
            try:
                data = self._cache[self.get_cache_key(path)]
                if isinstance(data, Mapping) and data.get("format") == CACHE_FORMAT:
                    cached = dict(data.get("hosts") or {})
            except KeyError:
                pass

        records: dict[str, dict[str, Any]] = {}
        to_probe: list[Target] = []
        for host in hosts:
            if host.error:
                continue
            record = cached.get(host.name)
            if (
                isinstance(record, Mapping)
                and record.get("signature") == host.signature
                and record.get("probe_format") == PROBE_FORMAT_VERSION
            ):
                records[host.name] = dict(record)
                continue
            target = self._target(host)
            if target is not None:
                to_probe.append(target)

        warnings: list[str] = []
        fresh: dict[str, Outcome] = (
            self.prober(to_probe, settings, warnings.append) if to_probe else {}
        )
        for message in warnings:
            self.display.warning(message)
        by_name = {host.name: host for host in hosts}
        new: dict[str, dict[str, Any]] = {}
        for name, outcome in fresh.items():
            new[name] = {
                "signature": by_name[name].signature,
                "probe_format": PROBE_FORMAT_VERSION,
                "output": outcome.output,
                "error": outcome.error,
                "exit_status": outcome.exit_status,
                "stderr": outcome.stderr,
                "seconds": round(outcome.seconds, 3),
            }
        records.update(new)
        return records, cached, new

    def _store_cache(
        self,
        path: str,
        cache: bool,
        cached: dict[str, Any],
        fresh: Mapping[str, dict[str, Any]],
        plans: Mapping[str, HostPlan],
    ) -> None:
        """Write the fresh records of hosts that were read (with the still valid cached ones).

        Only what was read is cached: an unreadable host is probed again next time, so that a
        fix (or a transient failure) shows at once.
        """
        if not self.get_option("cache"):
            return
        readable = {name: record for name, record in fresh.items() if not plans[name].unreadable}
        if readable or not cache:
            self._cache[self.get_cache_key(path)] = {
                "format": CACHE_FORMAT,
                "hosts": {**cached, **readable},
            }

    # ------------------------------------------------------------------ results

    def _plan(self, host: _Host, record: Mapping[str, Any] | None, policy: Policy) -> HostPlan:
        if host.error:
            return self._unread(host, f"cannot probe: {host.error}", policy)
        if record is None:
            return self._unread(host, "not probed (no connection settings)", policy)
        if record.get("error"):
            return self._unread(host, f"probe failed: {record['error']}", policy)
        try:
            report = parse_probe_output(record.get("output") or "")
        except ProbeError as error:
            detail = ""
            if record.get("exit_status") not in (0, None):
                stderr = clip(record.get("stderr") or "", 120)
                detail = f" (exit status {record['exit_status']}, stderr {stderr})"
            return self._unread(host, f"probe output unreadable: {error}{detail}", policy)
        try:
            return classify(report, policy, host.overrides, host.ollama_version)
        except FitRefused as error:
            raise AnsibleParserError(
                f"host {host.name}: {error.message} (see docs/tiers.md, 'Pins that do not fit')"
            ) from None  # the message carries the arithmetic
        except PolicyError as error:
            raise AnsibleParserError(
                f"host {host.name}: {error.option}: {error.message} (set at host or group level)"
            ) from None  # the message carries the cause

    @staticmethod
    def _unread(host: _Host, reason: str, policy: Policy) -> HostPlan:
        """A host we could not read: no tier, unless the operator pinned one."""
        return unreachable_plan(reason, policy, host.overrides)

    def _apply(
        self,
        path: str,
        hosts: list[_Host],
        plans: Mapping[str, HostPlan],
        policy: Policy,
        strict: bool,
    ) -> None:
        for group in (*BASE_GROUPS, *(f"tier_{t.name}" for t in policy.tiers)):
            self.inventory.add_group(group)
        unreachable: list[str] = []
        for host in hosts:
            plan = plans[host.name]
            for key, value in plan.to_vars().items():
                self._set_host_variable(host.name, key, _untrusted(value))
            for group in plan.groups:
                # add_host, not add_child: a host may share its name with a group (the
                # lab has a host called `cpu`), and add_child would pick the group.
                self.inventory.add_host(host.name, group=group)
            for warning in plan.warnings:
                self.display.warning(f"gpu_tier: {host.name}: {warning}")
            if plan.unreadable:
                unreachable.append(f"{host.name}: {plan.reason}")

        if unreachable:
            if strict:
                raise AnsibleParserError(
                    f"{path}: {len(unreachable)} of {len(hosts)} host(s) could not be read "
                    "(strict: true):\n  " + "\n  ".join(unreachable)
                )
            for line in unreachable:
                self.display.warning(f"gpu_tier: gpu_unreachable: {line}")

        for host in hosts:
            self._construct(host.name, strict)

    def _set_host_variable(self, name: str, key: str, value: Any) -> None:
        # On the host itself: InventoryData.set_variable picks a group of the same name
        # first, so a host called like a group (`cpu`, `gpu`, a tier) would give its
        # variables to every member of that group.
        self.inventory.get_host(name).set_variable(key, value)

    def _set_composite_vars(self, compose, variables, host, strict=False):
        # Constructable's own, but through _set_host_variable (see there).
        if not isinstance(compose, dict):
            return
        for varname, expression in compose.items():
            try:
                composite = self._compose(expression, variables)
            except Exception as error:
                if strict:
                    raise AnsibleError(
                        f"Could not set {varname} for host {host}: {to_native(error)}"
                    ) from error
                continue
            self._set_host_variable(host, varname, composite)

    def _construct(self, name: str, strict: bool) -> None:
        inventory_host = self.inventory.get_host(name)
        variables = combine_vars(
            get_group_vars(inventory_host.get_groups()), inventory_host.get_vars()
        )
        try:
            self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
            variables = combine_vars(
                get_group_vars(inventory_host.get_groups()), inventory_host.get_vars()
            )
            self._add_host_to_composed_groups(
                self.get_option("groups"), variables, name, strict=strict, fetch_hostvars=False
            )
            self._add_host_to_keyed_groups(
                self.get_option("keyed_groups"),
                variables,
                name,
                strict=strict,
                fetch_hostvars=False,
            )
        except AnsibleParserError:
            raise
        except AnsibleError as error:
            raise AnsibleParserError(
                f"host {name}: {to_native(error)}"
            ) from None  # the message carries the cause
