# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The GPU probe: one POSIX sh command per host, and parsers for everything it prints.

`PROBE_SCRIPT` gathers, in one round trip, what the tier policy needs: the `nvidia-smi`
query (with its exit code), `nvidia-smi -L` when MIG is on, `nvidia-smi topo -m` on hosts
with 8 or more GPUs, the NVIDIA devices on the PCI bus (`lspci -nn -d 10de:`, or sysfs when
pciutils is absent), the CPU count and MemTotal. Its output is sectioned with `@@` markers
so that every part stays readable when another part fails.

Everything a host prints is untrusted: parsers never evaluate it, bound what they keep and
turn every unexpected shape into a `ProbeError`/status with a message an operator can act
on. Pure standard library, Python 3.8+ (it also runs on managed hosts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LEGACY_FIELDS",
    "MINIMAL_FIELDS",
    "PROBE_FORMAT_VERSION",
    "PROBE_SCRIPT",
    "QUERY_COMMAND",
    "QUERY_FIELDS",
    "GpuDevice",
    "MigDevice",
    "NvidiaSmiResult",
    "PciDevice",
    "PciListing",
    "ProbeError",
    "ProbeReport",
    "architecture_from_codename",
    "architecture_from_compute_cap",
    "clip",
    "parse_lspci",
    "parse_meminfo",
    "parse_mig_list",
    "parse_nproc",
    "parse_probe_output",
    "parse_query",
    "parse_sysfs_pci",
    "parse_topology",
]

# ------------------------------------------------------------------------------ the probe

#: The columns the probe asks for, in the order it documents for header-less output.
#: compute_cap tells the driver role open vs proprietary modules (by GPU generation);
#: mig.mode.current keeps MIG slices from being counted as extra memory.
QUERY_FIELDS = (
    "index",
    "name",
    "uuid",
    "pci.bus_id",
    "memory.total",
    "driver_version",
    "compute_cap",
    "mig.mode.current",
)
#: Fallback for drivers that reject a field (compute_cap arrived with R510).
MINIMAL_FIELDS = ("index", "name", "uuid", "pci.bus_id", "memory.total", "driver_version")
#: The query most runbooks show (docs/reference/nvidia.md).
LEGACY_FIELDS = ("index", "name", "memory.total", "driver_version")

#: Header-less output is read by column count; these are the orders it can mean.
_ORDERS_BY_WIDTH = {len(f): f for f in (QUERY_FIELDS, MINIMAL_FIELDS, LEGACY_FIELDS)}

QUERY_COMMAND = "nvidia-smi --query-gpu={} --format=csv,nounits".format(",".join(QUERY_FIELDS))

PROBE_FORMAT_VERSION = 1

# POSIX sh only (dash, busybox ash, bash --posix); coreutils only (nproc, wc). Every external
# command reads /dev/null, output is captured then printed with a trailing newline so that
# markers always start a line. PATH is extended, not replaced: lspci is in /usr/sbin on RHEL.
PROBE_SCRIPT = r"""LC_ALL=C
export LC_ALL
PATH="${PATH:-/usr/bin:/bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH
echo '@@localllm-probe 1'
echo '@@begin nvidia-smi-query'
if command -v nvidia-smi >/dev/null 2>&1; then
  q=$(nvidia-smi --query-gpu=FIELDS --format=csv,nounits </dev/null 2>&1)
  r=$?
  case $q in
    *'not a valid field'*)
      q=$(nvidia-smi --query-gpu=MINIMAL --format=csv,nounits </dev/null 2>&1)
      r=$? ;;
  esac
  [ -n "$q" ] && printf '%s\n' "$q"
  echo "@@rc $r"
  if [ "$r" = 0 ]; then
    case $q in
      *Enabled*)
        echo '@@begin nvidia-smi-list'
        l=$(nvidia-smi -L </dev/null 2>&1)
        r=$?
        [ -n "$l" ] && printf '%s\n' "$l"
        echo "@@rc $r" ;;
    esac
    n=$(printf '%s\n' "$q" | wc -l)
    if [ "$n" -gt 8 ]; then
      echo '@@begin nvidia-smi-topo'
      t=$(nvidia-smi topo -m </dev/null 2>&1)
      r=$?
      [ -n "$t" ] && printf '%s\n' "$t"
      echo "@@rc $r"
    fi
  fi
else
  echo '@@rc 127'
fi
echo '@@begin lspci'
if command -v lspci >/dev/null 2>&1; then
  p=$(lspci -nn -d 10de: </dev/null 2>&1)
  r=$?
  [ -n "$p" ] && printf '%s\n' "$p"
  echo "@@rc $r"
else
  echo '@@rc 127'
  if [ -d /sys/bus/pci/devices ]; then
    echo '@@begin sysfs-pci'
    for d in /sys/bus/pci/devices/*; do
      [ -r "$d/vendor" ] || continue
      read -r v < "$d/vendor" || continue
      [ "$v" = 0x10de ] || continue
      c=; i=
      read -r c < "$d/class"
      read -r i < "$d/device"
      echo "${d##*/} $c $i"
    done
    echo '@@rc 0'
  fi
fi
echo '@@begin nproc'
c=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)
r=$?
[ -n "$c" ] && printf '%s\n' "$c"
echo "@@rc $r"
echo '@@begin meminfo'
if [ -r /proc/meminfo ]; then
  while read -r k v u; do
    [ "$k" = MemTotal: ] && echo "$k $v $u"
  done < /proc/meminfo
  echo '@@rc 0'
else
  echo '@@rc 1'
fi
echo '@@end'
""".replace("MINIMAL", ",".join(MINIMAL_FIELDS)).replace("FIELDS", ",".join(QUERY_FIELDS))

