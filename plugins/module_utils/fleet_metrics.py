# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The fleet's textfile collector: GPU, Ollama and host metrics for node_exporter.

Installed on every monitored host by the fleet_exporters role and run by a systemd timer
(`localllm-fleet-metrics`). Each run writes up to three files in node_exporter's textfile
directory, each atomically (a temporary name that does not end in `.prom`, then a rename:
node_exporter reads every `*.prom`, hidden ones included):

- `localllm_host.prom`    the host's tier, the GPUs the inventory expects, certificate expiry;
- `localllm_gpu.prom`     per GPU: utilisation, memory, temperature, power, ECC, persistence
                          mode, Xid errors from the kernel log; nvidia-smi's own state;
- `localllm_ollama.prom`  Ollama up, version and pin, models present and loaded (size and
                          size in VRAM), the tier's models, the last smoke test, the store's disk.

A source that fails is reported, never papered over with old values: nvidia-smi failing
gives `localllm_gpu_smi_up 0` and its state, with no per-GPU series; Ollama not answering
gives `localllm_ollama_up 0` and no model series. Nothing here carries prompt text, answers or
key material: only names, sizes, counts and states.

nvidia-smi output is read with the project's probe parser (nvidia_smi.parse_query); the
telemetry columns it does not read are parsed here. Pure functions first, I/O at the end
(`main`). Standard library only, Python 3.9+ (this runs on managed hosts).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.atomic_file import write_atomic
from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import (
    MINIMAL_FIELDS,
    NvidiaSmiResult,
    clip,
    parse_query,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import (
    ModelName,
    OllamaClient,
    OllamaError,
    OllamaUnreachable,
)

__all__ = [
    "GPU_QUERY_FIELDS",
    "TELEMETRY_FIELDS",
    "CollectorConfig",
    "ConfigError",
    "Family",
    "gpu_families",
    "host_families",
    "load_config",
    "main",
    "normalise_bus_id",
    "ollama_families",
    "parse_certificate_enddate",
    "parse_gpu_telemetry",
    "parse_xid_counts",
    "render",
    "write_textfile",
]

#: What the GPU collector asks nvidia-smi besides the probe's identity columns.
TELEMETRY_FIELDS = (
    "memory.used",
    "utilization.gpu",
    "temperature.gpu",
    "power.draw",
    "power.limit",
    "persistence_mode",
    "ecc.mode.current",
    "ecc.errors.corrected.volatile.total",
    "ecc.errors.uncorrected.volatile.total",
)
#: The whole query: the probe's minimal identity columns (read by parse_query) + telemetry.
GPU_QUERY_FIELDS = tuple(MINIMAL_FIELDS) + TELEMETRY_FIELDS

FILES = {"host": "localllm_host.prom", "gpu": "localllm_gpu.prom", "ollama": "localllm_ollama.prom"}
# Bounds on what one run keeps from its sources (a broken or hostile source must not produce
# an unbounded file): label values, models, Xid series, bytes read from a kernel log.
MAX_LABEL_CHARS = 128
MAX_MODELS = 256
MAX_XID_SERIES = 256
MAX_LOG_BYTES = 8 << 20
MIB = 1 << 20


class ConfigError(ValueError):
    """The collector's configuration file is not usable; the message says what to fix."""


# ------------------------------------------------------------------------- exposition format


@dataclass
class Family:
    """One metric family in Prometheus' text format: name, help, type and its samples."""

    name: str
    help: str
    type: str = "gauge"
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float | int | bool | None, **labels: Any) -> None:
        """Add a sample; None (the source did not say) adds nothing."""
        if value is None:
            return
        self.samples.append(({k: str(v) for k, v in labels.items()}, float(value)))


_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _label_value(text: str) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))[:MAX_LABEL_CHARS]
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(families: list[Family]) -> str:
    """The text exposition format (version 0.0.4); families without samples are left out."""
    out: list[str] = []
    for family in families:
        if not family.samples:
            continue
        if not _METRIC_NAME.match(family.name):
            raise ValueError(f"invalid metric name {family.name!r}")
        out.append(f"# HELP {family.name} {family.help}")
        out.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            if labels:
                for name in labels:
                    if not _LABEL_NAME.match(name):
                        raise ValueError(f"invalid label name {name!r} in {family.name}")
                text = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{family.name}{{{text}}} {_number(value)}")
            else:
                out.append(f"{family.name} {_number(value)}")
    return "\n".join(out) + "\n" if out else ""


