"""The fleet's textfile collector (module_utils/fleet_metrics.py), alone and against the lab's
nvidia-smi stand-in and a fake Ollama: what it exports, what it refuses, and that a failing
source is reported instead of leaving old values behind."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from json_http import serve_json

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_metrics as fm
from ansible_collections.localllm.fleet.plugins.module_utils import nvidia_smi as ns

ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT / "tests" / "standins"
MIB = 1 << 20
LOST = "Unable to determine the device handle for GPU 0000:2A:00.0: Unknown Error"

HEADER = (
    "index, name, uuid, pci.bus_id, memory.total [MiB], driver_version, memory.used [MiB], "
    "utilization.gpu [%], temperature.gpu, power.draw [W], power.limit [W], persistence_mode, "
    "ecc.mode.current, ecc.errors.corrected.volatile.total, ecc.errors.uncorrected.volatile.total"
)
ROW_H100 = (
    "0, NVIDIA H100 80GB HBM3, GPU-11111111-2222-3333-4444-555555555555, 00000000:18:00.0, "
    "81559, 550.54.15, 1024, 87, 61, 512.30, 700.00, Enabled, Enabled, 3, 0"
)
ROW_4090 = (
    "1, NVIDIA GeForce RTX 4090, GPU-66666666-7777-8888-9999-000000000000, 00000000:01:00.0, "
    "24564, 550.54.15, 0, 0, 38, 22.00, 450.00, Disabled, [N/A], [N/A], [N/A]"
)


def parse_exposition(text: str) -> dict[str, dict[tuple, float]]:
    """{metric: {sorted label items: value}} of a text-format answer (our own writer's shape)."""
    result: dict[str, dict[tuple, float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        if "{" in head:
            name, labels_text = head[:-1].split("{", 1)
            labels = {}
            for part in _split_labels(labels_text):
                key, raw = part.split("=", 1)
                labels[key] = json.loads(raw)
        else:
            name, labels = head, {}
        result.setdefault(name, {})[tuple(sorted(labels.items()))] = float(value)
    return result


def _split_labels(text: str) -> list[str]:
    parts, current, quoted, escaped = [], "", False, False
    for ch in text:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            current += ch
            escaped = True
        elif ch == '"':
            current += ch
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current:
        parts.append(current)
    return parts


def only(series: dict[tuple, float]) -> float:
    assert len(series) == 1, series
    return next(iter(series.values()))


# ------------------------------------------------------------------ the exposition format


def test_render_escapes_label_values_and_leaves_out_empty_families():
    family = fm.Family("localllm_test_info", "A test.")
    family.add(1, model='we"ird\\name\nx')
    empty = fm.Family("localllm_empty", "Nothing.")
    text = fm.render([family, empty])
    assert text == (
        "# HELP localllm_test_info A test.\n# TYPE localllm_test_info gauge\n"
        'localllm_test_info{model="we\\"ird\\\\name x"} 1\n'
    )
    assert "localllm_empty" not in text
    assert fm.render([]) == ""


def test_render_writes_numbers_as_prometheus_reads_them():
    family = fm.Family("localllm_numbers", "Numbers.")
    for value in (3, 2.5, True, float("nan"), float("inf")):
        family.add(value, kind=repr(value))
    values = [line.rsplit(" ", 1)[1] for line in fm.render([family]).splitlines()[2:]]
    assert values == ["3", "2.5", "1", "NaN", "+Inf"]


def test_render_refuses_names_prometheus_would_reject():
    bad = fm.Family("localllm-bad", "x")
    bad.add(1)
    with pytest.raises(ValueError, match="invalid metric name"):
        fm.render([bad])
    label = fm.Family("localllm_ok", "x")
    label.add(1, **{"bad-label": "x"})
    with pytest.raises(ValueError, match="invalid label name"):
        fm.render([label])


def test_label_values_are_bounded_and_printable():
    family = fm.Family("localllm_test", "x")
    family.add(1, model="a" * 1000 + "\x00\x1b")
    line = fm.render([family]).splitlines()[-1]
    assert len(line) < 200 and "\x00" not in line and "\x1b" not in line


# ------------------------------------------------------------------ atomic writes


def test_a_textfile_is_replaced_whole(tmp_path):
    fm.write_textfile(str(tmp_path), "localllm_gpu.prom", "old 1\n")
    fm.write_textfile(str(tmp_path), "localllm_gpu.prom", "new 1\n")
    assert (tmp_path / "localllm_gpu.prom").read_text() == "new 1\n"
    assert oct((tmp_path / "localllm_gpu.prom").stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["localllm_gpu.prom"]


def test_a_failed_write_leaves_the_old_file_and_no_partial_prom_file(tmp_path, monkeypatch):
    fm.write_textfile(str(tmp_path), "localllm_gpu.prom", "old 1\n")
    seen = []

    def broken_replace(source, target):
        seen.append(Path(source).name)
        raise OSError("disk full")

    monkeypatch.setattr(fm.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        fm.write_textfile(str(tmp_path), "localllm_gpu.prom", "new 1\n")
    # node_exporter reads every *.prom, hidden ones too: the temporary name never ends so.
    assert seen and not seen[0].endswith(".prom")
    assert (tmp_path / "localllm_gpu.prom").read_text() == "old 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["localllm_gpu.prom"]


def test_a_textfile_name_must_be_a_prom_file_in_the_directory(tmp_path):
    for name in ("metrics.txt", "../x.prom", "sub/x.prom"):
        with pytest.raises(ValueError, match="plain"):
            fm.write_textfile(str(tmp_path), name, "x 1\n")


# ------------------------------------------------------------------ nvidia-smi telemetry


def test_telemetry_is_read_per_gpu_with_units_and_unknown_values():
    text = f"{HEADER}\n{ROW_H100}\n{ROW_4090}\n"
    telemetry = fm.parse_gpu_telemetry(text)
    assert telemetry[0] == {
        "memory.used": 1024.0,
        "utilization.gpu": 87.0,
        "temperature.gpu": 61.0,
        "power.draw": 512.3,
        "power.limit": 700.0,
        "persistence_mode": 1.0,
        "ecc.mode.current": 1.0,
        "ecc.errors.corrected.volatile.total": 3.0,
        "ecc.errors.uncorrected.volatile.total": 0.0,
    }
    assert telemetry[1]["persistence_mode"] == 0.0
    assert telemetry[1]["ecc.mode.current"] is None
    assert telemetry[1]["ecc.errors.uncorrected.volatile.total"] is None


def test_telemetry_keeps_a_name_with_commas_and_skips_lines_that_are_not_gpus():
    row = ROW_H100.replace("NVIDIA H100 80GB HBM3", "NVIDIA H100, rev 2, special")
    text = f"{HEADER}\n{LOST}\n{row}\n"
    assert fm.parse_gpu_telemetry(text)[0]["temperature.gpu"] == 61.0


def test_telemetry_with_units_in_values_and_garbage_cells():
    header = "index, name, utilization.gpu [%], power.draw [W], temperature.gpu"
    text = f"{header}\n0, T4, 45 %, 27.50 W, hot\n"
    assert fm.parse_gpu_telemetry(text)[0] == {
        "utilization.gpu": 45.0,
        "power.draw": 27.5,
        "temperature.gpu": None,
    }
    assert fm.parse_gpu_telemetry("no header here\n0, x\n") == {}


def test_the_query_is_the_probes_identity_columns_plus_telemetry():
    assert fm.GPU_QUERY_FIELDS[: len(ns.MINIMAL_FIELDS)] == tuple(ns.MINIMAL_FIELDS)
    result = ns.parse_query(f"{HEADER}\n{ROW_H100}\n{ROW_4090}\n", 0)
    assert result.ok and [g.memory_mib for g in result.gpus] == [81559, 24564]


# ------------------------------------------------------------------ the kernel log


@pytest.mark.parametrize(
    "line",
    [
        "[ 1843.308145] NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has "
        "fallen off the bus.",
        "Dec 06 04:19:00 gpu07 kernel: NVRM: Xid (PCI:0000:18:00): 79, pid=1234, name=python3",
        "NVRM: Xid (PCI:0000:18:00.0): 79, GPU has fallen off the bus.",
        "2026-12-06T04:19:00+00:00 gpu07 kernel: [ 1.0] NVRM: Xid (PCI:18:00): 079, pid=1",
    ],
)
def test_xid_lines_in_every_log_format(line):
    assert fm.parse_xid_counts(line + "\n") == {("0000:18:00", "79"): 1}


def test_xids_are_counted_per_gpu_and_code_and_other_lines_ignored():
    log = "\n".join(
        [
            "NVRM: Xid (PCI:0000:3b:00): 13, Graphics SM Warp Exception",
            "NVRM: Xid (PCI:0000:3B:00): 13, Graphics SM Warp Exception",
            "NVRM: Xid (PCI:0000:3b:00): 48, DBE",
            "NVRM: The NVIDIA GPU 0000:b3:00.0 (PCI ID: 10de:26b5) has fallen off the bus.",
            "usb 1-1: new high-speed USB device",
        ]
    )
    assert fm.parse_xid_counts(log) == {("0000:3b:00", "13"): 2, ("0000:3b:00", "48"): 1}


def test_xid_series_are_bounded():
    log = "".join(f"NVRM: Xid (PCI:0000:18:00): {code}, x\n" for code in range(1000))
    assert len(fm.parse_xid_counts(log)) == fm.MAX_XID_SERIES


@pytest.mark.parametrize(
    ("bus", "normal"),
    [
        ("00000000:18:00.0", "0000:18:00"),
        ("0000:5D:00", "0000:5d:00"),
        ("18:00.0", "0000:18:00"),
        ("0001:AB:1F.3", "0001:ab:1f"),
    ],
)
def test_bus_ids_compare_whatever_their_spelling(bus, normal):
    assert fm.normalise_bus_id(bus) == normal


def test_certificate_end_dates():
    assert fm.parse_certificate_enddate("notAfter=Mar  5 04:19:00 2027 GMT\n") == 1804220340.0
    assert fm.parse_certificate_enddate("notAfter=Dec 31 23:59:59 2049 GMT") == 2524607999.0
    assert fm.parse_certificate_enddate("unable to load certificate") is None


# ------------------------------------------------------------------ configuration


def test_a_configuration_with_wrong_types_is_refused_naming_the_key():
    base = {"textfile_dir": "/var/lib/prometheus/node-exporter"}
    assert fm.load_config(base).gpu_enabled is False
    for data, message in [
        ([], "must be a JSON object"),
        ({"textfile_dir": "relative"}, "absolute path"),
        ({**base, "host": {"expected_gpus": -1}}, "0 or more"),
        ({**base, "host": {"expected_gpus": True}}, "host.expected_gpus must be a number"),
        ({**base, "gpu": {"enabled": "yes"}}, "gpu.enabled has the wrong type"),
        ({**base, "ollama": {"expected_models": [""]}}, "expected model names"),
        ({**base, "tls": {"certificates": "/etc/x.crt"}}, "tls.certificates has the wrong type"),
    ]:
        with pytest.raises(fm.ConfigError, match=message):
            fm.load_config(data)


def test_the_check_mode_of_the_collector_validates_only(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"textfile_dir": str(tmp_path)}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"textfile_dir": "relative"}))
    assert fm.main(["--check", str(good)]) == 0
    assert fm.main(["--check", str(bad)]) == 2
    assert fm.main(["--check", str(tmp_path / "missing.json")]) == 2
    assert fm.main(["--bogus"]) == 2
    assert list(tmp_path.glob("*.prom")) == []


# ------------------------------------------------------------------ GPU families


def _smi(text: str, rc: int = 0):
    return ns.parse_query(text, rc)


def test_gpu_metrics_follow_conventions_and_label_every_gpu():
    text = f"{HEADER}\n{ROW_H100}\n{ROW_4090}\n"
    families = fm.gpu_families(_smi(text), fm.parse_gpu_telemetry(text), {})
    metrics = parse_exposition(fm.render(families))
    h100 = (
        ("gpu", "0"),
        ("name", "NVIDIA H100 80GB HBM3"),
        ("uuid", "GPU-11111111-2222-3333-4444-555555555555"),
    )
    assert metrics["localllm_gpu_memory_total_bytes"][h100] == 81559 * MIB
    assert metrics["localllm_gpu_memory_used_bytes"][h100] == 1024 * MIB
    assert metrics["localllm_gpu_utilization_ratio"][h100] == pytest.approx(0.87)
    assert metrics["localllm_gpu_temperature_celsius"][h100] == 61
    assert metrics["localllm_gpu_power_draw_watts"][h100] == pytest.approx(512.3)
    assert metrics["localllm_gpu_ecc_errors_corrected_total"][h100] == 3
    assert only(metrics["localllm_gpu_count"]) == 2
    assert only(metrics["localllm_gpu_smi_up"]) == 1
    assert list(metrics["localllm_nvidia_driver_info"]) == [(("version", "550.54.15"),)]
    # A GeForce card has no ECC: no ECC series for it, rather than a made-up 0.
    assert len(metrics["localllm_gpu_ecc_mode_enabled"]) == 1
    assert len(metrics["localllm_gpu_ecc_errors_uncorrected_total"]) == 1
    assert "# TYPE localllm_gpu_ecc_errors_uncorrected_total counter" in fm.render(families)


@pytest.mark.parametrize(
    ("text", "rc", "status"),
    [
        (
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            9,
            "driver_not_loaded",
        ),
        ("Failed to initialize NVML: Driver/library version mismatch", 18, "version_mismatch"),
        ("No devices were found", 6, "no_devices"),
        ("", 127, "not_installed"),
        ("", 0, "garbage"),
    ],
)
def test_a_failing_nvidia_smi_gives_its_state_and_no_gpu_values(text, rc, status):
    families = fm.gpu_families(
        _smi(text, rc), {0: {"temperature.gpu": 33.0}}, {("0000:18:00", "79"): 1}
    )
    metrics = parse_exposition(fm.render(families))
    assert only(metrics["localllm_gpu_smi_up"]) == 0
    assert metrics["localllm_gpu_smi_status"] == {(("status", status),): 1}
    assert set(metrics) == {
        "localllm_gpu_smi_up",
        "localllm_gpu_smi_status",
        "localllm_gpu_kernel_log_readable",
    }


def test_a_timed_out_nvidia_smi_is_a_state_too():
    families = fm.gpu_families(ns.NvidiaSmiResult("timeout", 124, "hung"), {}, {})
    metrics = parse_exposition(fm.render(families))
    assert metrics["localllm_gpu_smi_status"] == {(("status", "timeout"),): 1}


def test_xids_are_labelled_with_the_gpu_they_belong_to():
    text = f"{HEADER}\n{ROW_H100}\n"
    xids = {("0000:18:00", "79"): 2, ("0000:99:00", "13"): 1}
    metrics = parse_exposition(fm.render(fm.gpu_families(_smi(text), {}, xids)))
    xid = metrics["localllm_gpu_xid_errors_total"]
    h100 = (
        ("gpu", "0"),
        ("name", "NVIDIA H100 80GB HBM3"),
        ("pci_bus_id", "0000:18:00"),
        ("uuid", "GPU-11111111-2222-3333-4444-555555555555"),
        ("xid", "79"),
    )
    assert xid[h100] == 2
    # A GPU nvidia-smi no longer lists keeps its Xids, by bus id.
    assert (
        xid[(("gpu", ""), ("name", ""), ("pci_bus_id", "0000:99:00"), ("uuid", ""), ("xid", "13"))]
        == 1
    )


def test_an_unreadable_kernel_log_is_said_and_no_xid_series_are_made_up():
    text = f"{HEADER}\n{ROW_H100}\n"
    metrics = parse_exposition(fm.render(fm.gpu_families(_smi(text), {}, None)))
    assert only(metrics["localllm_gpu_kernel_log_readable"]) == 0
    assert "localllm_gpu_xid_errors_total" not in metrics


def test_a_gpu_nvidia_smi_cannot_open_counts_as_lost():
    text = f"{HEADER}\n{ROW_H100}\n{LOST}\n"
    metrics = parse_exposition(fm.render(fm.gpu_families(_smi(text), {}, {})))
    assert only(metrics["localllm_gpu_lost_count"]) == 1
    assert only(metrics["localllm_gpu_count"]) == 1


# ------------------------------------------------------------------ Ollama families


def _config(**changes) -> fm.CollectorConfig:
    values = {
        "textfile_dir": "/var/lib/prometheus/node-exporter",
        "ollama_enabled": True,
        "ollama_pinned_version": "0.32.15",
        "expected_models": ["fleet/deepseek-r1:671b"],
        "model_store": "/srv/models",
    }
    values.update(changes)
    return fm.CollectorConfig(**values)


TAGS = [
    {"name": "fleet/deepseek-r1:671b", "size": 404 * 10**9},
    {"name": "deepseek-r1:671b", "size": 404 * 10**9},
]
PS = [
    {"name": "fleet/deepseek-r1:671b", "size": 450 * 10**9, "size_vram": 300 * 10**9,
     "prompt": "secret question", "details": {"family": "deepseek2"}},
]  # fmt: skip


def test_ollama_metrics_show_the_share_of_a_model_on_the_gpu():
    families = fm.ollama_families(_config(), "0.32.15", TAGS, PS, smoke=[], store=(50.0, 100.0))
    metrics = parse_exposition(fm.render(families))
    model = (("model", "fleet/deepseek-r1:671b"),)
    assert only(metrics["localllm_ollama_up"]) == 1
    assert metrics["localllm_ollama_model_loaded_size_bytes"][model] == 450 * 10**9
    assert metrics["localllm_ollama_model_loaded_vram_bytes"][model] == 300 * 10**9
    assert metrics["localllm_ollama_model_gpu_ratio"][model] == pytest.approx(2 / 3)
    assert metrics["localllm_ollama_expected_model_loaded"][model] == 1
    assert metrics["localllm_ollama_expected_model_present"][model] == 1
    assert len(metrics["localllm_ollama_model_present"]) == 2
    assert only(metrics["localllm_ollama_version_matches_pin"]) == 1
    assert metrics["localllm_ollama_store_avail_bytes"] == {(("path", "/srv/models"),): 50}
    assert "secret question" not in fm.render(families)


def test_expected_models_match_as_ollama_compares_names():
    config = _config(expected_models=["Fleet/DeepSeek-R1:671b", "fleet/qwq:32b", "gemma3"])
    tags = [{"name": "fleet/deepseek-r1:671b"}, {"name": "gemma3:latest"}]
    metrics = parse_exposition(
        fm.render(fm.ollama_families(config, "0.32.15", tags, [], smoke=[], store=None))
    )
    present = metrics["localllm_ollama_expected_model_present"]
    assert present == {
        (("model", "Fleet/DeepSeek-R1:671b"),): 1,
        (("model", "fleet/qwq:32b"),): 0,
        (("model", "gemma3:latest"),): 1,
    }
    assert set(metrics["localllm_ollama_expected_model_loaded"].values()) == {0}


def test_ollama_down_gives_up_zero_and_no_model_series():
    smoke = [
        {
            "model": "fleet/deepseek-r1:671b",
            "ok": True,
            "tokens_per_second": 31.5,
            "timestamp": 1700000000,
        }
    ]
    metrics = parse_exposition(
        fm.render(fm.ollama_families(_config(), None, None, None, smoke=smoke, store=(1.0, 2.0)))
    )
    assert only(metrics["localllm_ollama_up"]) == 0
    assert not [m for m in metrics if "model" in m and "smoke" not in m]
    assert "localllm_ollama_version_info" not in metrics
    # Facts that do not come from Ollama stay: the store's disk, the last smoke test (dated).
    assert "localllm_ollama_store_avail_bytes" in metrics
    assert only(metrics["localllm_ollama_smoke_tokens_per_second"]) == 31.5
    assert only(metrics["localllm_ollama_smoke_timestamp_seconds"]) == 1700000000


def test_a_version_other_than_the_pin_is_said():
    metrics = parse_exposition(
        fm.render(fm.ollama_families(_config(), "0.33.0", [], [], smoke=[], store=None))
    )
    assert only(metrics["localllm_ollama_version_matches_pin"]) == 0
    assert list(metrics["localllm_ollama_version_info"]) == [
        (("pinned_version", "0.32.15"), ("version", "0.33.0"))
    ]
    unpinned = fm.ollama_families(
        _config(ollama_pinned_version=""), "0.33.0", [], [], smoke=[], store=None
    )
    assert "localllm_ollama_version_matches_pin" not in fm.render(unpinned)


def test_odd_answers_from_ollama_do_not_break_the_collector():
    odd_ps = [
        {"name": "fleet/x:1", "size": "big", "size_vram": None},
        {"size": 3},
        {"name": "y", "size": 0, "size_vram": 0},
    ]
    metrics = parse_exposition(
        fm.render(
            fm.ollama_families(_config(), "0.32.15", [{"model": "m"}], odd_ps, smoke=[], store=None)
        )
    )
    assert metrics["localllm_ollama_model_loaded"] == {
        (("model", "fleet/x:1"),): 1,
        (("model", "y:latest"),): 1,
    }
    assert "localllm_ollama_model_gpu_ratio" not in metrics  # no size, no share to report


# ------------------------------------------------------------------ host families


def test_host_metrics_carry_the_tier_the_expected_gpus_and_certificate_expiry():
    config = _config(tier="frontier", expected_gpus=8)
    families = fm.host_families(config, {"/etc/host.crt": 1800000000.0, "/etc/missing.crt": None})
    metrics = parse_exposition(fm.render(families))
    assert list(metrics["localllm_host_info"]) == [(("tier", "frontier"),)]
    assert only(metrics["localllm_gpu_expected_count"]) == 8
    assert metrics["localllm_tls_certificate_expiry_timestamp_seconds"] == {
        (("path", "/etc/host.crt"),): 1.8e9
    }
    assert metrics["localllm_tls_certificate_readable"] == {
        (("path", "/etc/host.crt"),): 1,
        (("path", "/etc/missing.crt"),): 0,
    }


# ------------------------------------------------------------------ end to end on the stand-ins


OLLAMA_ANSWERS = {
    "/api/version": {"version": "0.32.15"},
    "/api/tags": {"models": TAGS},
    "/api/ps": {"models": [dict(PS[0], size_vram=PS[0]["size"])]},
}


@pytest.fixture
def ollama():
    with serve_json(OLLAMA_ANSWERS) as url:
        yield url


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A lab host's files under tmp_path (LOCALLLM_LAB_ROOT) with the h100x8 profile, and the
    stand-ins first on PATH."""
    root = tmp_path / "root"
    (root / "etc" / "localllm-lab").mkdir(parents=True)
    (root / "opt" / "localllm-lab" / "share").mkdir(parents=True)
    shutil.copy(
        STANDINS / "hardware" / "profiles" / "h100x8.json",
        root / "etc" / "localllm-lab" / "hardware.json",
    )
    shutil.copy(
        STANDINS / "hardware" / "gpus.json", root / "opt" / "localllm-lab" / "share" / "gpus.json"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("nvidia-smi", "lab-hw"):
        shutil.copy(STANDINS / name, bin_dir / name)
    monkeypatch.setenv("LOCALLLM_LAB_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    return {"root": root, "bin": bin_dir, "textfiles": textfiles, "tmp": tmp_path}


def lab_hw(lab, *args: str) -> None:
    subprocess.run([str(lab["bin"] / "lab-hw"), *args], check=True, env=os.environ.copy())


def collect(lab, ollama_url: str | None = None) -> dict[str, dict]:
    config = {
        "textfile_dir": str(lab["textfiles"]),
        "host": {"tier": "frontier", "expected_gpus": 8},
        "gpu": {
            "enabled": True,
            "kernel_log": str(lab["root"] / "var/log/localllm-lab/kernel.log"),
        },
        "ollama": {
            "enabled": ollama_url is not None,
            "api_url": ollama_url or "http://127.0.0.1:9",
            "timeout": 2,
            "pinned_version": "0.32.15",
            "expected_models": ["fleet/deepseek-r1:671b"],
            "store": str(lab["tmp"]),
        },
    }
    path = lab["tmp"] / "metrics.json"
    path.write_text(json.dumps(config))
    assert fm.main(["--config", str(path)]) == 0
    names = sorted(p.name for p in lab["textfiles"].iterdir())
    assert all(name.endswith(".prom") for name in names), names  # no temporary file left
    return {p.name: parse_exposition(p.read_text()) for p in lab["textfiles"].iterdir()}


def test_the_collector_reads_the_h100x8_profile_through_the_nvidia_smi_stand_in(lab, ollama):
    lab_hw(lab, "fault", "clear")  # also makes the (empty) lab kernel log
    files = collect(lab, ollama)
    assert set(files) == {"localllm_host.prom", "localllm_gpu.prom", "localllm_ollama.prom"}
    gpu = files["localllm_gpu.prom"]
    assert only(gpu["localllm_gpu_count"]) == 8
    assert set(gpu["localllm_gpu_memory_total_bytes"].values()) == {81559 * MIB}
    assert set(gpu["localllm_gpu_temperature_celsius"].values()) == {33}
    assert set(gpu["localllm_gpu_power_draw_watts"].values()) == {70}
    assert set(gpu["localllm_gpu_ecc_errors_uncorrected_total"].values()) == {0}
    assert only(gpu["localllm_gpu_kernel_log_readable"]) == 1
    ollama_metrics = files["localllm_ollama.prom"]
    assert only(ollama_metrics["localllm_ollama_model_gpu_ratio"]) == 1
    host = files["localllm_host.prom"]
    assert host["localllm_metrics_collector_success"] == {
        (("collector", "gpu"),): 1, (("collector", "host"),): 1, (("collector", "ollama"),): 1,
    }  # fmt: skip


def test_injected_faults_show_in_the_next_collection(lab):
    lab_hw(lab, "fault", "clear")
    lab_hw(lab, "fault", "gpu-missing", "7")
    lab_hw(lab, "fault", "ecc", "1", "2")
    lab_hw(lab, "fault", "temperature", "2", "91")
    lab_hw(lab, "fault", "xid", "79", "3")
    gpu = collect(lab)["localllm_gpu.prom"]
    assert only(gpu["localllm_gpu_count"]) == 7
    by_gpu = {
        dict(k)["gpu"]: v for k, v in gpu["localllm_gpu_ecc_errors_uncorrected_total"].items()
    }
    assert by_gpu["1"] == 2 and sum(by_gpu.values()) == 2
    hot = {dict(k)["gpu"]: v for k, v in gpu["localllm_gpu_temperature_celsius"].items()}
    assert hot["2"] == 91
    xid = gpu["localllm_gpu_xid_errors_total"]
    assert [(dict(k)["gpu"], dict(k)["xid"], v) for k, v in xid.items()] == [("3", "79", 1)]

    lab_hw(lab, "fault", "driver", "no-communication")
    files = collect(lab)
    gpu = files["localllm_gpu.prom"]
    assert only(gpu["localllm_gpu_smi_up"]) == 0
    assert "localllm_gpu_temperature_celsius" not in gpu  # nothing left over from the last run

    lab_hw(lab, "fault", "clear")
    gpu = collect(lab)["localllm_gpu.prom"]
    assert only(gpu["localllm_gpu_count"]) == 8
    assert "localllm_gpu_xid_errors_total" not in gpu  # a cleared log (a reboot) has no Xids


def test_parts_that_are_switched_off_lose_their_files(lab):
    lab_hw(lab, "fault", "clear")
    collect(lab)
    (lab["textfiles"] / "localllm_ollama.prom").write_text("localllm_ollama_up 1\n")  # a stale file
    files = collect(lab)  # Ollama metrics off
    assert "localllm_ollama.prom" not in files


def test_ollama_not_answering_is_reported_as_down(lab):
    lab_hw(lab, "fault", "clear")
    metrics = collect(lab, "http://127.0.0.1:9")["localllm_ollama.prom"]
    assert only(metrics["localllm_ollama_up"]) == 0
    assert "localllm_ollama_expected_model_loaded" not in metrics


# ------------------------------------------------------------------ runs on the hosts' Python


MODULE_UTILS = ROOT / "plugins" / "module_utils"
_PREFIX = "ansible_collections.localllm.fleet.plugins.module_utils"


def _module_utils_file(dotted: str) -> str | None:
    """`a.b` under module_utils -> its file relative to module_utils (a module or a package)."""
    base = MODULE_UTILS.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(MODULE_UTILS).as_posix()
    return None


def _imported(name: str) -> list[str]:
    """Dotted names under module_utils that the file `name` imports (`a`, `a.b`, `a.b.C`)."""
    package = name.split("/")[:-1]  # ["modelfile"] for modelfile/_syntax.py
    names = []
    for node in ast.walk(ast.parse((MODULE_UTILS / name).read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:  # relative: inside a module_utils package
            base = package[: len(package) - node.level + 1]
            stem = ".".join([*base, *([node.module] if node.module else [])])
        elif (node.module or "").startswith(_PREFIX + "."):
            stem = node.module[len(_PREFIX) + 1 :]
        elif node.module == _PREFIX:
            stem = ""
        else:
            continue
        names += [stem, *(f"{stem}.{alias.name}".lstrip(".") for alias in node.names)]
    return [n for n in names if n]


def collector_files() -> list[str]:
    """Every module_utils file fleet_metrics.py imports, directly or through others."""
    found: set[str] = set()
    todo = ["fleet_metrics.py"]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for dotted in _imported(name):
            parts = dotted.split(".")
            for depth in range(1, len(parts) + 1):  # a package's __init__ runs first
                file = _module_utils_file(".".join(parts[:depth]))
                if file:
                    todo.append(file)
    return sorted(found)


def test_the_collectors_imports_are_followed_into_the_modelfile_package():
    # What the role must ship, found from the import statements (the next test compares the
    # role's list with it): the package's __init__ and the parts it imports relatively.
    files = collector_files()
    assert {"fleet_metrics.py", "nvidia_smi.py", "ollama_api.py"} <= set(files)
    assert {"modelfile/__init__.py", "modelfile/_syntax.py", "modelfile/_create.py"} <= set(files)


@pytest.mark.controller  # PyYAML reads the role's vars; the Python 3.9 image has none
def test_the_role_ships_every_file_the_collector_imports():
    import yaml

    role_vars = yaml.safe_load(
        (ROOT / "roles" / "fleet_exporters" / "vars" / "main.yml").read_text()
    )
    assert sorted(role_vars["_fleet_exporters_module_utils"]) == collector_files()


@pytest.mark.parametrize("name", collector_files())
def test_the_code_the_collector_ships_parses_as_python_3_9(name):
    # RHEL 9's Python; the syntax only (its library differences are issue 13's Python 3.9 runs).
    source = (MODULE_UTILS / name).read_text()
    ast.parse(source, feature_version=(3, 9))


def test_the_collector_uses_no_library_call_python_3_9_lacks():
    source = (ROOT / "plugins" / "module_utils" / "fleet_metrics.py").read_text()
    assert "strict=" not in source  # zip(strict=), realpath(strict=): 3.10+