# Bounds on what we keep from a host: a hostile or broken host must not blow up memory or
# log lines. 8 GPUs print about 1 KiB; 64 KiB per section is generous.
MAX_SECTION_CHARS = 65536
MAX_GPUS = 64
#: No GPU has more memory than this (4 TiB; the largest today have under 300 GB): a bigger
#: figure is garbage, and taking it would hand a host the largest tier.
MAX_GPU_MEMORY_MIB = 4 << 20

# ------------------------------------------------------------------------------ results


class ProbeError(Exception):
    """The probe's output cannot be read; the message says what was wrong and what to do."""


@dataclass(frozen=True)
class MigDevice:
    """One MIG instance as `nvidia-smi -L` lists it under its GPU."""

    profile: str
    device: int
    uuid: str | None
    memory_mib: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "device": self.device,
            "uuid": self.uuid,
            "memory_mib": self.memory_mib,
        }


#: Why a GPU has (no) memory figure (`GpuDevice.memory_status`).
MEMORY_REPORTED = "reported"  # memory.total is a MiB figure
MEMORY_UNIFIED = "unified"  # `[N/A]`: the GPU shares the host's memory (GB10 / DGX Spark)
MEMORY_UNSUPPORTED = "unsupported"  # `[Not Supported]` (old drivers)
MEMORY_ERROR = "error"  # `[Unknown Error]`, `[GPU is lost]`, ...: the driver could not read it
MEMORY_ABSENT = "absent"  # the query did not ask for memory.total


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as the nvidia-smi query reports it (None: the tool printed N/A or omitted it).

    `memory_mib` is None unless `memory_status` is "reported"; "unified" (memory.total
    `[N/A]`) means the GPU uses the host's RAM, which a tier decision may size instead.
    """

    index: int
    name: str
    memory_mib: int | None
    uuid: str | None = None
    pci_bus_id: str | None = None
    driver_version: str | None = None
    compute_cap: str | None = None
    mig_enabled: bool = False
    mig_devices: tuple[MigDevice, ...] = ()
    notes: tuple[str, ...] = ()
    memory_status: str = MEMORY_REPORTED

    @property
    def architecture(self) -> str | None:
        return architecture_from_compute_cap(self.compute_cap)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "memory_mib": self.memory_mib,
            "memory_status": self.memory_status,
            "uuid": self.uuid,
            "pci_bus_id": self.pci_bus_id,
            "driver": self.driver_version,
            "compute_cap": self.compute_cap,
            "architecture": self.architecture,
            "mig_enabled": self.mig_enabled,
            "mig_devices": [m.to_dict() for m in self.mig_devices],
        }


#: NVIDIA states (nvidia-smi exit and message) the probe tells apart.
STATUS_OK = "ok"
STATUS_NOT_INSTALLED = "not_installed"  # no nvidia-smi binary (exit 127)
STATUS_DRIVER_NOT_LOADED = "driver_not_loaded"  # "couldn't communicate with the NVIDIA driver"
STATUS_NO_DEVICES = "no_devices"  # "No devices were found"
STATUS_VERSION_MISMATCH = "version_mismatch"  # "Driver/library version mismatch"
STATUS_FAILED = "failed"  # any other failure (exit code and text kept)
STATUS_GARBAGE = "garbage"  # exit 0 but the output is not the query's CSV


@dataclass(frozen=True)
class NvidiaSmiResult:
    """What `nvidia-smi --query-gpu` said: a status, the GPUs, and problems worth reporting."""

    status: str
    rc: int | None
    message: str = ""
    gpus: tuple[GpuDevice, ...] = ()
    problems: tuple[str, ...] = ()
    lost_gpus: tuple[str, ...] = ()  # PCI bus ids of GPUs nvidia-smi could not open
    notes: tuple[str, ...] = ()  # remarks about the input (lines counted once, ...)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


@dataclass(frozen=True)
class PciDevice:
    """An NVIDIA function on the PCI bus (kind: gpu, nvswitch or other)."""

    address: str
    kind: str
    class_code: str | None
    class_name: str | None
    device_id: str | None
    description: str

    @property
    def architecture(self) -> str | None:
        return architecture_from_codename(self.description)

    def as_gpu_device(self) -> dict[str, Any]:
        """A `gpu_devices` entry for a GPU seen only on PCI: no index, memory or driver yet."""
        return {
            "index": None,
            "name": self.description,
            "memory_mib": None,
            "uuid": None,
            "pci_bus_id": self.address,
            "driver": None,
            "compute_cap": None,
            "architecture": self.architecture,
            "mig_enabled": False,
            "mig_devices": [],
            "pci_device_id": self.device_id,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "pci_bus_id": self.address,
            "kind": self.kind,
            "class_code": self.class_code,
            "device_id": self.device_id,
            "name": self.description,
            "architecture": self.architecture,
        }


@dataclass(frozen=True)
class PciListing:
    """The NVIDIA devices on the bus, or why they could not be listed (available False)."""

    available: bool
    source: str | None = None  # "lspci" or "sysfs"
    devices: tuple[PciDevice, ...] = ()
    error: str = ""

    @property
    def gpus(self) -> tuple[PciDevice, ...]:
        return tuple(d for d in self.devices if d.kind == "gpu")

    @property
    def nvswitches(self) -> tuple[PciDevice, ...]:
        return tuple(d for d in self.devices if d.kind == "nvswitch")


@dataclass(frozen=True)
class ProbeReport:
    """Everything one probe run learnt about a host."""

    nvidia_smi: NvidiaSmiResult
    pci: PciListing
    cpu_count: int | None = None
    memory_mib: int | None = None
    nvlink_all_pairs: bool | None = None  # from `nvidia-smi topo -m` (None: not asked)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def nvswitch(self) -> bool:
        """NVSwitch fabric present: bridges on PCI (HGX H100) or NVLink between all GPU pairs of
        an 8+ GPU board (HGX B200, whose switches are not PCI devices)."""
        if self.pci.nvswitches:
            return True
        return bool(self.nvlink_all_pairs) and len(self.nvidia_smi.gpus) >= 8


# ------------------------------------------------------------------------------ helpers


def clip(text: str, limit: int = 160) -> str:
    """A host's text made safe for one line of a message: printable, bounded, quoted."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text.replace("\n", " | "))
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 3] + "..."
    return repr(cleaned)