def write_textfile(directory: str, name: str, text: str) -> str:
    """Write `directory/name` atomically (temporary file in the same directory, fsync, rename).

    The temporary name ends in `.tmp`: node_exporter reads every `*.prom` in the directory,
    hidden files included, so a half-written file must never carry that suffix.
    """
    if not name.endswith(".prom") or "/" in name:
        raise ValueError(f"textfile name must be a plain *.prom name, not {name!r}")
    target = os.path.join(directory, name)
    write_atomic(target, text, 0o644, prefix="." + name + ".", suffix=".tmp")
    return target


# ------------------------------------------------------------------------- nvidia-smi telemetry

_UNKNOWN = re.compile(r"^\[.*\]$|^(n/a|not supported|unknown error|)$", re.IGNORECASE)
_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)(?:\s*(?:MiB|%|W|C))?$")


def _cell_number(text: str) -> float | None:
    value = text.strip()
    if _UNKNOWN.match(value):
        return None
    match = _NUMBER.match(value)
    return float(match.group(1)) if match else None


def _cell_enabled(text: str) -> float | None:
    value = text.strip().lower()
    if value == "enabled":
        return 1.0
    if value == "disabled":
        return 0.0
    return None


def _header(line: str) -> list[str]:
    return [re.sub(r"\s*\[[^\]]*\]\s*$", "", cell.strip()) for cell in line.split(",")]


def parse_gpu_telemetry(text: str) -> dict[int, dict[str, float | None]]:
    """Telemetry per GPU index from a header-ful `--query-gpu=... --format=csv,nounits` answer.

    Only the columns of TELEMETRY_FIELDS are read (parse_query reads identity and memory):
    numbers with or without units, Enabled/Disabled as 1/0, and None for what nvidia-smi
    reports as unknown (`[N/A]`, `[Not Supported]`, ...) or cannot be read. Lines that are
    not GPU rows (errors about a lost GPU) are skipped; nvidia-smi does not quote names, so
    a name with commas is joined back as parse_query does.
    """
    lines = [line.rstrip("\r") for line in text[:MAX_LOG_BYTES].splitlines() if line.strip()]
    header_at = next((i for i, line in enumerate(lines) if line.lstrip().startswith("index")), None)
    if header_at is None:
        return {}
    columns = _header(lines[header_at])
    if "index" not in columns:
        return {}
    result: dict[int, dict[str, float | None]] = {}
    for line in lines[header_at + 1 :]:
        cells = line.split(",")
        extra = len(cells) - len(columns)
        if extra > 0 and "name" in columns:
            at = columns.index("name")
            cells = [*cells[:at], ",".join(cells[at : at + extra + 1]), *cells[at + extra + 1 :]]
        if len(cells) != len(columns):
            continue
        record = dict(zip(columns, (c.strip() for c in cells)))  # noqa: B905 - lengths checked; zip strict is 3.10+
        if not record["index"].isdigit():
            continue
        values: dict[str, float | None] = {}
        for name in TELEMETRY_FIELDS:
            if name not in record:
                continue
            convert = (
                _cell_enabled if name in ("persistence_mode", "ecc.mode.current") else _cell_number
            )
            values[name] = convert(record[name])
        result[int(record["index"])] = values
    return result


_XID = re.compile(
    r"NVRM: Xid \(PCI:(?P<bus>(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2})(?:\.[0-7])?\):"
    r"\s*(?P<xid>\d{1,4})\b"
)


def normalise_bus_id(bus: str) -> str:
    """`00000000:18:00.0`, `0000:18:00` or `18:00.0` -> `0000:18:00` (domain:bus:device)."""
    text = bus.strip().lower()
    if "." in text.rsplit(":", 1)[-1]:
        text = text.rsplit(".", 1)[0]
    parts = text.split(":")
    if len(parts) == 2:
        parts = ["0", *parts]
    if len(parts) != 3:
        return text
    domain, bus_number, device = parts
    try:
        return f"{int(domain, 16):04x}:{int(bus_number, 16):02x}:{int(device, 16):02x}"
    except ValueError:
        return text


