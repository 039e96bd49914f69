"""The fan-out plan: swarm or direct by size, who seeds, aria2's arguments, the torrent's hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.localllm.fleet.plugins.module_utils.fleet_swarm import (
    SwarmError,
    aria2_args,
    bdecode,
    check,
    fleet_address,
    info_hash,
    piece_exponent,
    plan,
    registry_blobs,
    registry_layers,
    registry_manifest_url,
    swarm_peers,
    tracker_url,
)

FIXTURES = Path(__file__).parent / "fixtures" / "fleet_swarm"
SHA = "ab" * 32
URL = "http://mirror:8080/models/deepseek-r1-671b-q4_k_m.gguf"
GIB = 1 << 30


def blob(**changes):
    entry = {"url": URL, "sha256": SHA, "dest": "/var/cache/localllm-fleet/models/m.gguf"}
    entry.update(changes)
    return entry


def test_blobs_above_the_threshold_go_through_the_swarm_and_the_rest_direct():
    small = blob(url="http://mirror:8080/small.gguf", sha256="cd" * 32, dest="/srv/small.gguf")
    result = plan([blob(), small], {URL: 404 * GIB, small["url"]: 2 * GIB}, 10 * GIB)
    assert [(b["url"], b["via"]) for b in result] == [(URL, "swarm"), (small["url"], "direct")]
    assert result[0]["key"] == SHA[:16]
    assert result[0]["size"] == 404 * GIB


def test_a_blob_of_exactly_the_threshold_stays_direct_and_zero_sends_everything_to_the_swarm():
    assert plan([blob()], {URL: 100}, 100)[0]["via"] == "direct"
    assert plan([blob()], {URL: 1}, 0)[0]["via"] == "swarm"


def test_fan_out_disabled_sends_even_the_largest_blob_direct():
    assert plan([blob()], {URL: 404 * GIB}, 0, enabled=False)[0]["via"] == "direct"


def test_a_blob_the_mirror_gave_no_size_for_is_refused_with_its_url():
    with pytest.raises(SwarmError, match=r"671b.*the mirror gave no size"):
        plan([blob()], {URL: ""}, 0)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (blob(sha256="not-a-digest"), "sha256 must be the blob's 64-hex digest"),
        (blob(sha256=""), "trust anchor"),
        (blob(url="ftp://mirror/x"), "url must be an http"),
        (blob(dest="relative/path"), "dest must be an absolute file path"),
        (blob(mode=640), "mode must be quoted octal"),
        (blob(checksum=SHA), "unknown keys"),
        ("http://mirror/x", "must be a mapping"),
    ],
)
def test_bad_blobs_are_refused_naming_what_to_change(entry, message):
    with pytest.raises(SwarmError, match=message):
        check([entry])


def test_two_blobs_for_one_dest_are_refused_and_a_sha256_prefix_is_accepted():
    assert check([blob(sha256="sha256:" + SHA.upper())])[0]["sha256"] == SHA
    with pytest.raises(SwarmError, match="dest of two different blobs"):
        check([blob(), blob(sha256="cd" * 32, url="http://mirror:8080/other")])


def test_a_bad_threshold_is_refused():
    with pytest.raises(SwarmError, match="fleet_swarm_threshold must be a whole number"):
        plan([blob()], {URL: 1}, "ten gigabytes")
    with pytest.raises(SwarmError, match="fleet_swarm_threshold must be at least 0"):
        plan([blob()], {URL: 1}, -1)


@pytest.mark.parametrize(
    ("size", "exponent"),
    [(1, 18), (256 << 20, 18), (1 * GIB, 20), (20 * GIB, 24), (404 * GIB, 24)],
)
def test_piece_size_grows_with_the_blob_between_256_kib_and_16_mib(size, exponent):
    assert piece_exponent(size) == exponent


def test_the_seed_is_the_first_host_needing_the_blob_unless_one_is_named():
    wanted = {"a": [], "b": [SHA], "c": [SHA, "cd" * 32], "d": [SHA]}
    assert swarm_peers(["a", "b", "c", "d"], wanted, SHA) == {
        "peers": ["b", "c", "d"],
        "seeder": "b",
        "seeder_has": False,
    }
    assert swarm_peers(["a", "b", "c", "d"], wanted, SHA, "d")["seeder"] == "d"
    # A named seed that neither needs nor has the blob (or is not in the play) does not seed it.
    assert swarm_peers(["a", "b", "c", "d"], wanted, SHA, "a")["seeder"] == "b"
    with pytest.raises(SwarmError, match="no host of the play"):
        swarm_peers(["a"], wanted, SHA)


def test_a_host_that_has_the_blob_seeds_it_so_new_hosts_cost_the_mirror_nothing():
    wanted = {"c": [SHA]}
    have = {"a": ["cd" * 32], "b": [SHA]}
    assert swarm_peers(["a", "b", "c"], wanted, SHA, have=have) == {
        "peers": ["b", "c"],
        "seeder": "b",
        "seeder_has": True,
    }
    # Nobody needs it: there is no swarm, even though b has it.
    with pytest.raises(SwarmError, match="no host of the play"):
        swarm_peers(["a", "b", "c"], {}, SHA, have=have)


def test_tracker_url_brackets_ipv6_and_refuses_a_name():
    assert tracker_url("10.89.42.7", 6969) == "http://10.89.42.7:6969/announce"
    assert tracker_url("fd00::7", "6969") == "http://[fd00::7]:6969/announce"
    with pytest.raises(SwarmError, match="must be the IP address"):
        tracker_url("host1.example", 6969)
    with pytest.raises(SwarmError, match="port 1-65535"):
        tracker_url("10.0.0.1", 70000)
    assert fleet_address("[fd00::7]") == "fd00::7"


SETTINGS = {
    "listen_port": 6881,
    "seed_minutes": 30,
    "upload_limit": 0,
    "max_peers": 55,
    "require_crypto": False,
    "address": "10.89.42.7",
    "complete_hook": "/usr/local/libexec/localllm-fleet/swarm-status",
}


def test_a_peer_never_looks_for_peers_outside_the_tracker_and_resumes_from_its_control_file():
    args = aria2_args("fetch", "/w/blob.torrent", "/w", SETTINGS)
    for flag in (
        "--enable-dht=false",
        "--enable-dht6=false",
        "--enable-peer-exchange=false",
        "--bt-enable-lpd=false",
        "--continue=true",
        "--check-integrity=true",
        "--listen-port=6881",
        "--interface=10.89.42.7",
        "--disable-ipv6=true",
        "--seed-time=30",
        "--no-conf=true",
        "--on-bt-download-complete=/usr/local/libexec/localllm-fleet/swarm-status",
        "--on-download-error=/usr/local/libexec/localllm-fleet/swarm-status-error",
    ):
        assert flag in args
    assert args[0] == "/usr/bin/aria2c"
    assert args[-1] == "--torrent-file=/w/blob.torrent"
    assert not any(a.startswith("--bt-seed-unverified") for a in args)


def test_the_seed_serves_the_file_it_verified_without_hashing_it_again():
    args = aria2_args("seed", "/w/blob.torrent", "/w", SETTINGS)
    assert "--bt-seed-unverified=true" in args
    assert not any(a.startswith("--on-bt-download-complete") for a in args)


def test_options_crypto_upload_limit_ipv6_and_a_web_seed():
    settings = dict(SETTINGS, require_crypto=True, upload_limit=1048576, address="fd00::7")
    args = aria2_args("fetch", "/w/t", "/w", settings, web_seed=URL)
    assert "--bt-require-crypto=true" in args
    assert "--max-overall-upload-limit=1048576" in args
    assert "--interface=fd00::7" in args
    assert "--disable-ipv6=true" not in args
    assert args[-1] == URL


@pytest.mark.parametrize(
    ("role", "settings", "web_seed", "message"),
    [
        ("leech", SETTINGS, "", "seed or fetch"),
        ("fetch", dict(SETTINGS, listen_port=0), "", "fleet_swarm_listen_port"),
        ("fetch", dict(SETTINGS, seed_minutes="forever"), "", "fleet_swarm_seed_minutes"),
        ("fetch", dict(SETTINGS, address="peer1"), "", "must be the IP address"),
        ("fetch", SETTINGS, "file:///srv/blob", "web seed must be an http"),
    ],
)
def test_bad_aria2_settings_are_refused(role, settings, web_seed, message):
    with pytest.raises(SwarmError, match=message):
        aria2_args(role, "/w/t", "/w", settings, web_seed)


def test_info_hash_is_the_one_aria2_reports_for_a_mktorrent_private_torrent():
    # mktorrent 1.1 -p -l 18 of a 40 MiB blob; `aria2c -S` (1.36.0) printed this info hash.
    data = (FIXTURES / "mktorrent-1.1-private.torrent").read_bytes()
    assert info_hash(data) == "e13b5fc5c3d1512b034eb5de173889f0400a1d9a"
    assert bdecode(data)[b"info"][b"piece length"] == 1 << 18


def _torrent(info: bytes) -> bytes:
    announce = b"http://10.0.0.1:6969/announce"
    return b"d8:announce%d:%s4:info%se" % (len(announce), announce, info)


def test_info_hash_is_sha1_of_the_info_dictionary_as_written():
    info = b"d6:lengthi5e4:name4:blob12:piece lengthi262144e6:pieces20:%s7:privatei1ee" % (
        b"x" * 20
    )
    assert info_hash(_torrent(info)) == hashlib.sha1(info).hexdigest()  # noqa: S324 - BitTorrent's hash


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_torrent(b"d6:lengthi5e4:name4:blob12:piece lengthi262144e6:pieces0:e"), "not private"),
        (
            _torrent(b"d5:filesle4:name4:blob12:piece lengthi1e6:pieces0:7:privatei1ee"),
            "one blob per torrent",
        ),
        (b"d8:announce3:abce", "no info dictionary"),
        (b"d4:info", "not bencoded"),
        (b"d4:infod5:abcdei1ee", "not bencoded"),
        (b"i1ei2e", "after the end"),
        (b"d9:announce3:abce", "not bencoded"),
    ],
)
def test_a_public_multi_file_or_broken_torrent_is_refused(data, message):
    with pytest.raises(SwarmError, match=message):
        info_hash(data)


@pytest.mark.controller
def test_serve_yml_opens_the_swarm_ports_to_the_fleet_only_where_models_come_by_swarm(tmp_path):
    # serve.yml's firewall play imports tasks/firewall.yml: the openings it declares are what
    # fleet_firewall then renders, from the fleet's own addresses only.
    from role_testing import run_role_tasks

    out = tmp_path / "openings.json"
    show = {
        "ansible.builtin.copy": {
            "content": "{{ fleet_firewall_role_openings | to_json }}",
            "dest": str(out),
            "mode": "0600",
        }
    }
    settings = {
        "fleet_swarm_firewall_sources": ["10.0.0.1", "10.0.0.2"],
        "fleet_swarm_listen_port": 6881,
        "fleet_swarm_tracker_port": 6969,
    }
    run = run_role_tasks(tmp_path, "fleet_swarm", "firewall.yml", settings, after=[show])
    assert not run.failed, run.out
    openings = json.loads(out.read_text())
    assert openings == [
        {"name": "swarm_peer", "port": 6881, "sources": ["10.0.0.1", "10.0.0.2"]},
        {"name": "swarm_tracker", "port": 6969, "sources": ["10.0.0.1", "10.0.0.2"]},
    ]
    serve = yaml.safe_load((Path(__file__).parents[2] / "playbooks" / "serve.yml").read_text())
    imports = [
        task
        for play in serve
        for task in play.get("pre_tasks", [])
        if task.get("ansible.builtin.import_role", {}).get("name") == "localllm.fleet.fleet_swarm"
    ]
    assert [t["ansible.builtin.import_role"]["tasks_from"] for t in imports] == ["firewall.yml"]
    assert imports[0]["when"] == "ollama_models_swarm | default(false) | bool"


# ------------------------------------------------------------------ registry pulls

STORE = "/usr/share/ollama/.ollama/models"
BIG, SMALL, CONFIG = "1" * 64, "2" * 64, "3" * 64
PULL = "mirror:8080/library/deepseek-r1:671b"


def manifest(*layers, config=None):
    body = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": config or {"digest": f"sha256:{CONFIG}", "size": 486},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", **x} for x in layers],
    }
    return json.dumps(body)


def test_the_manifest_url_is_the_one_ollama_pull_asks_for():
    assert (
        registry_manifest_url(PULL, True)
        == "http://mirror:8080/v2/library/deepseek-r1/manifests/671b"
    )
    assert (
        registry_manifest_url("deepseek-r1:671b")
        == "https://registry.ollama.ai/v2/library/deepseek-r1/manifests/671b"
    )
    assert (
        registry_manifest_url("qwq") == "https://registry.ollama.ai/v2/library/qwq/manifests/latest"
    )


@pytest.mark.parametrize(
    "name", ["mirror:8080/../deepseek-r1:1.5b", "mirror:8080/a/..:x", "a/b/c/d:e", "", "x y"]
)
def test_a_model_name_that_could_leave_the_registry_path_is_refused(name):
    with pytest.raises(SwarmError, match="invalid model name"):
        registry_manifest_url(name, True)


def test_only_layers_above_the_threshold_go_to_the_store_under_ollamas_names():
    raw = manifest(
        {"digest": f"sha256:{BIG}", "size": 40 << 20}, {"digest": f"sha256:{SMALL}", "size": 553}
    )
    blobs = registry_blobs([{"pull": PULL, "insecure": True}], {PULL: raw}, STORE, 1 << 20)
    assert blobs == [
        {
            "url": f"http://mirror:8080/v2/library/deepseek-r1/blobs/sha256:{BIG}",
            "sha256": BIG,
            "dest": f"{STORE}/blobs/sha256-{BIG}",
            "owner": "ollama",
            "group": "ollama",
            "mode": "0644",
        }
    ]
    # fleet_swarm takes them as they are.
    assert check(blobs)[0]["dest"] == f"{STORE}/blobs/sha256-{BIG}"


def test_a_layer_two_models_share_is_fetched_once_over_https_unless_insecure():
    other = "mirror:8080/library/deepseek-r1:latest"
    raw = manifest({"digest": f"sha256:{BIG}", "size": 40 << 20})
    blobs = registry_blobs(
        [{"pull": PULL, "insecure": False}, {"pull": other, "insecure": False}],
        {PULL: raw, other: raw},
        STORE + "/",
        0,
        owner="ollama",
        group="ollama",
    )
    assert [b["sha256"] for b in blobs] == [CONFIG, BIG]
    assert blobs[1]["url"].startswith("https://mirror:8080/v2/library/deepseek-r1/blobs/")
    assert blobs[1]["dest"] == f"{STORE}/blobs/sha256-{BIG}"


def test_a_model_whose_manifest_was_not_read_is_refused():
    with pytest.raises(SwarmError, match="no manifest was read"):
        registry_blobs([{"pull": PULL}], {}, STORE, 0)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"digest": f"sha256:{BIG[:-1]}", "size": 1}, "without a sha256:<64 hex> digest"),
        ({"digest": f"sha256:{'AB' * 32}", "size": 1}, "without a sha256:<64 hex> digest"),
        ({"digest": f"sha512:{BIG}", "size": 1}, "without a sha256:<64 hex> digest"),
        ({"digest": f"sha256:{BIG}\n", "size": 1}, "without a sha256:<64 hex> digest"),
        ({"digest": f"sha256:../../../../etc/{BIG}", "size": 1}, "without a sha256:<64 hex>"),
        ({"digest": f"sha256:{BIG}/../../x", "size": 1}, "without a sha256:<64 hex> digest"),
        ({"digest": ["sha256:" + BIG], "size": 1}, "without a sha256:<64 hex> digest"),
        ({"size": 1}, "without a sha256:<64 hex> digest"),
        ({"digest": f"sha256:{BIG}", "size": 1 << 44}, "impossible size"),
        ({"digest": f"sha256:{BIG}", "size": 10**30}, "impossible size"),
        ({"digest": f"sha256:{BIG}", "size": -1}, "impossible size"),
        ({"digest": f"sha256:{BIG}", "size": "40"}, "impossible size"),
        ({"digest": f"sha256:{BIG}", "size": True}, "impossible size"),
        ({"digest": f"sha256:{BIG}", "size": 1.5}, "impossible size"),
        ({"digest": f"sha256:{BIG}"}, "impossible size"),
    ],
)
def test_a_hostile_layer_is_refused_naming_the_model(layer, message):
    with pytest.raises(SwarmError, match=message) as caught:
        registry_layers(manifest(layer), PULL)
    assert PULL in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"layers": {}}', "no list of layers"),
        ('{"layers": [], "config": "x"}', "no list of layers"),
        ('{"layers": []}', "lists no layers"),
        ('{"layers": ["sha256:x"]}', "not an object"),
        ("[" * 100000 + "]" * 100000, "not JSON"),
        (" " * (4 << 20) + "{}", "not a manifest"),
        (12, "not text"),
    ],
)
def test_something_that_is_not_a_manifest_is_refused(raw, message):
    with pytest.raises(SwarmError, match=message):
        registry_layers(raw, PULL)


def test_one_digest_with_two_sizes_is_refused():
    raw = manifest({"digest": f"sha256:{BIG}", "size": 5}, {"digest": f"sha256:{BIG}", "size": 6})
    with pytest.raises(SwarmError, match="two sizes"):
        registry_layers(raw, PULL)


@pytest.mark.parametrize("store", ["", "relative/models", "/srv/../etc", "/srv/./models"])
def test_a_store_that_is_not_an_absolute_path_is_refused(store):
    raw = manifest({"digest": f"sha256:{BIG}", "size": 40 << 20})
    with pytest.raises(SwarmError, match="absolute path"):
        registry_blobs([{"pull": PULL}], {PULL: raw}, store, 0)