_UNKNOWN_VALUES = {
    "n/a",
    "[n/a]",
    "[not supported]",
    "not supported",
    "[unknown error]",
    "[insufficient permissions]",
    "[gpu is lost]",
    "[requested functionality has been deprecated]",
    "",
}


def _value(raw: str) -> str | None:
    """A cell, or None for the N/A spellings nvidia-smi uses (bracketed or bare)."""
    text = raw.strip()
    if text.lower() in _UNKNOWN_VALUES or (text.startswith("[") and text.endswith("]")):
        return None
    return text


# ASCII digits only (re.ASCII): nvidia-smi prints nothing else, and str.isdigit()/int() accept
# digits from other scripts (and int() refuses some isdigit() accepts, such as "²").
_MIB_RE = re.compile(r"^([0-9]{1,32})(?: ?MiB)?$", re.IGNORECASE | re.ASCII)
_INDEX_RE = re.compile(r"^[0-9]{1,4}$", re.ASCII)
_DRIVER_RE = re.compile(r"^[0-9]{2,4}\.[0-9]{1,3}(?:\.[0-9]{1,3})?$", re.ASCII)
_CC_RE = re.compile(r"^([0-9]{1,2})\.([0-9]{1,2})$", re.ASCII)
_UUID_RE = re.compile(r"^(?:GPU|MIG)-[0-9A-Za-z-]{8,64}$")
_BUS_RE = re.compile(r"^(?:[0-9A-Fa-f]{4,8}:)?[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")


def _header_fields(line: str) -> tuple[str, ...] | None:
    """The field names of a CSV header line, or None when the line is not a header."""
    names = []
    for cell in line.split(","):
        name = re.sub(r"\s*\[[^\]]*\]\s*$", "", cell.strip())  # "memory.total [MiB]"
        if not re.fullmatch(r"[a-z][a-z0-9_.]*", name):
            return None
        names.append(name)
    return tuple(names) if set(names) & _HEADER_MARKERS else None


#: A line naming one of these fields is a header (a query without index is read in row order).
_HEADER_MARKERS = {"index", "name", "memory.total", "uuid", "pci.bus_id"}


_FAILURES = (
    (re.compile(r"couldn't communicate with the NVIDIA driver", re.I), STATUS_DRIVER_NOT_LOADED),
    (re.compile(r"No devices were found", re.I), STATUS_NO_DEVICES),
    (re.compile(r"Driver/library version mismatch", re.I), STATUS_VERSION_MISMATCH),
)
_HANDLE_ERROR = re.compile(r"Unable to determine the device handle for GPU\s*([0-9A-Fa-f:.]{1,32})")


