"""Property tests over every parser that reads untrusted input: whatever a host, a bundle, a
Modelfile or an Ollama server says, the answer is a result or the parser's own error type,
never another exception (a traceback in an operator's terminal, "Module failed" in a play).

Bounded and deterministic: a fixed number of examples per property, derandomized (the same
inputs on every run, no example database), a generous per-example deadline and no
timing-based health check, so a loaded CI machine cannot make them flake. Runs under
Python 3.9 too (tests/py39/run), with the hypothesis Debian 11 ships.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.localllm.fleet.plugins.module_utils import (
    fleet_swarm,
    model_bundle,
    model_state,
    modelfile,
    nvidia_driver,
    nvidia_smi,
    ollama_api,
    ollama_release,
    systemd_unit,
    tier_policy,
    trust,
)

FUZZ = settings(
    max_examples=150,
    deadline=5000,  # ms per example: a bound against runaway parsers, far above their need
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------ vocabularies

# Cells nvidia-smi prints, and the garbage a paste or a hostile host may hold instead.
CELLS = st.one_of(
    st.sampled_from(
        [
            "0",
            "7",
            "NVIDIA H100 80GB HBM3",
            "Tesla T4",
            "81559",
            "24564 MiB",
            "[N/A]",
            "N/A",
            "[Not Supported]",
            "[GPU is lost]",
            "550.54.15",
            "8.9",
            "12.1",
            "Enabled",
            "Disabled",
            "GPU-5b0a4c7e-2d1f-9a7b-3c4d-8e9f0a1b2c3d",
            "00000000:18:00.0",
            "0000:18:00.0",
            "+81559",
            "\uff18\uff11\uff15",
            "\u00b2",
            "9" * 5000,
            "1e400",
            "-1",
            "",
            " ",
            "{{ 7*7 }}",
        ]
    ),
    st.text(max_size=30),
)
HEADERS = st.lists(
    st.sampled_from([*list(nvidia_smi.QUERY_FIELDS), "memory.total [MiB]", "bogus", "Index"]),
    max_size=9,
)


@st.composite
def query_output(draw: Any) -> str:
    """nvidia-smi --query-gpu output: maybe a header, rows of cells, maybe failure text."""
    lines = []
    if draw(st.booleans()):
        lines.append(", ".join(draw(HEADERS)))
    for _ in range(draw(st.integers(0, 6))):
        lines.append(", ".join(draw(st.lists(CELLS, max_size=9))))
    if draw(st.booleans()):
        lines.append(
            draw(
                st.sampled_from(
                    [
                        "Unable to determine the device handle for GPU 0000:3b:00.0: Unknown Error",
                        "No devices were found",
                        "Failed to initialize NVML: Driver/library version mismatch",
                    ]
                )
            )
        )
    separator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return separator.join(lines) + draw(st.sampled_from(["", "\n"]))


SECTIONS = [
    "nvidia-smi-query",
    "nvidia-smi-list",
    "nvidia-smi-topo",
    "lspci",
    "sysfs-pci",
    "nproc",
    "meminfo",
    "bogus",
]
BODIES = st.one_of(
    query_output(),
    st.sampled_from(
        [
            "18:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330]",
            "0000:05:00.0 Bridge [0680]: NVIDIA Corporation GH100 [H100 NVSwitch] [10de:22a3]",
            "0000:18:00.0 0x030200 0x2330",
            "GPU 0: NVIDIA A100 (UUID: GPU-1)\n  MIG 3g.40gb     Device  0: (UUID: MIG-1)",
            "GPU0\tX \tNV18\nGPU1\tNV18\t X",
            "MemTotal:       65807588 kB",
            "64",
            "\u0661\u0662",
        ]
    ),
    st.text(max_size=200),
)


@st.composite
def probe_output(draw: Any) -> str:
    """What the probe prints: its header, sections with exit codes, an end marker, each
    maybe missing, repeated, out of order or garbled."""
    lines = [draw(st.sampled_from(["@@localllm-probe 1", "@@localllm-probe 2", "", "banner"]))]
    for _ in range(draw(st.integers(0, 6))):
        lines.append("@@begin " + draw(st.sampled_from(SECTIONS)))
        lines.append(draw(BODIES))
        if draw(st.integers(0, 9)):
            lines.append("@@rc " + draw(st.sampled_from(["0", "9", "127", "x", "9" * 5000, ""])))
    if draw(st.integers(0, 4)):
        lines.append("@@end")
    return "\n".join(lines)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
BOMBS = st.sampled_from([b"[" * 100000 + b"]" * 100000, b'{"a":' * 50000 + b"1" + b"}" * 50000])
DIGESTS = st.sampled_from(
    ["sha256:" + "ab" * 32, "sha256:" + "0" * 64, "sha256:" + "ab" * 32 + "\n", "md5:x"]
)


def blob_entries() -> Any:
    return st.fixed_dictionaries(
        {"digest": DIGESTS | JSON, "size": st.integers(-1, 1 << 40) | JSON}
    )


@st.composite
def bundle_index(draw: Any) -> bytes:
    """index.json: mostly well-formed, with each field sometimes of another shape."""
    if draw(st.integers(0, 9)) == 0:
        return draw(BOMBS | st.binary(max_size=64))
    model = {
        "name": draw(st.sampled_from(["deepseek-r1:1.5b", "lab/tiny:1", "../x", ""]) | JSON),
        "manifest": draw(
            st.sampled_from(
                ["manifests/registry.ollama.ai/library/deepseek-r1/1.5b", "../../etc/passwd"]
            )
            | JSON
        ),
        "digest": draw(DIGESTS | JSON),
        "size": draw(st.integers(-1, 10 << 20) | JSON),
        "blobs": draw(st.lists(DIGESTS, max_size=3) | JSON),
    }
    data = {
        "format": draw(st.sampled_from([model_bundle.FORMAT, "other"]) | JSON),
        "version": draw(st.sampled_from([1, 2, True, "1"]) | JSON),
        "models": draw(st.lists(st.just(model) | JSON, max_size=3) | JSON),
        "blobs": draw(st.lists(blob_entries() | JSON, max_size=3) | JSON),
    }
    return json.dumps(data).encode()


@st.composite
def manifest(draw: Any) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(BOMBS | st.binary(max_size=64))
    layer = st.fixed_dictionaries(
        {"digest": DIGESTS | JSON, "size": st.integers(-1, 1 << 40) | JSON}
    )
    data = {
        "config": draw(layer | JSON),
        "layers": draw(st.lists(layer | JSON, max_size=3) | JSON),
    }
    return json.dumps(data).encode()


# Modelfile text: keywords, values, quoting and line ends in any order.
MODELFILE_PIECES = st.sampled_from(
    [
        "FROM ",
        "from ",
        "PARAMETER ",
        "TEMPLATE ",
        "SYSTEM ",
        "MESSAGE user ",
        "MESSAGE robot ",
        "ADAPTER ",
        "LICENSE ",
        "REQUIRES ",
        "num_ctx ",
        "temperature ",
        "stop ",
        '"""',
        '"',
        "\n",
        "\r\n",
        "\r",
        " ",
        "\t",
        "#",
        "qwq:32b",
        "./m.gguf",
        "0.6",
        "1e400",
        "0x1p-2",
        "1_000",
        "\ufeff",
        "\x00",
        "{{ .Prompt }}",
    ]
)