def parse_xid_counts(text: str) -> dict[tuple[str, str], int]:
    """How many Xid events per (PCI bus id, Xid code) the kernel log shows.

    Reads NVIDIA's kernel message `NVRM: Xid (PCI:0000:18:00): 79, pid=..., ...` in any log
    format that keeps the message (dmesg, `journalctl -k`, /var/log/kern.log).
    """
    counts: dict[tuple[str, str], int] = {}
    for match in _XID.finditer(text[-MAX_LOG_BYTES:]):
        key = (normalise_bus_id(match.group("bus")), str(int(match.group("xid"))))
        if key not in counts and len(counts) >= MAX_XID_SERIES:
            continue
        counts[key] = counts.get(key, 0) + 1
    return counts


_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_ENDDATE = re.compile(
    r"notAfter=(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})"
    r"(?:\.\d+)?\s+(?P<year>\d{4})\s+GMT"
)


def parse_certificate_enddate(text: str) -> float | None:
    """`openssl x509 -noout -enddate` (`notAfter=Mar  5 04:19:00 2027 GMT`) -> Unix time."""
    match = _ENDDATE.search(text)
    if not match or match.group("mon") not in _MONTHS:
        return None
    moment = datetime(
        int(match.group("year")),
        _MONTHS[match.group("mon")],
        int(match.group("day")),
        int(match.group("h")),
        int(match.group("m")),
        int(match.group("s")),
        tzinfo=timezone.utc,  # noqa: UP017 - datetime.UTC is 3.11+; this runs on 3.9 hosts
    )
    return moment.timestamp()


# ------------------------------------------------------------------------- configuration


@dataclass
class CollectorConfig:
    """What the role wrote in /etc/localllm-fleet/metrics.json (see fleet_exporters)."""

    textfile_dir: str
    tier: str | None = None
    expected_gpus: int = 0
    gpu_enabled: bool = False
    nvidia_smi: str = "nvidia-smi"
    nvidia_smi_timeout: float = 10.0
    kernel_log: str = "journal"
    ollama_enabled: bool = False
    ollama_api_url: str = "http://127.0.0.1:11434"
    ollama_timeout: float = 5.0
    ollama_pinned_version: str = ""
    expected_models: list[str] = field(default_factory=list)
    model_store: str = ""
    smoke_file: str = ""
    certificates: list[str] = field(default_factory=list)