def parse_query(text: str, rc: int = 0, fields: tuple[str, ...] | None = None) -> NvidiaSmiResult:
    """Read `nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]` output.

    With a header, columns are found by name (any order, units in the header or values).
    Without one, `fields` gives the order; by default it is inferred from the column count
    (the probe's QUERY_FIELDS or MINIMAL_FIELDS, or LEGACY_FIELDS). A non-zero `rc` is
    classified from nvidia-smi's message.
    """
    text = text[:MAX_SECTION_CHARS]
    lines = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
    message = " ".join(line.strip() for line in lines)

    if rc != 0:
        for pattern, status in _FAILURES:
            if pattern.search(text):
                return NvidiaSmiResult(status, rc, message)
        if rc == 127:
            return NvidiaSmiResult(STATUS_NOT_INSTALLED, rc, message or "nvidia-smi: not found")
        return NvidiaSmiResult(
            STATUS_FAILED, rc, message or f"nvidia-smi exited {rc} without a message"
        )
    for pattern, status in _FAILURES:  # some builds print these and still exit 0
        if pattern.search(text) and not any(re.match(r"^\s*[0-9]+\s*,", x) for x in lines):
            return NvidiaSmiResult(status, rc, message)

    problems: list[str] = []
    lost: list[str] = []
    rows: list[str] = []
    for line in lines:
        handle = _HANDLE_ERROR.search(line)
        if handle:
            bus = handle.group(1).rstrip(":")
            lost.append(bus.lower())
            problems.append(
                f"GPU {bus} is not accessible ({clip(line, 120)}); check "
                "`nvidia-smi -q` and the kernel log for Xid errors, or exclude it with "
                "gpu_tier_exclude_gpus"
            )
            continue
        rows.append(line)

    columns = fields
    if rows:
        header = _header_fields(rows[0])
        if header is not None:
            columns = header
            rows = rows[1:]
    if not rows:
        if problems:
            return NvidiaSmiResult(
                STATUS_FAILED, rc, "; ".join(problems), (), tuple(problems), tuple(lost)
            )
        return NvidiaSmiResult(
            STATUS_GARBAGE, rc, "nvidia-smi exited 0 but listed no GPU (empty output)"
        )
    if columns is None:
        width = len(rows[0].split(","))
        columns = _ORDERS_BY_WIDTH.get(width)
        if columns is None:
            return NvidiaSmiResult(
                STATUS_GARBAGE,
                rc,
                "cannot tell the columns of header-less output with {} fields ({}); query with a "
                "header (--format=csv,nounits) or in the probe's order: {}".format(
                    width, clip(rows[0], 80), ",".join(QUERY_FIELDS)
                ),
            )
    if "name" not in columns and "memory.total" not in columns:
        return NvidiaSmiResult(
            STATUS_GARBAGE,
            rc,
            "the query lacks name and memory.total (columns: {})".format(",".join(columns)),
        )
    if len(rows) > MAX_GPUS * 2:  # a paste repeated once is still read (duplicates below)
        return NvidiaSmiResult(
            STATUS_GARBAGE, rc, f"{len(rows)} GPU lines: more than {MAX_GPUS} GPUs"
        )

    gpus: list[GpuDevice] = []
    notes: list[str] = []
    seen: dict[str, tuple[int, GpuDevice]] = {}  # uuid / bus id -> (line, GPU)
    for number, row in enumerate(rows, 1):
        raw = row.split(",")
        extra = len(raw) - len(columns)
        if extra > 0 and "name" in columns:  # nvidia-smi does not quote: commas stay in names
            at = columns.index("name")
            raw = [*raw[:at], ",".join(raw[at : at + extra + 1]), *raw[at + extra + 1 :]]
        cells = [c.strip() for c in raw]
        if len(cells) != len(columns):
            return NvidiaSmiResult(
                STATUS_GARBAGE,
                rc,
                f"GPU line {number} has {len(cells)} fields where {len(columns)} were expected "
                f"(truncated, or not nvidia-smi output?): {clip(row, 100)}",
            )
        record = dict(zip(columns, cells))  # noqa: B905 - lengths checked above; 3.9 hosts lack strict=
        if "index" not in columns:
            record["index"] = str(number - 1)  # a pasted query without index: row order
        try:
            gpu = _gpu_from_record(record)
        except ProbeError as error:
            return NvidiaSmiResult(STATUS_GARBAGE, rc, f"GPU line {number}: {error}", tuple(gpus))
        keys = [k for k in (gpu.uuid, _bus_key(gpu.pci_bus_id)) if k]
        earlier = next((seen[k] for k in keys if k in seen), None)
        if earlier is not None:
            line, first = earlier
            if _figures(first) != _figures(gpu):
                return NvidiaSmiResult(
                    STATUS_GARBAGE,
                    rc,
                    f"GPU lines {line} and {number} name the same GPU ({clip(keys[0], 60)}) with "
                    "different figures: the output is not one nvidia-smi run",
                )
            notes.append(
                f"GPU line {number} repeats line {line} ({clip(keys[0], 60)}): counted once"
            )
            continue
        for key in keys:
            seen[key] = (number, gpu)
        gpus.append(gpu)
    if len(gpus) > MAX_GPUS:
        return NvidiaSmiResult(
            STATUS_GARBAGE, rc, f"{len(gpus)} GPUs: more than {MAX_GPUS} in one host"
        )
    indexes = [g.index for g in gpus]
    if len(set(indexes)) != len(indexes):
        return NvidiaSmiResult(STATUS_GARBAGE, rc, f"GPU indexes repeat: {indexes}")
    return NvidiaSmiResult(
        STATUS_OK, rc, "", tuple(gpus), tuple(problems), tuple(lost), tuple(notes)
    )


