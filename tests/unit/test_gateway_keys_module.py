"""localllm.fleet.gateway_keys: the keys file on the gateway host, written as the module runs
under Ansible (argument validation, check mode, diff), and read back by the hook's store."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat

from ollama_module_testing import run

from ansible_collections.localllm.fleet.plugins.module_utils import gateway_keys as gk

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
MODELS = ["fleet/gemma3:4b", "gemma3"]
KEY = "k" * 16 + "-this-is-a-long-test-key"


def args(tmp_path, clients, **extra):
    return {
        "path": str(tmp_path / "keys.json"),
        "pepper_path": str(tmp_path / "keys.pepper"),
        "clients": [{k: v for k, v in c.items() if k != "key"} for c in clients],
        "keys": {c["name"]: c["key"] for c in clients},
        "models": MODELS,
        "aliases": {"gemma3": "fleet/gemma3:4b"},
        "owner": OWNER,
        "group": GROUP,
        **extra,
    }


def test_first_run_writes_pepper_and_hashes_then_a_second_run_changes_nothing(tmp_path):
    clients = [{"name": "app", "key": KEY, "models": ["gemma3"], "rpm": 30}]
    first = run("gateway_keys", args(tmp_path, clients))
    assert first["changed"] is True and first["pepper_created"] is True
    assert first["clients"] == ["app"]
    assert KEY not in json.dumps(first)
    text = (tmp_path / "keys.json").read_text()
    assert KEY not in text
    for name in ("keys.json", "keys.pepper"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640
    second = run("gateway_keys", args(tmp_path, clients))
    assert second["changed"] is False
    assert (tmp_path / "keys.json").read_text() == text
    store = gk.KeyStore(str(tmp_path / "keys.json"), str(tmp_path / "keys.pepper"))
    assert store.lookup(KEY)["models"] == ["fleet/gemma3:4b", "gemma3"]


def test_check_mode_reports_a_revocation_without_writing_and_diff_names_no_key(tmp_path):
    other = "o" * 16 + "-another-long-test-key"
    clients = [
        {"name": "app", "key": KEY, "models": ["*"]},
        {"name": "other", "key": other, "models": ["gemma3"]},
    ]
    run("gateway_keys", args(tmp_path, clients))
    before = (tmp_path / "keys.json").read_text()
    result = run("gateway_keys", args(tmp_path, clients[1:]), check=True, diff=True)
    assert result["changed"] is True
    assert (tmp_path / "keys.json").read_text() == before
    assert "app: models=*" in result["diff"]["before"]
    assert "app" not in result["diff"]["after"].split("(public")[0]
    assert KEY not in json.dumps(result) and other not in json.dumps(result)
    document = json.loads(before)
    assert all(c["hash"] not in json.dumps(result) for c in document["clients"])


def test_a_bad_client_fails_naming_it_and_writes_nothing(tmp_path):
    result = run("gateway_keys", args(tmp_path, [{"name": "app", "key": "tiny", "models": ["*"]}]))
    assert result["failed"] is True
    assert "client 'app': the key is 4 characters" in result["msg"]
    assert not (tmp_path / "keys.json").exists()
    assert not (tmp_path / "keys.pepper").exists()


def test_keys_are_masked_in_the_invocation(tmp_path):
    result = run("gateway_keys", args(tmp_path, [{"name": "app", "key": KEY, "models": ["*"]}]))
    assert KEY not in json.dumps(result)


def test_a_pepper_too_short_to_trust_is_refused(tmp_path):
    (tmp_path / "keys.pepper").write_text("tiny\n")
    result = run("gateway_keys", args(tmp_path, [{"name": "app", "key": KEY, "models": ["*"]}]))
    assert result["failed"] is True
    assert "the pepper is missing or shorter than 32 characters" in result["msg"]


def test_keys_never_travel_inside_clients(tmp_path):
    arguments = args(tmp_path, [{"name": "app", "key": KEY, "models": ["*"]}])
    arguments["clients"][0]["key"] = KEY
    result = run("gateway_keys", arguments)
    assert result["failed"] is True
    assert "pass the keys in `keys`" in result["msg"]
    arguments = args(tmp_path, [{"name": "app", "key": KEY, "models": ["*"]}])
    arguments["keys"]["ghost"] = KEY + "x"
    result = run("gateway_keys", arguments)
    assert "keys given for clients that are not declared: ['ghost']" in result["msg"]