# ------------------------------------------------------------------------------ GPU probe


@FUZZ
@given(text=query_output(), rc=st.sampled_from([0, 6, 9, 18, 127, 255]))
def test_any_query_output_is_a_result(text: str, rc: int) -> None:
    result = nvidia_smi.parse_query(text, rc)
    assert isinstance(result, nvidia_smi.NvidiaSmiResult)
    for gpu in result.gpus:
        assert gpu.memory_mib is None or 0 <= gpu.memory_mib <= nvidia_smi.MAX_GPU_MEMORY_MIB
        assert (
            gpu.compute_cap is None
            or nvidia_smi.architecture_from_compute_cap(gpu.compute_cap) is not None
            or gpu.compute_cap.count(".") == 1
        )
    assert len(result.gpus) <= nvidia_smi.MAX_GPUS


@FUZZ
@given(text=st.text(max_size=400))
def test_any_text_is_a_query_result_too(text: str) -> None:
    assert isinstance(nvidia_smi.parse_query(text), nvidia_smi.NvidiaSmiResult)


@FUZZ
@given(text=probe_output())
def test_any_probe_output_is_a_report_or_a_probe_error(text: str) -> None:
    try:
        report = nvidia_smi.parse_probe_output(text)
    except nvidia_smi.ProbeError:
        return
    # and the decision the inventory plugin makes from it is a plan, never an exception
    plan = tier_policy.classify(report)
    assert plan.status in (
        tier_policy.STATUS_GPU,
        tier_policy.STATUS_CPU,
        tier_policy.STATUS_DRIVER_NEEDED,
        tier_policy.STATUS_UNREACHABLE,
    )
    assert isinstance(nvidia_driver.devices_from_probe(report), list)