def _bus_key(bus: str | None) -> str | None:
    """A PCI address compared without its domain's zero padding (0000:18:00.0 = 00000000:...)."""
    if not bus:
        return None
    head, _, tail = bus.lower().rpartition(":")
    domain, _, bus_number = head.rpartition(":")
    return "{}:{}:{}".format(int(domain or "0", 16), bus_number, tail)


def _figures(gpu: GpuDevice) -> tuple[Any, ...]:
    """What two lines about one GPU must agree on."""
    return (gpu.name, gpu.memory_mib, gpu.memory_status, gpu.driver_version, gpu.compute_cap)


_MEMORY_STATUS_BY_CELL = {
    "[n/a]": MEMORY_UNIFIED,
    "n/a": MEMORY_UNIFIED,
    "[not supported]": MEMORY_UNSUPPORTED,
    "not supported": MEMORY_UNSUPPORTED,
}


def _memory(record: dict[str, str], notes: list[str]) -> tuple[int | None, str]:
    """(MiB, status) of a record's memory.total; ProbeError for a figure that cannot be true."""
    if "memory.total" not in record:
        notes.append(
            "no memory.total (the query did not ask for it: add memory.total to --query-gpu)"
        )
        return None, MEMORY_ABSENT
    raw = record["memory.total"].strip()
    text = _value(raw)
    if text is None:
        status = _MEMORY_STATUS_BY_CELL.get(raw.lower(), MEMORY_ERROR)
        notes.append("memory.total is {}".format(clip(raw or "empty", 30)))
        return None, status
    match = _MIB_RE.match(text)
    if not match:
        raise ProbeError(f"memory.total {clip(text, 40)} is not a MiB figure")
    memory_mib = int(match.group(1))
    if memory_mib > MAX_GPU_MEMORY_MIB:
        raise ProbeError(
            f"memory.total {memory_mib} MiB is more than any GPU has (at most "
            f"{MAX_GPU_MEMORY_MIB} MiB): not nvidia-smi output as printed"
        )
    return memory_mib, MEMORY_REPORTED


def _gpu_from_record(record: dict[str, str]) -> GpuDevice:
    index_text = record.get("index", "")
    if not _INDEX_RE.match(index_text):
        raise ProbeError(f"index {clip(index_text, 40)} is not a number")
    name = _value(record.get("name", "")) or "unknown NVIDIA GPU"
    if len(name) > 96:
        raise ProbeError(f"GPU name {clip(name, 40)} is too long")
    if not name.isprintable():  # escape sequences would reach operators' terminals
        raise ProbeError(f"GPU name {clip(name, 40)} contains control characters")
    notes: list[str] = []
    memory_mib, memory_status = _memory(record, notes)
    driver = _value(record.get("driver_version", "") or record.get("kmd_version", ""))
    if driver is not None and not _DRIVER_RE.match(driver):
        notes.append(f"unrecognised driver version {clip(driver, 30)}")
        driver = None
    # A GPU generation decides whether Ollama can use it and which kernel modules drive it:
    # an unreadable compute capability refuses the line rather than pass as capable.
    compute_cap = _value(record.get("compute_cap", ""))
    if compute_cap is not None and not _CC_RE.match(compute_cap):
        raise ProbeError(
            f"compute_cap {clip(compute_cap, 20)} is not a compute capability (like 8.9)"
        )
    uuid = _value(record.get("uuid", ""))
    if uuid is not None and not _UUID_RE.match(uuid):
        notes.append(f"unrecognised UUID {clip(uuid, 40)}")
        uuid = None
    bus = _value(record.get("pci.bus_id", ""))
    if bus is not None and not _BUS_RE.match(bus):
        notes.append(f"unrecognised PCI bus id {clip(bus, 30)}")
        bus = None
    mig = (_value(record.get("mig.mode.current", "")) or "").lower() == "enabled"
    return GpuDevice(
        index=int(index_text),
        name=name,
        memory_mib=memory_mib,
        uuid=uuid,
        pci_bus_id=bus,
        driver_version=driver,
        compute_cap=compute_cap,
        mig_enabled=mig,
        notes=tuple(notes),
        memory_status=memory_status,
    )


