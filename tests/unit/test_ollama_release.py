"""Release facts the ollama role relies on: names, formats, checksums, versions, API URL."""

from pathlib import Path

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import ollama_release as release

ROOT = Path(__file__).resolve().parents[2]

SUMS = """\
4efe5e27af795eef1474e16487a4db3b463618f5b44278790e878d0c5b3af5eb  ./ollama-linux-amd64.tar.zst
0c7d8a0b4b0c1e3a0f5e2d9d3b0e6f1a2b3c4d5e6f708192a3b4c5d6e7f80912  ./ollama-linux-arm64.tar.zst
1111111111111111111111111111111111111111111111111111111111111111 *ollama-linux-amd64-rocm.tar.zst
"""


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.32.15", "tar.zst"),
        ("0.14.0", "tar.zst"),
        ("0.13.5", "tgz"),
        ("v0.5.7", "tgz"),
        ("0.14.0-rc2", "tar.zst"),
    ],
)
def test_format_follows_the_release_that_switched_to_zstd(version, expected):
    assert release.artifact_format(version) == expected


def test_operator_can_force_a_format():
    assert release.artifact_format("0.32.15", "tgz") == "tgz"
    with pytest.raises(release.ReleaseError, match=r"auto, tar\.zst or tgz"):
        release.artifact_format("0.32.15", "zip")


@pytest.mark.parametrize(
    ("machine", "variant", "fmt", "name"),
    [
        ("x86_64", "", "tar.zst", "ollama-linux-amd64.tar.zst"),
        ("aarch64", "", "tgz", "ollama-linux-arm64.tgz"),
        ("x86_64", "rocm", "tar.zst", "ollama-linux-amd64-rocm.tar.zst"),
        ("arm64", "jetpack6", "tar.zst", "ollama-linux-arm64-jetpack6.tar.zst"),
    ],
)
def test_artifact_names(machine, variant, fmt, name):
    assert release.artifact_name(machine, variant, fmt) == name


def test_unsupported_architecture_is_named():
    with pytest.raises(release.ReleaseError, match="'ppc64le' has no Ollama Linux release"):
        release.artifact_name("ppc64le")


@pytest.mark.parametrize("bad", ["latest", "0.32", "v1", "0.32.15.1", "", "0.32.x"])
def test_bad_versions_are_refused_with_the_expected_form(bad):
    with pytest.raises(release.ReleaseError, match=r"not a release version: expected X\.Y\.Z"):
        release.normalize_version(bad)


def test_versions_sort_with_release_candidates_first():
    assert release.parse_version("0.14.0-rc1") < release.parse_version("0.14.0")
    assert release.parse_version("0.9.9") < release.parse_version("0.10.0")
    assert release.normalize_version("v0.32.15") == "0.32.15"


def test_release_url_uses_the_github_layout():
    url = release.release_url("http://mirror:8080/ollama/", "0.32.15", "sha256sum.txt")
    assert url == "http://mirror:8080/ollama/v0.32.15/sha256sum.txt"


def test_checksum_lines_with_dot_slash_and_binary_marker():
    assert release.checksum_for(SUMS, "ollama-linux-amd64.tar.zst").startswith("4efe5e27")
    assert release.checksum_for(SUMS, "ollama-linux-amd64-rocm.tar.zst") == "1" * 64


def test_missing_and_malformed_checksum_entries():
    with pytest.raises(release.ReleaseError, match=r"no entry for ollama-linux-amd64\.tgz"):
        release.checksum_for(SUMS, "ollama-linux-amd64.tgz")
    with pytest.raises(release.ReleaseError, match="malformed digest"):
        release.checksum_for("abc  ./x.tgz\n", "x.tgz")


def test_sha256_values():
    assert release.valid_sha256("SHA256:" + "A" * 64) == "a" * 64
    with pytest.raises(release.ReleaseError, match="not a sha256 digest"):
        release.valid_sha256("deadbeef")


