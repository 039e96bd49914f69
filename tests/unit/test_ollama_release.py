"""Release facts the ollama role relies on: names, formats, checksums, versions, API URL."""

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import ollama_release as release

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