_MIG_GPU_RE = re.compile(r"^GPU\s+([0-9]{1,4}):", re.ASCII)
_MIG_LINE_RE = re.compile(
    r"^\s+MIG\s+(?P<profile>[0-9a-z+.]{1,32})\s+Device\s+(?P<device>[0-9]{1,4}):\s*"
    r"(?:\(UUID:\s*(?P<uuid>[^)\s]{1,80})\))?",
    re.ASCII,
)
_MIG_MEMORY_RE = re.compile(r"(?<![0-9])([0-9]{1,6})gb$", re.ASCII)


def parse_mig_list(text: str) -> dict[int, tuple[MigDevice, ...]]:
    """MIG instances per GPU index from `nvidia-smi -L`.

    A profile names its memory in decimal GB (`3g.40gb`); it is converted to MiB rounding
    down (40 GB -> 38146 MiB), which undercounts the real slice slightly: the safe side.
    """
    result: dict[int, list[MigDevice]] = {}
    current: int | None = None
    for line in text[:MAX_SECTION_CHARS].splitlines():
        gpu = _MIG_GPU_RE.match(line)
        if gpu:
            current = int(gpu.group(1))
            result.setdefault(current, [])
            continue
        mig = _MIG_LINE_RE.match(line)
        if mig and current is not None:
            memory = _MIG_MEMORY_RE.search(mig.group("profile"))
            result[current].append(
                MigDevice(
                    profile=mig.group("profile"),
                    device=int(mig.group("device")),
                    uuid=mig.group("uuid"),
                    memory_mib=int(memory.group(1)) * 10**9 // 2**20 if memory else None,
                )
            )
    return {index: tuple(devices) for index, devices in result.items()}


def parse_topology(text: str) -> bool | None:
    """True when `nvidia-smi topo -m` shows NVLink (NV#) between every pair of GPUs."""
    rows = [line.split() for line in text.splitlines() if re.match(r"^GPU\d+\s", line)]
    if len(rows) < 2:
        return None
    for number, cells in enumerate(rows):
        links = cells[1 : len(rows) + 1]
        if len(links) < len(rows):
            return None
        for other, link in enumerate(links):
            if other != number and not re.fullmatch(r"NV\d+", link):
                return False
    return True