@pytest.mark.parametrize(
    ("output", "version"),
    [
        (
            "Warning: could not connect to a running Ollama instance\n"
            "Warning: client version is 0.32.15\n",
            "0.32.15",
        ),
        ("ollama version is 0.31.4\n", "0.31.4"),
        ("ollama version is 0.31.4\nWarning: client version is 0.32.15\n", "0.32.15"),
        ("bash: ollama: command not found", None),
    ],
)
def test_client_version_from_ollama_v(output, version):
    assert release.client_version(output) == version


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1:11434", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("http://10.1.2.3", "http://10.1.2.3:80"),  # a scheme brings its own default port
        ("https://h", "https://h:443"),
        ("[::]:11434", "http://[::1]:11434"),
        ("[fd00::5]:9000", "http://[fd00::5]:9000"),
        ("https://ollama.internal:443", "https://ollama.internal:443"),
        (":11500", "http://127.0.0.1:11500"),
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),  # noqa: S104 - an input, nothing binds
        ("0.0.0.0:", "http://127.0.0.1:11434"),  # empty port: the default
        ("0.0.0.0:http", "http://127.0.0.1:11434"),  # not a number: the default
        ("h:70000", "http://h:11434"),  # out of range: the default
        ("host:1234/x", "http://host:1234"),  # the path is dropped
        ("http://h/", "http://h:80"),
        ("::", "http://[::1]:11434"),
        ("[::]", "http://[::1]:11434"),
        ("fd00::5", "http://[fd00::5]:11434"),
        ("ollama-host", "http://ollama-host:11434"),
        (' "10.0.0.1:9" ', "http://10.0.0.1:9"),  # quotes trimmed, as envconfig.Var does
    ],
)
def test_api_base_reaches_the_bound_server_from_the_host(host, url):
    assert release.api_base(host) == url


def test_versions_and_ports_of_endless_or_foreign_digits_are_refused_not_raised():
    from ansible_collections.localllm.fleet.plugins.module_utils import ollama_release as r

    for version in ("0.32." + "9" * 5000, "\uff10.32.15", "0.\u0663\u0662.15"):
        with pytest.raises(r.ReleaseError, match="is not a release version"):
            r.parse_version(version)
    assert r.api_base("127.0.0.1:" + "9" * 5000) == "http://127.0.0.1:11434"


# ------------------------------------------------------------------------------ driver floor


@pytest.mark.parametrize(
    ("version", "compute_cap", "architecture", "floor"),
    [
        ("0.32.15", "9.0", None, 550),  # H100
        ("0.32.15", "7.5", None, 550),  # T4
        ("0.32.15", "6.1", None, 570),  # P40: PTX JIT for Pascal
        ("0.32.15", "5.0", None, 570),
        ("0.32.15", None, "pascal", 570),  # lspci's chip name when the query has no CC
        ("0.32.15", None, "hopper", 550),
        ("0.32.15", None, None, 570),  # unknown generation: the stricter floor
        ("0.30.11", "8.9", None, 550),
        ("0.30.10", "8.9", None, 531),
        ("0.30.10", "6.1", None, 570),
        ("0.20.0", "6.1", None, 531),
        ("0.9.3", "8.0", None, 531),
        ("0.9.2", "8.0", None, None),  # the CUDA 11 build still shipped: no stated floor
    ],
)
def test_driver_floor_per_release_and_generation(version, compute_cap, architecture, floor):
    assert release.driver_floor(version, compute_cap, architecture) == floor


def test_driver_floor_refuses_bad_input():
    with pytest.raises(release.ReleaseError, match="not a release version"):
        release.driver_floor("latest")
    with pytest.raises(release.ReleaseError, match=r"compute capability 'x' is not like 8\.9"):
        release.driver_floor("0.32.15", "x")


@pytest.mark.parametrize(
    ("text", "branch"),
    [("550.54.15", 550), ("595.80", 595), (" 570 ", 570), ("", None), (None, None), ("N/A", None)],
)
def test_driver_branch(text, branch):
    assert release.driver_branch(text) == branch


@pytest.mark.controller  # reads the role's YAML on the controller (no PyYAML on a bare host)
def test_the_pinned_version_is_the_ollama_roles_default():
    import yaml

    defaults = yaml.safe_load((ROOT / "roles" / "ollama" / "defaults" / "main.yml").read_text())
    assert defaults["ollama_version"] == release.PINNED_VERSION


def test_a_hosts_floor_is_its_strictest_gpu():
    assert release.host_driver_floor("0.32.15", ["hopper"]) == 550
    assert release.host_driver_floor("0.32.15", ["pascal", "ampere"]) == 570
    assert release.host_driver_floor("", ["turing"]) == 550  # "": the pinned release
    assert release.host_driver_floor(None, []) == 570  # generation unknown
    assert release.host_driver_floor("0.9.0", ["hopper"]) is None


def test_an_unset_version_is_the_pinned_one():
    assert release.version_or_pinned(None) == release.version_or_pinned("") == "0.32.15"
    assert release.version_or_pinned("v0.13.5") == "0.13.5"


def test_the_processes_on_the_api_port_are_read_from_ss():
    output = (
        'LISTEN 0 4096 127.0.0.1:11434 0.0.0.0:* users:(("ollama",pid=812,fd=3))\n'
        'LISTEN 0 4096 [::1]:11434 [::]:* users:(("python3",pid=4242,fd=5),'
        '("python3",pid=4243,fd=5),("ollama",pid=812,fd=4))\n'
    )
    assert release.listener_pids(output) == ["812", "4242", "4243"]
    assert release.listener_pids("") == []
