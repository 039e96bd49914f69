"""Loaded models, keep-alive and GPU placement (server/sched.go, in outline).

GPUs are discovered through `nvidia-smi` (the lab's hosts simulate their hardware with a
stand-in nvidia-smi; real Ollama asks the CUDA driver). CUDA_VISIBLE_DEVICES filters them,
and so does the driver floor of discover/cuda_compat.go (550+, 570+ for compute capability
below 7.0). A "loaded" model costs nothing here; its reported size is what the model stands
for (the GGUF's size, or for the lab's tiny GGUFs the weights its parameter count implies at
Q4_K_M) plus the KV cache of its context, placed as Ollama places it: on one GPU when it fits
there, else spread over all, and the layers that do not fit on the CPU (size_vram < size).
A further model that does not fit beside the loaded ones makes the scheduler unload the idle
one with the shortest keep-alive first (findRunnerToUnload), as upstream does.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import envconfig
from .gojson import MAX_DURATION


@dataclass
class GPU:
    index: int
    uuid: str
    name: str
    total: int  # bytes
    used: int
    driver: str = ""  # e.g. 550.54.15 ("" when nvidia-smi did not say)
    compute: str = ""  # e.g. 9.0
    bus: str = ""

    @property
    def driver_major(self) -> int:
        head = self.driver.split(".", 1)[0]
        return int(head) if head.isdigit() else 0

    @property
    def compute_major(self) -> int:
        head = self.compute.split(".", 1)[0]
        return int(head) if head.isdigit() else 0


#: discover/cuda_compat.go at v0.32.15: the CUDA 12 build's compressed fatbins need 550+, and
#: the PTX it JIT-compiles for Maxwell and Pascal (compute capability 5.x, 6.x) 570+.
MIN_DRIVER = 550
MIN_DRIVER_LEGACY = 570
#: Ollama keeps this much of each CUDA GPU free (ml.DeviceInfo.MinimumMemory).
MINIMUM_MEMORY = 457 << 20
#: What a Q4_K_M GGUF holds per parameter (the library's 404 GB for 671B, 20 GB for 32.8B).
Q4_K_M_BYTES_PER_PARAMETER = 0.6

_QUERY = "index,uuid,name,memory.total,memory.used,driver_version,compute_cap,pci.bus_id"


def _field(parts: list[str], index: int) -> str:
    value = parts[index] if index < len(parts) else ""
    return "" if value.startswith("[") or value in ("N/A", "") else value


def discover_gpus(warn=None) -> list[GPU]:
    """The CUDA devices Ollama would use: nvidia-smi's GPUs, CUDA_VISIBLE_DEVICES, and the
    driver floor (a GPU whose driver is too old is left out, with Ollama's warning)."""
    binary = shutil.which("nvidia-smi")
    if not binary:
        return []
    try:
        proc = subprocess.run(
            [binary, f"--query-gpu={_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    gpus = []
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue
        try:
            gpus.append(
                GPU(
                    int(parts[0]),
                    parts[1],
                    parts[2],
                    int(float(parts[3])) << 20,
                    int(float(parts[4])) << 20,
                    _field(parts, 5),
                    _field(parts, 6),
                    _field(parts, 7),
                )
            )
        except ValueError:
            continue
    visible = envconfig.var("CUDA_VISIBLE_DEVICES")
    if visible:
        wanted = [v.strip() for v in visible.split(",")]
        gpus = [g for g in gpus if str(g.index) in wanted or g.uuid in wanted]
    kept = []
    for gpu in gpus:
        driver = gpu.driver_major
        if not driver:  # "could not verify NVIDIA driver compatibility": devices kept
            kept.append(gpu)
            continue
        required = None
        if driver < MIN_DRIVER:
            required = f"{MIN_DRIVER} or newer"
        elif driver < MIN_DRIVER_LEGACY and 0 < gpu.compute_major < 7:
            required = f"{MIN_DRIVER_LEGACY} or newer"
        if required is None:
            kept.append(gpu)
        elif warn is not None:
            warn(
                f'msg="NVIDIA driver too old" device="{gpu.name}" compute={gpu.compute} '
                f'driver={driver} required_driver="{required}"'
            )
    return kept


def weights_bytes(file_size: int, sizes: list[str]) -> int:
    """What the model's weights take in memory: the GGUF's size, or, for one of the lab's
    tiny GGUFs that stand for a real model, the size that model's parameter count implies."""
    parameters = next((p for p in map(_parameters, sizes) if p >= 1e8), 0.0)
    return max(int(file_size), int(parameters * Q4_K_M_BYTES_PER_PARAMETER))


# Memory bandwidth (GB/s) of the GPUs the lab simulates; decoding a token reads the model's
# active weights once, so bandwidth / bytes bounds tokens per second.
_BANDWIDTH_GBPS = {
    "H100": 3350,
    "H200": 4800,
    "B200": 8000,
    "A100": 2039,
    "L40S": 864,
    "A40": 696,
    "A10G": 600,
    "RTX 4090": 1008,
    "RTX 3090": 936,
    "T4": 320,
    "L4": 300,
}
_CPU_BANDWIDTH_GBPS = 40


def _parameters(label: str) -> float:
    """`671.0B` / `32b` / `1.5b` -> a parameter count; 0 when the label is no size."""
    text = label.strip().upper()
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(text[-1:], 0)
    try:
        return float(text[:-1]) * scale
    except ValueError:
        return 0.0


def simulated_tokens_per_second(gpus: list[GPU], sizes: list[str], architecture: str) -> float:
    """A plausible decode rate for the model the GGUF claims to be, on the simulated hardware.

    The lab's models are tiny: without pacing the stand-in would report hundreds of
    thousands of tokens per second. Decoding is memory-bound: each token reads the active
    weights once (Q4_K_M: about 0.57 bytes per parameter) from one GPU at a time when layers
    are split, at about 60% of peak bandwidth (20% for DeepSeek's mixture of experts, whose
    routing llama.cpp does not overlap). Only used when OLLAMA_STANDIN_PACE is set; `sizes`
    are candidate labels (details.parameter_size, the model's tag, its parent's tag).
    """
    # The first label that reads as a real model's size: the GGUF's own count is tiny in the
    # lab, so the model's tag (deepseek-r1:32b) or its parent's says what it stands for.
    parameters = next((p for p in map(_parameters, sizes) if p >= 1e8), 0.0)
    if parameters <= 0:
        return 50.0
    efficiency = 0.6
    if architecture == "deepseek2" and parameters > 100e9:
        parameters, efficiency = 37e9, 0.2  # active parameters per token
    bandwidth = _CPU_BANDWIDTH_GBPS
    for gpu in gpus:
        for name, gbps in _BANDWIDTH_GBPS.items():
            if name in gpu.name:
                bandwidth = gbps
                break
    rate = efficiency * bandwidth * 1e9 / (parameters * 0.57)
    return max(2.0, min(rate, 250.0))


def default_num_ctx(gpus: list[GPU]) -> int:
    total = sum(max(g.total - envconfig.gpu_overhead(), 0) for g in gpus)
    gib = 1 << 30
    if total >= 47 * gib:
        return 262144
    if total >= 23 * gib:
        return 32768
    return 4096


@dataclass
class Runner:
    name: str  # fully qualified
    short: str
    digest: str
    details: dict[str, Any]
    size: int
    size_vram: int
    context_length: int
    session_ns: int
    expires_at_ns: int = 0
    refs: int = 0
    loaded_at_ns: int = field(default_factory=time.time_ns)
    gpu_use: dict[int, int] = field(default_factory=dict)  # GPU index -> bytes taken there


def place(gpus: list[GPU], taken: dict[int, int], size: int, layers: int) -> dict[int, int]:
    """Bytes per GPU for a model of `size` in `layers` layers (llm/memory.go in outline): the
    GPU with the most free memory when the whole model fits there, else whole layers spread
    over the GPUs by free memory; the layers that fit nowhere stay on the CPU."""
    free = {
        g.index: max(
            g.total - g.used - MINIMUM_MEMORY - envconfig.gpu_overhead() - taken.get(g.index, 0),
            0,
        )
        for g in gpus
    }
    if not free:
        return {}
    best = max(free, key=lambda i: free[i])
    if size <= free[best] and not envconfig.env_bool("OLLAMA_SCHED_SPREAD"):
        return {best: size}
    layers = max(layers, 1)
    layer = -(-size // layers)
    use: dict[int, int] = {}
    left = layers
    for index in sorted(free, key=lambda i: -free[i]):
        fit = min(left, free[index] // layer)
        if fit:
            use[index] = fit * layer
            left -= fit
        if not left:
            break
    if not left:  # every layer on a GPU: the rounding of layer sizes is no real memory
        last = list(use)[-1]
        use[last] -= sum(use.values()) - size
    return use


class Scheduler:
    def __init__(self, gpus: list[GPU], log) -> None:
        self.gpus = gpus
        self.log = log
        self.lock = threading.Condition()
        self.runners: dict[str, Runner] = {}
        self.pending = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reap, name="sched-reaper", daemon=True)
        self._thread.start()

    def vram_free(self) -> int:
        total = sum(
            max(g.total - g.used - MINIMUM_MEMORY - envconfig.gpu_overhead(), 0) for g in self.gpus
        )
        return total - sum(r.size_vram for r in self.runners.values())

    def taken(self) -> dict[int, int]:
        use: dict[int, int] = {}
        for runner in self.runners.values():
            for index, amount in runner.gpu_use.items():
                use[index] = use.get(index, 0) + amount
        return use

    def _victim(self) -> Runner | None:
        """findRunnerToUnload: the idle runner with the shortest keep-alive (then by name);
        none idle: None (the caller waits)."""
        order = sorted(
            self.runners.values(), key=lambda r: (min(r.session_ns, MAX_DURATION), r.name)
        )
        return next((r for r in order if r.refs == 0), None)

    def max_runners(self) -> int:
        configured = envconfig.max_loaded_models()
        if configured:
            return configured
        return 3 * max(len(self.gpus), 1)

    def acquire(self, name: str, build: Any, session_ns: int | None) -> Runner:
        """Get (loading if needed) the runner for `name`; build(taken) returns a new Runner
        placed beside what the loaded runners take of each GPU."""
        with self.lock:
            if self.pending >= envconfig.max_queue():
                raise QueueFull()
            self.pending += 1
        try:
            with self.lock:
                runner = self.runners.get(name)
                if runner is None:
                    while True:
                        if len(self.runners) >= self.max_runners():
                            victim = self._victim()
                            if victim is None:
                                self.lock.wait(0.1)
                                continue
                            self.log(
                                "DEBUG",
                                'msg="max runners achieved, unloading one to make room"',
                            )
                            self._unload(victim)
                            continue
                        runner = build(self.taken())
                        if self.runners and self.gpus and runner.size_vram < runner.size:
                            # requireFull: another model loads only when it fits entirely
                            # beside the loaded ones; else the shortest keep-alive goes.
                            victim = self._victim()
                            if victim is not None:
                                self.log(
                                    "INFO",
                                    'msg="model predicted to exceed available memory, '
                                    f'evicting" model={runner.short} evicting={victim.short}',
                                )
                                self._unload(victim)
                                continue
                            if any(r.refs > 0 for r in self.runners.values()):
                                # every loaded model is answering: Ollama waits for one to
                                # finish and unloads it then, not loading beside it
                                self.lock.wait(0.1)
                                continue
                        break
                    self.runners[name] = runner
                runner.refs += 1
                if session_ns is not None:  # useLoadedRunner: only a request's own keep_alive
                    runner.session_ns = session_ns
                return runner
        finally:
            with self.lock:
                self.pending -= 1

    def release(self, runner: Runner) -> None:
        with self.lock:
            runner.refs -= 1
            if runner.refs <= 0:
                runner.refs = 0
                if runner.session_ns <= 0:
                    self._unload(runner)
                else:
                    now = time.time_ns()
                    runner.expires_at_ns = now + min(runner.session_ns, MAX_DURATION - now)
            self.lock.notify_all()

    def expire(self, name: str) -> None:
        with self.lock:
            runner = self.runners.get(name)
            if runner is None:
                return
            if runner.refs == 0:
                self._unload(runner)
            else:
                runner.session_ns = 0

    def _unload(self, runner: Runner) -> None:
        if self.runners.get(runner.name) is runner:
            del self.runners[runner.name]
            self.log("INFO", f'msg="unloaded model" model={runner.short}')

    def loaded(self) -> list[Runner]:
        with self.lock:
            self._expire_due()
            return list(self.runners.values())

    def _expire_due(self) -> None:
        now = time.time_ns()
        for runner in list(self.runners.values()):
            if runner.refs == 0 and runner.expires_at_ns and runner.expires_at_ns <= now:
                self._unload(runner)

    def _reap(self) -> None:
        while not self._stop.wait(0.25):
            with self.lock:
                self._expire_due()

    def unload_all(self) -> None:
        self._stop.set()
        with self.lock:
            self.runners.clear()


class QueueFull(Exception):
    def __str__(self) -> str:
        return "server busy, please try again.  maximum pending requests exceeded"