# lspci's human format: [domain:]bus:dev.fn class[ [code]]: description[ [vendor:device]][ (rev xx)]
_LSPCI_RE = re.compile(
    r"^(?P<address>(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"(?P<class>[^:\[]+?)(?:\s*\[(?P<code>[0-9a-fA-F]{4})\])?:\s+(?P<rest>.*)$"
)
_IDS_RE = re.compile(r"\s*\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\]\s*$")
_NUMERIC_RE = re.compile(r"^(?:Device\s+)?(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})$")
_TRAILER_RE = re.compile(r"\s*\((?:rev [0-9a-fA-F]+|prog-if [^)]*)\)\s*")

_GPU_CLASS_CODES = {"0300", "0302", "0380"}  # VGA compatible, 3D, display controller
_BRIDGE_CLASS_CODE = "0680"  # "Bridge" (other): what NVSwitch chips report
_CLASS_NAMES = {
    "vga compatible controller": "0300",
    "3d controller": "0302",
    "display controller": "0380",
    "bridge": "0680",
    "audio device": "0403",
    "usb controller": "0c03",
    "serial bus controller": "0c80",
}


def _kind(class_code: str | None, description: str) -> str:
    if class_code in _GPU_CLASS_CODES:
        return "gpu"
    if class_code == _BRIDGE_CLASS_CODE or "nvswitch" in description.lower():
        return "nvswitch"
    return "other"


def parse_lspci(text: str) -> tuple[PciDevice, ...]:
    """NVIDIA devices from lspci output (default, -n, -nn, with or without -D).

    Lines of other vendors are skipped (input may be a full `lspci`); so are pciutils'
    warnings. Class is read from its code when printed, else from its name.
    """
    devices = []
    for line in text[:MAX_SECTION_CHARS].splitlines():
        match = _LSPCI_RE.match(line.strip())
        if not match:
            continue
        class_name = match.group("class").strip()
        code = match.group("code")
        rest = _TRAILER_RE.sub(" ", match.group("rest")).strip()
        vendor_id = device_id = None
        ids = _IDS_RE.search(rest)
        if ids:
            vendor_id, device_id = ids.group("vendor").lower(), ids.group("device").lower()
            rest = rest[: ids.start()].strip()
        numeric = _NUMERIC_RE.match(rest)
        if numeric:  # `lspci -n`: "0302: 10de:2330"
            vendor_id, device_id = numeric.group("vendor").lower(), numeric.group("device").lower()
        if re.fullmatch(r"(?:Class\s+)?[0-9a-fA-F]{4}", class_name):
            code = class_name[-4:]
            class_name = None
        if code is None and class_name:
            code = _CLASS_NAMES.get(class_name.lower())
        nvidia = vendor_id == "10de" or rest.startswith("NVIDIA Corporation")
        if not nvidia:
            continue
        description = rest[len("NVIDIA Corporation") :].strip() if not numeric else ""
        description = "".join(ch if ch.isprintable() else "?" for ch in description)[:96]
        if re.fullmatch(r"Device [0-9a-fA-F]{4}", description) and device_id is None:
            device_id = description.split()[-1].lower()
        if description in ("", "Device"):
            description = ""
        code = code.lower() if code else None
        devices.append(
            PciDevice(
                address=match.group("address").lower(),
                kind=_kind(code, description),
                class_code=code,
                class_name=class_name,
                device_id=device_id,
                description=description or "Device {}".format(device_id or "unknown"),
            )
        )
    return tuple(devices)


_SYSFS_RE = re.compile(
    r"^(?P<address>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"0x(?P<class>[0-9a-fA-F]{6})\s+0x(?P<device>[0-9a-fA-F]{4})$"
)


def parse_sysfs_pci(text: str) -> tuple[PciDevice, ...]:
    """The probe's sysfs fallback: `<address> <class 0xCCSSPP> <device 0xDDDD>` per line."""
    devices = []
    for line in text[:MAX_SECTION_CHARS].splitlines():
        match = _SYSFS_RE.match(line.strip())
        if not match:
            continue
        code = match.group("class")[:4].lower()
        device_id = match.group("device").lower()
        devices.append(
            PciDevice(
                address=match.group("address").lower(),
                kind=_kind(code, ""),
                class_code=code,
                class_name=None,
                device_id=device_id,
                description=f"Device {device_id}",
            )
        )
    return tuple(devices)


def parse_nproc(text: str) -> int | None:
    value = text.strip().splitlines()[0].strip() if text.strip() else ""
    return int(value) if re.fullmatch(r"[0-9]{1,5}", value) and int(value) > 0 else None


def parse_meminfo(text: str) -> int | None:
    """MemTotal in MiB from /proc/meminfo (kB there means KiB)."""
    match = re.search(r"^MemTotal:[ \t]+([0-9]{1,15})[ \t]*kB", text, re.MULTILINE | re.ASCII)
    return int(match.group(1)) // 1024 if match else None


_ARCH_BY_MAJOR = {3: "kepler", 5: "maxwell", 6: "pascal", 8: "ampere", 9: "hopper"}
_ARCH_BY_CC = {"7.0": "volta", "7.2": "volta", "7.5": "turing", "8.9": "ada"}


def architecture_from_compute_cap(compute_cap: str | None) -> str | None:
    """GPU generation from its compute capability (8.9 -> ada, 9.0 -> hopper, 10.0 -> blackwell)."""
    if not compute_cap:
        return None
    match = _CC_RE.match(compute_cap)
    if not match:
        return None
    if compute_cap in _ARCH_BY_CC:
        return _ARCH_BY_CC[compute_cap]
    major = int(match.group(1))
    if major in (10, 11, 12):
        return "blackwell"
    return _ARCH_BY_MAJOR.get(major)


# NVIDIA chip codenames as lspci prints them ("GH100 [H100 SXM5 80GB]", "AD102GL [L40S]").
_CODENAMES = (
    ("GB", "blackwell"),
    ("GH", "hopper"),
    ("AD", "ada"),
    ("GA", "ampere"),
    ("TU", "turing"),
    ("GV", "volta"),
    ("GP", "pascal"),
    ("GM", "maxwell"),
    ("GK", "kepler"),
)


def architecture_from_codename(description: str) -> str | None:
    match = re.match(r"^([A-Z]{2})\d{2,3}[A-Z]{0,2}\b", description or "")
    if not match:
        return None
    return dict(_CODENAMES).get(match.group(1))


# ------------------------------------------------------------------------------ the whole probe

_SECTION_NAMES = {
    "nvidia-smi-query",
    "nvidia-smi-list",
    "nvidia-smi-topo",
    "lspci",
    "sysfs-pci",
    "nproc",
    "meminfo",
}


def _sections(text: str) -> tuple[dict[str, tuple[str, int | None]], list[str]]:
    """Split probe output into {section: (body, rc)}; raise ProbeError when it is not ours."""
    lines = text.splitlines()
    notes: list[str] = []
    start = None
    for number, line in enumerate(lines):
        if line.strip().startswith("@@localllm-probe "):
            start = number
            break
    if start is None:
        first = next((line for line in lines if line.strip()), "")
        raise ProbeError(
            "the probe's output is not recognised (no '@@localllm-probe' header){}; is the "
            "remote shell POSIX sh, or does a login script or ForceCommand replace the "
            "command?".format(", it begins with " + clip(first, 80) if first else ": no output")
        )
    if start:
        notes.append(f"{start} line(s) printed before the probe (shell start-up files?)")
    version = lines[start].strip().split()[-1]
    if version != str(PROBE_FORMAT_VERSION):
        raise ProbeError(f"probe format {clip(version, 20)} is not {PROBE_FORMAT_VERSION}")
    sections: dict[str, tuple[str, int | None]] = {}
    name: str | None = None
    body: list[str] = []
    rc: int | None = None
    ended = False

    def close() -> None:
        if name is not None:
            sections[name] = ("\n".join(body)[:MAX_SECTION_CHARS], rc)

    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("@@begin "):
            close()
            name = stripped.split(None, 1)[1]
            if name not in _SECTION_NAMES or name in sections:
                raise ProbeError(f"unexpected probe section {clip(name, 40)}")
            body, rc = [], None
        elif stripped.startswith("@@rc ") and name is not None and rc is None:
            value = stripped[5:].strip()
            if not re.fullmatch(r"[0-9]{1,3}", value):
                raise ProbeError(f"bad exit code line {clip(stripped, 40)}")
            rc = int(value)
        elif stripped == "@@end":
            close()
            ended = True
            break
        elif name is not None and rc is None:
            body.append(line)
        elif name is not None:
            raise ProbeError(f"output after the exit code of section {name}: {clip(line, 60)}")
    if not ended:
        raise ProbeError(
            "the probe's output is truncated (no '@@end' marker; last section {}); the "
            "connection dropped or the command was killed".format(name or "none")
        )
    for required in ("nvidia-smi-query", "lspci"):
        if required not in sections or sections[required][1] is None:
            raise ProbeError(f"the probe's output lacks a complete {required} section")
    return sections, notes


def parse_probe_output(text: str) -> ProbeReport:
    """Parse the whole output of PROBE_SCRIPT; raises ProbeError when it is not readable."""
    sections, notes = _sections(text)
    query_text, query_rc = sections["nvidia-smi-query"]
    smi = parse_query(query_text, query_rc if query_rc is not None else 0)

    if smi.ok and "nvidia-smi-list" in sections:
        list_text, list_rc = sections["nvidia-smi-list"]
        migs = parse_mig_list(list_text) if list_rc == 0 else {}
        if list_rc != 0:
            notes.append(f"nvidia-smi -L failed (exit {list_rc})")
        smi = NvidiaSmiResult(
            smi.status,
            smi.rc,
            smi.message,
            tuple(
                _with_migs(gpu, migs.get(gpu.index, ())) if gpu.mig_enabled else gpu
                for gpu in smi.gpus
            ),
            smi.problems,
            smi.lost_gpus,
        )

    nvlink = None
    if "nvidia-smi-topo" in sections:
        topo_text, topo_rc = sections["nvidia-smi-topo"]
        nvlink = parse_topology(topo_text) if topo_rc == 0 else None

    lspci_text, lspci_rc = sections["lspci"]
    if lspci_rc == 0:
        pci = PciListing(True, "lspci", parse_lspci(lspci_text))
    elif "sysfs-pci" in sections and sections["sysfs-pci"][1] == 0:
        pci = PciListing(True, "sysfs", parse_sysfs_pci(sections["sysfs-pci"][0]))
    elif lspci_rc == 127:
        pci = PciListing(False, None, (), "lspci is not installed and /sys/bus/pci is absent")
    else:
        pci = PciListing(
            False,
            "lspci",
            (),
            "lspci failed (exit {}): {}".format(lspci_rc, clip(lspci_text or "no output", 100)),
        )

    cpu_count = parse_nproc(sections["nproc"][0]) if "nproc" in sections else None
    memory_mib = parse_meminfo(sections["meminfo"][0]) if "meminfo" in sections else None
    return ProbeReport(smi, pci, cpu_count, memory_mib, nvlink, tuple(notes))


def _with_migs(gpu: GpuDevice, migs: tuple[MigDevice, ...]) -> GpuDevice:
    return GpuDevice(
        index=gpu.index,
        name=gpu.name,
        memory_mib=gpu.memory_mib,
        uuid=gpu.uuid,
        pci_bus_id=gpu.pci_bus_id,
        driver_version=gpu.driver_version,
        compute_cap=gpu.compute_cap,
        mig_enabled=gpu.mig_enabled,
        mig_devices=migs,
        notes=gpu.notes,
    )