@FUZZ
@given(text=BODIES)
def test_the_section_parsers_return_results(text: str) -> None:
    assert isinstance(nvidia_smi.parse_lspci(text), tuple)
    assert isinstance(nvidia_smi.parse_sysfs_pci(text), tuple)
    assert isinstance(nvidia_smi.parse_mig_list(text), dict)
    assert nvidia_smi.parse_topology(text) in (True, False, None)
    assert nvidia_smi.parse_nproc(text) is None or nvidia_smi.parse_nproc(text) > 0
    assert nvidia_smi.parse_meminfo(text) is None or nvidia_smi.parse_meminfo(text) >= 0


@FUZZ
@given(
    devices=st.lists(
        JSON
        | st.fixed_dictionaries(
            {"name": JSON, "memory_mib": JSON, "index": JSON, "compute_cap": JSON}
        ),
        max_size=4,
    )
)
def test_any_devices_given_to_gpu_facts_are_checked(devices: list[Any]) -> None:
    try:
        checked = nvidia_driver.validate_devices(devices)
    except nvidia_driver.FlavourError:
        return
    for device in checked:  # what passed is usable by the flavour decision
        nvidia_driver.device_architecture(device)


# ------------------------------------------------------------------------------ Modelfiles


@FUZZ
@given(pieces=st.lists(MODELFILE_PIECES | st.text(max_size=5), max_size=40))
def test_any_modelfile_text_parses_or_is_a_modelfile_error(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        parsed = modelfile.parse(text)
    except modelfile.ModelfileError:
        return
    # what parses can be written back (or is refused with the serializer's ValueError)
    with contextlib.suppress(ValueError):
        modelfile.serialize(parsed.commands)


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_modelfile_bytes_parse_or_are_a_modelfile_error(data: bytes) -> None:
    with contextlib.suppress(modelfile.ModelfileError):
        modelfile.parse_bytes(data)


@FUZZ
@given(name=st.text(max_size=40))
def test_any_model_name_parses_or_is_a_value_error(name: str) -> None:
    try:
        parsed = ollama_api.ModelName.parse(name)
    except ValueError:
        return
    assert parsed.manifest_path().count("/") == 3
    assert ".." not in parsed.manifest_path().split("/")


# ------------------------------------------------------------------------------ bundles


@FUZZ
@given(raw=bundle_index())
def test_any_index_is_a_bundle_index_or_a_bundle_error(raw: bytes) -> None:
    try:
        index = model_bundle.parse_index(raw)
    except model_bundle.BundleError:
        return
    for model in index.models:  # what is accepted stays inside the store
        assert model.manifest.startswith("manifests/")
        assert ".." not in model.manifest.split("/")


@FUZZ
@given(raw=manifest())
def test_any_manifest_lists_blobs_or_is_a_bundle_error(raw: bytes) -> None:
    try:
        refs = model_bundle.manifest_blobs(raw, "fuzz")
    except model_bundle.BundleError:
        return
    assert all(d.startswith("sha256:") and "\n" not in d and s >= 0 for d, s in refs)


@FUZZ
@given(raw=manifest())
def test_any_registry_manifest_gives_store_blobs_or_is_a_swarm_error(raw: bytes) -> None:
    store = "/usr/share/ollama/.ollama/models"
    pull = "mirror:8080/library/deepseek-r1:671b"
    try:
        blobs = fleet_swarm.registry_blobs([{"pull": pull}], {pull: raw}, store, 0)
    except fleet_swarm.SwarmError:
        return
    for blob in blobs:  # what is accepted lands in the store's blobs/, under its digest
        assert blob["dest"] == f"{store}/blobs/sha256-{blob['sha256']}"
        assert len(blob["sha256"]) == 64 and set(blob["sha256"]) <= set("0123456789abcdef")


# ------------------------------------------------------------------------------ Ollama answers


class _Scripted(ollama_api.OllamaClient):
    """A client whose server answers `payload` (JSON calls) or `stream` (NDJSON)."""

    def __init__(self, payload: bytes = b"", stream: bytes = b"") -> None:
        super().__init__("http://127.0.0.1:9", timeout=5)
        self.payload = payload
        self.stream_body = stream

    def request(self, method, path, body=None, headers=None, timeout=None):  # type: ignore[override]
        return 200, self.payload

    def _send(self, method, path, body=None, headers=None, timeout=None, *, answer_within=None):  # type: ignore[override]
        body_file = io.BytesIO(self.stream_body)

        class Response:
            status = 200

            @staticmethod
            def readline(limit: int = -1) -> bytes:
                return body_file.readline(limit)

            @staticmethod
            def read(limit: int = -1) -> bytes:
                return body_file.read(limit)

            @staticmethod
            def close() -> None:
                return None

        class Connection:
            sock = None

            @staticmethod
            def close() -> None:
                return None

        return Connection(), Response(), ollama_api._Watchdog(None)


ANSWERS = st.one_of(
    JSON.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"models": JSON, "version": JSON}).map(lambda v: json.dumps(v).encode()),
    BOMBS,
    st.binary(max_size=50),
)


