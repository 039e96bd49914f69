"""Client keys: refused at plan time naming the client (never the key), stored only as
salted, peppered HMAC-SHA256, re-read by the hook when the file changes, fail closed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import gateway_keys as gk

KNOWN = ["deepseek-r1", "fleet/deepseek-r1:32b", "fleet/gemma3:4b", "gemma3"]
ALIASES = {"deepseek-r1": "fleet/deepseek-r1:32b", "gemma3": "fleet/gemma3:4b"}
KEY_A = "a" * 20 + "-secret-key-alpha-0001"
KEY_B = "b" * 20 + "-secret-key-bravo-0002"


def client(name="app", key=KEY_A, models=("*",), **extra):
    return {"name": name, "key": key, "models": None if models is None else list(models), **extra}


def check(*clients, **kwargs):
    return gk.validate_clients(list(clients), KNOWN, aliases=ALIASES, **kwargs)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (client(key=""), "client 'app': the key is empty"),
        (client(key=None), "client 'app': the key is empty"),
        (
            client(key="short-key"),
            "client 'app': the key is 9 characters, shorter than the minimum 32",
        ),
        (client(key="x" * 30 + " y"), "client 'app': the key has spaces"),
        (client(models=["gpt-4"]), "client 'app': \\['gpt-4'\\] is not a model name of the fleet"),
        (client(models=[]), "client 'app': models must be a non-empty list"),
        (client(models=["*", "gemma3"]), "'\\*' already allows every model"),
        (client(models=None), "say which models it may use"),
        (client(rpm=0), "rpm must be a whole number"),
        (client(rpm="60"), "rpm must be a whole number"),
        (client(rpm=True), "rpm must be a whole number"),
        (client(model=["gemma3"]), "client 'app': unknown fields \\['model'\\]"),
        (client(name="bad name"), "client 'bad name': the name must be"),
        ({"key": KEY_A, "models": ["*"]}, "client #1: the name must be"),
    ],
)
def test_a_bad_client_is_refused_naming_it(entry, message):
    with pytest.raises(gk.GatewayKeysError, match=message) as error:
        check(entry)
    assert KEY_A not in str(error.value)


def test_a_key_two_clients_share_is_refused_without_showing_it():
    with pytest.raises(
        gk.GatewayKeysError, match="client 'two' has the same key as client 'one'"
    ) as error:
        check(client("one"), client("two"))
    assert KEY_A not in str(error.value)


def test_a_name_declared_twice_is_refused():
    with pytest.raises(gk.GatewayKeysError, match="client 'one' is declared twice"):
        check(client("one"), client("one", key=KEY_B))


def test_the_minimum_length_is_a_setting_with_a_floor():
    assert check(client(key="k" * 20), min_length=20)[0]["name"] == "app"
    with pytest.raises(gk.GatewayKeysError, match="below 16"):
        check(client(), min_length=8)


def test_an_alias_and_the_model_it_names_are_allowed_together():
    assert check(client(models=["deepseek-r1"]))[0]["models"] == [
        "deepseek-r1",
        "fleet/deepseek-r1:32b",
    ]
    assert check(client(models=["fleet/gemma3:4b"]))[0]["models"] == ["fleet/gemma3:4b", "gemma3"]
    assert check(client())[0]["models"] == ["*"]


def test_unknown_models_are_kept_when_some_hosts_could_not_be_planned():
    checked = check(client(models=["fleet/deepseek-r1:671b"]), complete=False)
    assert checked[0]["models"] == ["fleet/deepseek-r1:671b"]
    assert gk.unknown_models(checked, KNOWN) == ["app: fleet/deepseek-r1:671b"]


def test_hashes_depend_on_the_pepper_and_salt_and_are_not_the_key():
    digest = gk.key_hash("pepper-" * 6, "salt", KEY_A)
    assert len(digest) == 64 and KEY_A not in digest
    assert digest == gk.key_hash("pepper-" * 6, "salt", KEY_A)
    assert digest != gk.key_hash("pepper-" * 6, "salt2", KEY_A)
    assert digest != gk.key_hash("other-" * 6, "salt", KEY_A)


def test_the_document_holds_no_key_and_keeps_its_salt_across_runs():
    clients = check(client("one", models=["gemma3"], rpm=5), client("two", key=KEY_B))
    pepper = gk.new_secret()
    document, current = gk.next_document(None, clients, pepper, KNOWN)
    assert current is None
    text = gk.render_document(document)
    assert KEY_A not in text and KEY_B not in text
    again, current = gk.next_document(text, clients, pepper, KNOWN)
    assert gk.render_document(again) == text
    assert current == json.loads(text)
    assert [c["name"] for c in json.loads(text)["clients"]] == ["one", "two"]
    assert "one: models=fleet/gemma3:4b,gemma3 rpm=5" in gk.describe(document)
    assert document["clients"][0]["hash"] not in gk.describe(document)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"format": 2}', "not format 1"),
        ('{"format": 1, "algorithm": "md5"}', "algorithm is not hmac-sha256"),
        ('{"format": 1, "algorithm": "hmac-sha256", "salt": "zz"}', "salt is missing"),
    ],
)
def test_a_keys_file_that_cannot_be_trusted_is_refused(text, message):
    with pytest.raises(gk.GatewayKeysError, match=message):
        gk.parse_document(text)


class Files:
    def __init__(self, root: Path):
        self.keys = root / "keys.json"
        self.pepper = root / "keys.pepper"
        self.pepper_value = gk.new_secret()
        self.pepper.write_text(self.pepper_value + "\n")

    def write(self, *clients, models=KNOWN) -> None:
        """Replace the file atomically, as the module does (a new inode)."""
        document, _ = gk.next_document(
            self.keys.read_text() if self.keys.exists() else None,
            check(*clients),
            self.pepper_value,
            models,
        )
        temp = self.keys.with_suffix(".tmp")
        temp.write_text(gk.render_document(document))
        os.replace(temp, self.keys)


def test_the_store_finds_a_client_by_its_key_and_rereads_a_changed_file(tmp_path):
    files = Files(tmp_path)
    files.write(client("one", models=["gemma3"]), client("two", key=KEY_B))
    store = gk.KeyStore(str(files.keys), str(files.pepper))
    assert store.lookup(KEY_A)["name"] == "one"
    assert store.lookup(KEY_B)["name"] == "two"
    assert store.lookup("c" * 40) is None
    assert store.lookup("") is None and store.lookup(None) is None
    assert store.loads == 1
    store.lookup(KEY_A)
    assert store.loads == 1  # unchanged file: not read again
    files.write(client("two", key=KEY_B))  # "one" revoked
    assert store.lookup(KEY_A) is None
    assert store.lookup(KEY_B)["name"] == "two"
    assert store.loads == 2


def test_the_store_refuses_every_key_while_the_file_is_missing_or_broken(tmp_path):
    files = Files(tmp_path)
    files.write(client("one"))
    store = gk.KeyStore(str(files.keys), str(files.pepper))
    assert store.lookup(KEY_A) is not None
    files.keys.unlink()
    assert store.lookup(KEY_A) is None
    assert "missing" in store.error
    files.keys.write_text("{ broken")
    assert store.lookup(KEY_A) is None
    assert "not JSON" in store.error
    files.write(client("one"))
    assert store.lookup(KEY_A)["name"] == "one"
    assert store.error is None


def test_a_changed_pepper_invalidates_every_hash(tmp_path):
    files = Files(tmp_path)
    files.write(client("one"))
    store = gk.KeyStore(str(files.keys), str(files.pepper))
    assert store.lookup(KEY_A) is not None
    temp = tmp_path / "p.tmp"
    temp.write_text(gk.new_secret())
    os.replace(temp, files.pepper)
    assert store.lookup(KEY_A) is None


def test_model_state_and_bearer():
    store = gk.KeyStore("/nonexistent", "/nonexistent")
    store.models = frozenset(KNOWN)
    assert gk.model_state(store, "gemma3") == "known"
    assert gk.model_state(store, "gpt-4") == "unknown"
    assert gk.model_state(store, {"x": 1}) == "unknown"
    assert gk.model_state(store, None) == "none"
    assert gk.bearer("Bearer  abc ") == "abc"
    assert gk.bearer("bearer abc") == "abc"
    assert gk.bearer("abc") == "abc"
    assert gk.bearer(None) == ""
    # HAProxy prefixes every key so that LiteLLM hashes it wherever it records it.
    assert gk.bearer("Bearer sk-fleet-abc") == "abc"
    assert gk.bearer("Bearer sk-fleet-sk-fleet-abc") == "sk-fleet-abc"


def test_the_pools_no_healthy_host_answer_is_found_inside_litellms_wrapping():
    pool = (
        '{"error":{"message":"No host serving fleet/gemma3:4b is healthy; try again shortly or '
        'use another model.","type":"service_unavailable","param":"model",'
        '"code":"model_unavailable"}}'
    )
    wrapped = f"litellm.ServiceUnavailableError: Ollama_chatException - {json.dumps(pool)[1:-1]}"
    expected = "No host serving fleet/gemma3:4b is healthy; try again shortly or use another model."
    assert gk.unavailable_message(wrapped) == expected
    assert gk.unavailable_message(pool) == expected
    assert gk.unavailable_message("litellm.APIConnectionError: refused") is None


def test_haproxy_adds_the_prefix_the_hook_takes_off():
    import yaml

    role_vars = (
        Path(__file__).resolve().parents[2] / "roles" / "fleet_gateway" / "vars" / "main.yml"
    )
    assert yaml.safe_load(role_vars.read_text())["_fleet_gateway_transit_prefix"] == (
        gk.TRANSIT_PREFIX
    )
    assert gk.TRANSIT_PREFIX.startswith("sk-")  # what makes LiteLLM hash a key it records