def _get(data: dict, key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{where}.{key} must be a number, not {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key} has the wrong type ({type(value).__name__}): {value!r}")
    return value


def load_config(data: Any) -> CollectorConfig:
    """Validate the configuration's JSON (a dict); ConfigError names the bad key."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a JSON object")
    textfile_dir = _get(data, "textfile_dir", str, "", "config")
    if not textfile_dir.startswith("/"):
        raise ConfigError(f"config.textfile_dir must be an absolute path, not {textfile_dir!r}")
    host = _get(data, "host", dict, {}, "config")
    gpu = _get(data, "gpu", dict, {}, "config")
    ollama = _get(data, "ollama", dict, {}, "config")
    tls = _get(data, "tls", dict, {}, "config")
    expected_gpus = _get(host, "expected_gpus", int, 0, "host")
    if expected_gpus < 0:
        raise ConfigError(f"host.expected_gpus must be 0 or more, not {expected_gpus}")
    models = _get(ollama, "expected_models", list, [], "ollama")
    certificates = _get(tls, "certificates", list, [], "tls")
    for name in [*models, *certificates]:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"expected model names and certificate paths, got {name!r}")
    return CollectorConfig(
        textfile_dir=textfile_dir,
        tier=_get(host, "tier", str, None, "host"),
        expected_gpus=expected_gpus,
        gpu_enabled=_get(gpu, "enabled", bool, False, "gpu"),
        nvidia_smi=_get(gpu, "nvidia_smi", str, "nvidia-smi", "gpu"),
        nvidia_smi_timeout=float(_get(gpu, "timeout", (int, float), 10, "gpu")),
        kernel_log=_get(gpu, "kernel_log", str, "journal", "gpu"),
        ollama_enabled=_get(ollama, "enabled", bool, False, "ollama"),
        ollama_api_url=_get(ollama, "api_url", str, "http://127.0.0.1:11434", "ollama"),
        ollama_timeout=float(_get(ollama, "timeout", (int, float), 5, "ollama")),
        ollama_pinned_version=_get(ollama, "pinned_version", str, "", "ollama"),
        expected_models=list(models),
        model_store=_get(ollama, "store", str, "", "ollama"),
        smoke_file=_get(ollama, "smoke_file", str, "", "ollama"),
        certificates=list(certificates),
    )


# ------------------------------------------------------------------------- families


def host_families(config: CollectorConfig, certificates: dict[str, float | None]) -> list[Family]:
    """The host's place in the fleet (tier, GPUs expected) and its certificates' expiry."""
    info = Family("localllm_host_info", "The host's tier in the fleet (gpu_tier), as a label.")
    info.add(1, tier=config.tier or "none")
    expected = Family(
        "localllm_gpu_expected_count",
        "GPUs the inventory says this host has (gpu_count, or fleet_exporters_expected_gpus).",
    )
    expected.add(config.expected_gpus)
    expiry = Family(
        "localllm_tls_certificate_expiry_timestamp_seconds",
        "When a certificate of the host expires (Unix time), per file.",
    )
    readable = Family(
        "localllm_tls_certificate_readable",
        "Whether a certificate file the collector watches could be read (1) or not (0).",
    )
    for path, when in sorted(certificates.items()):
        readable.add(when is not None, path=path)
        expiry.add(when, path=path)
    return [info, expected, expiry, readable]


def gpu_families(
    smi: NvidiaSmiResult,
    telemetry: dict[int, dict[str, float | None]],
    xids: dict[tuple[str, str], int] | None,
) -> list[Family]:
    """GPU metrics from one nvidia-smi answer and the kernel log's Xid counts.

    When nvidia-smi failed there are no per-GPU series at all (never the last good values):
    `localllm_gpu_smi_up 0` and the state in `localllm_gpu_smi_status`. `xids` None means the
    kernel log could not be read (`localllm_gpu_kernel_log_readable 0`, no Xid series).
    """
    up = Family(
        "localllm_gpu_smi_up", "Whether nvidia-smi answered with GPU data (1) or failed (0)."
    )
    up.add(smi.ok)
    status = Family(
        "localllm_gpu_smi_status",
        "nvidia-smi's state as a label (ok, not_installed, driver_not_loaded, no_devices, "
        "version_mismatch, failed, garbage, timeout); always 1.",
    )
    status.add(1, status=smi.status)
    families = [up, status]
    log_ok = Family(
        "localllm_gpu_kernel_log_readable",
        "Whether the kernel log (for Xid errors) could be read (1) or not (0).",
    )
    log_ok.add(xids is not None)
    families.append(log_ok)
    if not smi.ok:
        return families

    count = Family("localllm_gpu_count", "GPUs nvidia-smi lists.")
    count.add(len(smi.gpus))
    lost = Family(
        "localllm_gpu_lost_count",
        "GPUs nvidia-smi names but cannot open (`Unable to determine the device handle`).",
    )
    lost.add(len(smi.lost_gpus))
    info = Family(
        "localllm_gpu_info", "One series per GPU: its identity and driver version as labels."
    )
    # (nvidia-smi field, metric, help, scale to the metric's unit)
    specs = [
        ("memory.total", "localllm_gpu_memory_total_bytes", "GPU memory in total, in bytes.", MIB),
        ("memory.used", "localllm_gpu_memory_used_bytes", "GPU memory in use, in bytes.", MIB),
        ("utilization.gpu", "localllm_gpu_utilization_ratio",
         "GPU busy time over the last sample period (0-1).", 0.01),
        ("temperature.gpu", "localllm_gpu_temperature_celsius",
         "GPU core temperature in degrees Celsius.", 1),
        ("power.draw", "localllm_gpu_power_draw_watts", "Power the GPU draws, in watts.", 1),
        ("power.limit", "localllm_gpu_power_limit_watts", "The GPU's power limit, in watts.", 1),
        ("persistence_mode", "localllm_gpu_persistence_mode_enabled",
         "Whether persistence mode is on (1) or off (0).", 1),
        ("ecc.mode.current", "localllm_gpu_ecc_mode_enabled",
         "Whether ECC is on (1) or off (0); absent where the GPU has no ECC.", 1),
    ]  # fmt: skip
    counters = [
        ("ecc.errors.corrected.volatile.total", "localllm_gpu_ecc_errors_corrected_total",
         "Corrected ECC errors since the driver loaded (volatile count)."),
        ("ecc.errors.uncorrected.volatile.total", "localllm_gpu_ecc_errors_uncorrected_total",
         "Uncorrected ECC errors since the driver loaded (volatile count)."),
    ]  # fmt: skip
    gauges = {metric: Family(metric, text) for _f, metric, text, _s in specs}
    totals = {metric: Family(metric, text, "counter") for _f, metric, text in counters}
    driver = Family("localllm_nvidia_driver_info", "The NVIDIA driver version nvidia-smi reports.")
    drivers = set()
    bus_to_gpu: dict[str, dict[str, str]] = {}
    for gpu in smi.gpus:
        labels = {"gpu": str(gpu.index), "uuid": gpu.uuid or "", "name": gpu.name}
        if gpu.pci_bus_id:
            bus_to_gpu[normalise_bus_id(gpu.pci_bus_id)] = labels
        info.add(
            1, **labels, pci_bus_id=gpu.pci_bus_id or "", driver_version=gpu.driver_version or ""
        )
        if gpu.driver_version:
            drivers.add(gpu.driver_version)
        values = dict(telemetry.get(gpu.index, {}))
        values["memory.total"] = gpu.memory_mib
        for source, metric, _text, scale in specs:
            raw = values.get(source)
            gauges[metric].add(None if raw is None else raw * scale, **labels)
        for source, metric, _text in counters:
            totals[metric].add(values.get(source), **labels)
    for version in sorted(drivers):
        driver.add(1, version=version)
    xid = Family(
        "localllm_gpu_xid_errors_total",
        "Xid events in the kernel log since boot (or since the log began), per GPU and code.",
        "counter",
    )
    for (bus, code), number in sorted((xids or {}).items()):
        labels = bus_to_gpu.get(bus, {"gpu": "", "uuid": "", "name": ""})
        xid.add(number, **labels, pci_bus_id=bus, xid=code)
    return [*families, count, lost, info, driver, *gauges.values(), *totals.values(), xid]


def _model_label(name: str) -> str:
    try:
        return ModelName.parse(name).display_shortest()
    except ValueError:
        return name


def ollama_families(
    config: CollectorConfig,
    version: str | None,
    tags: list[dict[str, Any]] | None,
    loaded: list[dict[str, Any]] | None,
    *,
    smoke: list[dict[str, Any]],
    store: tuple[float, float] | None,
) -> list[Family]:
    """Ollama metrics. `version` None: Ollama did not answer (up 0, no model series).

    Model labels are names as `ollama list` shows them; nothing from a prompt or an answer.
    """
    up = Family("localllm_ollama_up", "Whether Ollama's API answered (1) or not (0).")
    up.add(version is not None)
    families = [up]

    store_avail = Family(
        "localllm_ollama_store_avail_bytes",
        "Bytes free for Ollama's model store on its filesystem (what a pull can use).",
    )
    store_size = Family(
        "localllm_ollama_store_size_bytes", "Size of the filesystem that holds the model store."
    )
    if store is not None:
        store_avail.add(store[0], path=config.model_store)
        store_size.add(store[1], path=config.model_store)
    families += [store_avail, store_size]

    smoke_ok = Family(
        "localllm_ollama_smoke_success",
        "Whether the model answered the last smoke test of a playbook run (1) or not (0).",
    )
    smoke_rate = Family(
        "localllm_ollama_smoke_tokens_per_second",
        "Tokens per second of the model's answer in the last smoke test.",
    )
    smoke_time = Family(
        "localllm_ollama_smoke_timestamp_seconds", "When the last smoke test ran (Unix time)."
    )
    for entry in smoke[:MAX_MODELS]:
        model = _model_label(str(entry.get("model") or ""))
        if not model:
            continue
        smoke_ok.add(bool(entry.get("ok")), model=model)
        rate = entry.get("tokens_per_second")
        smoke_rate.add(rate if isinstance(rate, (int, float)) else None, model=model)
        when = entry.get("timestamp")
        smoke_time.add(when if isinstance(when, (int, float)) else None, model=model)
    families += [smoke_ok, smoke_rate, smoke_time]
    if version is None:
        return families

    info = Family(
        "localllm_ollama_version_info", "Ollama's version and the version the inventory pins."
    )
    info.add(1, version=version, pinned_version=config.ollama_pinned_version)
    families.append(info)
    if config.ollama_pinned_version:
        matches = Family(
            "localllm_ollama_version_matches_pin",
            "Whether Ollama's version is the pinned one (1) or not (0).",
        )
        matches.add(version == config.ollama_pinned_version)
        families.append(matches)

    present = Family("localllm_ollama_model_present", "A model in Ollama's store (/api/tags).")
    disk = Family("localllm_ollama_model_size_bytes", "A model's size on disk.")
    for entry in (tags or [])[:MAX_MODELS]:
        model = _model_label(str(entry.get("name") or entry.get("model") or ""))
        if model:
            present.add(1, model=model)
            size = entry.get("size")
            disk.add(size if isinstance(size, (int, float)) else None, model=model)

    is_loaded = Family("localllm_ollama_model_loaded", "A model loaded in memory (/api/ps).")
    size_total = Family(
        "localllm_ollama_model_loaded_size_bytes",
        "Memory a loaded model takes (weights and KV cache), VRAM and RAM together.",
    )
    size_vram = Family(
        "localllm_ollama_model_loaded_vram_bytes", "The part of a loaded model that is in VRAM."
    )
    gpu_ratio = Family(
        "localllm_ollama_model_gpu_ratio",
        "The fraction of a loaded model in VRAM (size_vram / size); below 1, part runs on the CPU.",
    )
    loaded_names = []
    for entry in (loaded or [])[:MAX_MODELS]:
        model = _model_label(str(entry.get("name") or entry.get("model") or ""))
        if not model:
            continue
        loaded_names.append(model)
        is_loaded.add(1, model=model)
        size = entry.get("size")
        vram = entry.get("size_vram")
        size = size if isinstance(size, (int, float)) else None
        vram = vram if isinstance(vram, (int, float)) else None
        size_total.add(size, model=model)
        size_vram.add(vram, model=model)
        if size and vram is not None:
            gpu_ratio.add(min(vram / size, 1.0), model=model)

    expected_present = Family(
        "localllm_ollama_expected_model_present",
        "Whether a model the host's tier expects is in the store (1) or not (0).",
    )
    expected_loaded = Family(
        "localllm_ollama_expected_model_loaded",
        "Whether a model the host's tier expects is loaded (1) or not (0).",
    )
    present_names = [s[0]["model"] for s in present.samples]
    for expected in config.expected_models:
        try:
            wanted = ModelName.parse(expected)
        except ValueError:
            continue
        label = wanted.display_shortest()
        expected_present.add(any(wanted.same(n) for n in present_names), model=label)
        expected_loaded.add(any(wanted.same(n) for n in loaded_names), model=label)
    return [
        *families,
        present,
        disk,
        is_loaded,
        size_total,
        size_vram,
        gpu_ratio,
        expected_present,
        expected_loaded,
    ]


def collector_families(results: dict[str, tuple[bool, float]]) -> list[Family]:
    """Whether each part of the collector did its job, and how long it took."""
    success = Family(
        "localllm_metrics_collector_success",
        "Whether a part of the collector could read its sources (1) or not (0).",
    )
    duration = Family(
        "localllm_metrics_collector_duration_seconds", "How long a part of the collector took."
    )
    for name, (ok, seconds) in sorted(results.items()):
        success.add(ok, collector=name)
        duration.add(round(seconds, 6), collector=name)
    return [success, duration]


# ------------------------------------------------------------------------- I/O (the edges)


def _run(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); 127 when the program is missing, 124 on a timeout."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
            env=dict(os.environ, LC_ALL="C"),
        )
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} did not answer within {timeout:g} s"
    return done.returncode, done.stdout, done.stderr


def query_nvidia_smi(config: CollectorConfig) -> tuple[NvidiaSmiResult, str]:
    """nvidia-smi's answer (parsed) and its raw text; older drivers get the minimal query."""
    fields = GPU_QUERY_FIELDS
    for _attempt in range(2):
        argv = [config.nvidia_smi, f"--query-gpu={','.join(fields)}", "--format=csv,nounits"]
        rc, out, err = _run(argv, config.nvidia_smi_timeout)
        if rc == 124:
            return NvidiaSmiResult("timeout", rc, err), ""
        if "not a valid field" in out + err and fields != tuple(MINIMAL_FIELDS):
            fields = tuple(MINIMAL_FIELDS)
            continue
        # A GPU nvidia-smi cannot open is named on stderr; the parser counts it as lost.
        lost = [line for line in err.splitlines() if "device handle" in line]
        text = out + "\n" + "\n".join(lost) if rc == 0 else out + err
        return parse_query(text, rc), out
    return NvidiaSmiResult("failed", None, "nvidia-smi rejected the minimal query"), ""


def read_kernel_log(source: str, timeout: float = 10.0) -> str | None:
    """The kernel log's NVIDIA lines: `journal` (journalctl -k, this boot) or a file's tail."""
    if source == "journal":
        base = ["journalctl", "-k", "-b", "0", "-o", "cat", "--no-pager", "-q"]
        rc, out, err = _run([*base, "--grep=NVRM: Xid"], timeout)
        if rc == 0 or (rc == 1 and not out.strip() and not err.strip()):
            return out  # 1 without output: nothing matched
        rc, out, err = _run(base, timeout)  # journalctl built without pattern matching
        return out if rc == 0 else None
    try:
        with open(source, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            stream.seek(max(stream.tell() - MAX_LOG_BYTES, 0))
            return stream.read().decode("utf-8", "replace")
    except OSError:
        return None


def read_certificates(paths: list[str]) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    for path in paths:
        rc, out, _err = _run(["openssl", "x509", "-noout", "-enddate", "-in", path], 10)
        result[path] = parse_certificate_enddate(out) if rc == 0 else None
    return result


def read_smoke(path: str) -> list[dict[str, Any]]:
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return []
    entries = data.get("results") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    when = data.get("timestamp")
    return [dict(e, timestamp=when) for e in entries if isinstance(e, dict)]


def store_usage(path: str) -> tuple[float, float] | None:
    if not path:
        return None
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return float(stat.f_bavail * stat.f_frsize), float(stat.f_blocks * stat.f_frsize)


def _say(message: str) -> None:
    sys.stderr.write(f"localllm-fleet-metrics: {message}\n")


def collect(config: CollectorConfig) -> dict[str, str | None]:
    """Every part's file text (None: the part is off and its file must go)."""
    results: dict[str, tuple[bool, float]] = {}
    texts: dict[str, str | None] = {"gpu": None, "ollama": None}

    started = time.monotonic()
    certificates = read_certificates(config.certificates)
    host = host_families(config, certificates)
    results["host"] = (
        all(v is not None for v in certificates.values()),
        time.monotonic() - started,
    )
    for path, when in certificates.items():
        if when is None:
            _say(f"cannot read the certificate {path} (openssl x509 -enddate failed)")

    if config.gpu_enabled:
        started = time.monotonic()
        smi, raw = query_nvidia_smi(config)
        if not smi.ok:
            _say(f"nvidia-smi: {smi.status}: {clip(smi.message, 200)}")
        log = read_kernel_log(config.kernel_log)
        if log is None:
            _say(f"cannot read the kernel log ({config.kernel_log}) for Xid errors")
        families = gpu_families(
            smi, parse_gpu_telemetry(raw), None if log is None else parse_xid_counts(log)
        )
        texts["gpu"] = render(families)
        results["gpu"] = (log is not None, time.monotonic() - started)

    if config.ollama_enabled:
        started = time.monotonic()
        version = tags = loaded = None
        try:
            client = OllamaClient(config.ollama_api_url, config.ollama_timeout)
            version = client.version()
            tags = client.tags()
            loaded = client.ps()
        except (OllamaUnreachable, OllamaError, OSError, ValueError) as exc:
            _say(f"Ollama at {config.ollama_api_url}: {exc}")
            version = tags = loaded = None
        store = store_usage(config.model_store)
        texts["ollama"] = render(
            ollama_families(
                config, version, tags, loaded, smoke=read_smoke(config.smoke_file), store=store
            )
        )
        results["ollama"] = (
            store is not None or not config.model_store,
            time.monotonic() - started,
        )

    texts["host"] = render(host + collector_families(results))
    return texts


def main(argv: list[str] | None = None) -> int:
    """`localllm-fleet-metrics [--config FILE]`: one collection, files written atomically.
    `--check FILE` only validates a configuration (the role's `validate:`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = "/etc/localllm-fleet/metrics.json"
    if args[:1] in (["--config"], ["--check"]) and len(args) == 2:
        path = args[1]
    elif args:
        _say("usage: localllm-fleet-metrics [--config FILE | --check FILE]")
        return 2
    try:
        with open(path, encoding="utf-8") as stream:
            config = load_config(json.load(stream))
    except (OSError, ValueError) as exc:
        _say(f"{path}: {exc}")
        return 2
    if args[:1] == ["--check"]:
        return 0
    texts = collect(config)
    for part, text in texts.items():
        name = FILES[part]
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(config.textfile_dir, name))
        else:
            write_textfile(config.textfile_dir, name, text)
    return 0