@FUZZ
@given(payload=ANSWERS)
def test_any_json_answer_is_a_result_or_an_ollama_error(payload: bytes) -> None:
    client = _Scripted(payload=payload)
    for call in (
        client.version,
        client.tags,
        client.ps,
        lambda: client.show("m"),
        lambda: client.find(ollama_api.ModelName.parse("m")),
    ):
        with contextlib.suppress(ollama_api.OllamaError):
            call()


@FUZZ
@given(lines=st.lists(ANSWERS | st.just(b'{"error":"boom"}') | st.just(b""), max_size=6))
def test_any_stream_is_items_or_an_ollama_error(lines: list[bytes]) -> None:
    client = _Scripted(stream=b"\n".join(lines))
    try:
        for item in client.pull("m"):
            assert isinstance(item, dict)
    except ollama_api.OllamaError:
        pass


@FUZZ
@given(
    show=st.dictionaries(
        st.sampled_from(
            ["modelfile", "parameters", "template", "messages", "license", "system", "requires"]
        ),
        JSON | MODELFILE_PIECES,
        max_size=7,
    )
)
def test_any_show_answer_becomes_model_content(show: dict[str, Any]) -> None:
    content = model_state.content_from_show(show)
    model_state.differences(content, content)
    model_state.render(content)


@FUZZ
@given(items=st.lists(JSON, max_size=8))
def test_any_pull_progress_is_tracked(items: list[Any]) -> None:
    from ansible_collections.localllm.fleet.plugins.modules.ollama_pull import PullTracker

    tracker = PullTracker()
    for item in items:
        if isinstance(item, dict):
            tracker.add(item)
    assert tracker.total >= 0 and tracker.remaining >= 0 and tracker.transferred >= 0


# ------------------------------------------------------------------------------ small readers


@FUZZ
@given(text=st.text(max_size=200), name=st.text(max_size=20))
def test_checksum_files_give_a_digest_or_a_release_error(text: str, name: str) -> None:
    try:
        digest = ollama_release.checksum_for(text, name)
    except ollama_release.ReleaseError:
        return
    assert len(digest) == 64


@FUZZ
@given(header=st.text(max_size=60))
def test_content_range_is_read_or_ignored(header: str) -> None:
    from ansible_collections.localllm.fleet.plugins.modules.download import content_range

    first, total = content_range(header)
    assert first is None or first >= 0
    assert total is None or total >= 0


@FUZZ
@given(name=st.text(max_size=12), value=JSON | st.text(max_size=30))
def test_unit_values_are_written_safely_or_refused(name: str, value: Any) -> None:
    try:
        line = systemd_unit.environment_assignment(name, value)
    except systemd_unit.UnitValueError:
        return
    assert "\n" not in line and "\r" not in line and "\x00" not in line
    assert line.startswith('Environment="') and line.endswith('"')


@FUZZ
@given(path=st.text(max_size=30))
def test_unit_paths_are_written_safely_or_refused(path: str) -> None:
    try:
        written = systemd_unit.unit_path(path)
    except systemd_unit.UnitValueError:
        return
    assert written.startswith("/") and not any(ch.isspace() for ch in written)


@FUZZ
@given(
    user=st.text(alphabet=st.characters(blacklist_characters="/:@"), max_size=10),
    password=st.text(alphabet=st.characters(blacklist_characters="/"), min_size=1, max_size=10),
    rest=st.text(max_size=20),
)
def test_credentials_never_survive_redaction(user: str, password: str, rest: str) -> None:
    url = f"https://{user}:{password}@mirror.example/{rest}"
    shown = trust.redact_url(url)
    assert f"{user}:{password}@" not in shown
    text = trust.redact_text(f"cannot download {url}: {password}", url)
    if len(password) >= 3:
        assert password not in text.replace(trust.REDACTED, "")


def test_the_fuzz_settings_are_bounded_and_deterministic() -> None:
    """The contract above, checked: a change that made these runs random or unbounded
    would make CI flaky or slow."""
    assert FUZZ.derandomize is True
    assert FUZZ.database is None
    assert FUZZ.max_examples <= 200
    assert FUZZ.deadline is not None


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
