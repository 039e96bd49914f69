"""Loaded models, keep-alive and GPU placement (server/sched.go, in outline).

GPUs are discovered through `nvidia-smi` (the lab's hosts simulate their hardware with a
stand-in nvidia-smi; real Ollama asks the CUDA driver). CUDA_VISIBLE_DEVICES filters them.
A "loaded" model costs nothing here; its reported size is the blob size plus the KV cache its
context would need, and it sits in VRAM when that fits.
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


def discover_gpus() -> list[GPU]:
    binary = shutil.which("nvidia-smi")
    if not binary:
        return []
    try:
        proc = subprocess.run(
            [
                binary,
                "--query-gpu=index,uuid,name,memory.total,memory.used",
                "--format=csv,noheader,nounits",
            ],
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
                )
            )
        except ValueError:
            continue
    visible = envconfig.var("CUDA_VISIBLE_DEVICES")
    if visible:
        wanted = [v.strip() for v in visible.split(",")]
        gpus = [g for g in gpus if str(g.index) in wanted or g.uuid in wanted]
    return gpus


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
        total = sum(max(g.total - g.used - envconfig.gpu_overhead(), 0) for g in self.gpus)
        return total - sum(r.size_vram for r in self.runners.values())

    def max_runners(self) -> int:
        configured = envconfig.max_loaded_models()
        if configured:
            return configured
        return 3 * max(len(self.gpus), 1)

    def acquire(self, name: str, build: Any, session_ns: int | None) -> Runner:
        """Get (loading if needed) the runner for `name`; build() returns a new Runner."""
        with self.lock:
            if self.pending >= envconfig.max_queue():
                raise QueueFull()
            self.pending += 1
        try:
            with self.lock:
                runner = self.runners.get(name)
                if runner is None:
                    while len(self.runners) >= self.max_runners():
                        idle = [r for r in self.runners.values() if r.refs == 0]
                        if not idle:
                            self.lock.wait(0.1)
                            continue
                        victim = min(idle, key=lambda r: r.expires_at_ns or r.loaded_at_ns)
                        self._unload(victim)
                    runner = build(self.vram_free())
                    self.runners[name] = runner
                runner.refs += 1
                runner.session_ns = envconfig.keep_alive_ns() if session_ns is None else session_ns
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
