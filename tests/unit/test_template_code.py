"""The compiled-template cache (plugins/plugin_utils/template_code.py, installed by the preload
callback): keys that tell apart everything a compile depends on, the records the workers send
through the pipe (whole, bounded, never blocking), and, through ansible-core itself, renders
that are the same with the cache as without it, with workers that inherit the code instead of
compiling it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from role_testing import ansible_playbook

from ansible_collections.localllm.fleet.plugins.plugin_utils import template_code as tc

pytestmark = pytest.mark.controller  # ansible-core's templating

REPO = Path(__file__).resolve().parents[2]
FINGERPRINT = ("env", "gen", None, (), ("{%", "%}"))


def _code(text: str = "x = 1") -> types.CodeType:
    return compile(text, "<template>", "exec")


# --- keys ---------------------------------------------------------------------------------


def test_the_same_compile_gives_the_same_key():
    assert tc.code_key("template", "{{ a }}", FINGERPRINT, True) == tc.code_key(
        "template", "{{ a }}", FINGERPRINT, True
    )


@pytest.mark.parametrize(
    "other",
    [
        ("expression", "{{ a }}", FINGERPRINT, True),  # the same text as an expression
        ("template", "{{ a }} ", FINGERPRINT, True),  # one more space
        ("template", "{{ a }}", FINGERPRINT, False),  # backslashes not escaped
        ("template", "{{ a }}", ("env", "gen", None, (), ("[%", "%]")), True),  # other delimiters
        ("template", "{{ a }}", ("env", "other", None, (), ("{%", "%}")), True),  # code generator
    ],
)
def test_anything_a_compile_depends_on_changes_the_key(other):
    assert tc.code_key("template", "{{ a }}", FINGERPRINT, True) != tc.code_key(*other)


def test_parts_cannot_run_into_each_other():
    # Each part is length-prefixed: moving text from the kind into the source is another key.
    assert tc.code_key("templat", "e{{ a }}", FINGERPRINT, True) != tc.code_key(
        "template", "{{ a }}", FINGERPRINT, True
    )


def test_strings_that_are_not_utf8_clean_still_get_a_key():
    assert len(tc.code_key("template", "{{ '\udcff' }}", FINGERPRINT, True)) == 32


def test_an_environment_with_an_escaping_function_is_not_cached():
    class Env:
        autoescape = staticmethod(lambda name: True)

    assert tc.environment_fingerprint(Env()) is None


def test_an_environment_missing_a_setting_is_not_cached():
    class Env:
        autoescape = False

    assert tc.environment_fingerprint(Env()) is None


def test_overridden_delimiters_change_the_fingerprint():
    import jinja2

    plain = jinja2.Environment()  # noqa: S701 - not HTML
    other = plain.overlay(variable_start_string="[[", variable_end_string="]]")
    assert tc.environment_fingerprint(plain) != tc.environment_fingerprint(other)
    again = jinja2.Environment()  # noqa: S701 - not HTML
    assert tc.environment_fingerprint(plain) == tc.environment_fingerprint(again)


# --- records ------------------------------------------------------------------------------


def test_records_round_trip_and_a_partial_one_waits_for_the_rest():
    key_a, key_b = b"a" * 32, b"b" * 32
    first, second = tc.encode_record(key_a, _code()), tc.encode_record(key_b, _code("y = 2"))
    stream = first + second
    records, rest = tc.decode_records(stream[: len(first) + 5])
    assert [k for k, _ in records] == [key_a] and rest == second[:5]
    records, rest = tc.decode_records(rest + second[5:])
    assert [k for k, _ in records] == [key_b] and rest == b""
    namespace: dict = {}
    exec(records[0][1], namespace)  # noqa: S102 - the test's own code object
    assert namespace["y"] == 2


def test_a_record_too_large_to_write_whole_is_not_made():
    big = _code("x = " + repr("a" * (tc._MAX_RECORD + 1)))
    assert tc.encode_record(b"k" * 32, big) is None


def test_a_payload_that_is_not_code_is_dropped_and_the_next_record_still_read():
    import marshal
    import struct

    payload = b"k" * 32 + marshal.dumps({"not": "code"})
    bogus = struct.pack(">I", len(payload)) + payload
    good = tc.encode_record(b"g" * 32, _code())
    records, rest = tc.decode_records(bogus + good)
    assert [k for k, _ in records] == [b"g" * 32] and rest == b""


@pytest.mark.parametrize("length", [0, 5, 32, tc._MAX_RECORD + 1, 2**32 - 1])
def test_a_length_no_record_has_drops_what_is_buffered(length):
    import struct

    records, rest = tc.decode_records(struct.pack(">I", length) + b"\0" * 64)
    assert records == [] and rest == b""


def test_damaged_code_is_dropped():
    import struct

    payload = b"k" * 32 + b"\xe3\x00garbage"
    records, rest = tc.decode_records(struct.pack(">I", len(payload)) + payload)
    assert records == [] and rest == b""


# --- the pipe between the workers and the main process ----------------------------------


def _in_child(function) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            function()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_what_a_forked_worker_compiles_reaches_the_main_process():
    cache = tc.CodeCache()
    try:
        cache.put(b"m" * 32, _code())  # the main process's own: kept, not sent
        assert cache.take_in() == 0
        assert _in_child(lambda: cache.put(b"w" * 32, _code("w = 1"))) == 0
        assert b"w" * 32 not in cache.entries
        assert cache.take_in() == 1
        assert isinstance(cache.get(b"w" * 32), types.CodeType)
        # A worker forked now inherits it.
        assert _in_child(lambda: os._exit(0 if cache.get(b"w" * 32) else 3)) == 0
    finally:
        cache.close()


def test_a_worker_never_blocks_on_a_full_pipe_and_the_main_process_reads_whole_records():
    cache = tc.CodeCache()
    try:

        def flood():
            for number in range(20_000):  # far beyond any pipe's capacity
                cache.put(number.to_bytes(32, "big"), _code(f"v = {number}"))

        assert _in_child(flood) == 0
        arrived = cache.take_in()
        assert 0 < arrived < 20_000
        assert all(isinstance(code, types.CodeType) for code in cache.entries.values())
    finally:
        cache.close()


def test_take_in_in_a_worker_does_nothing():
    cache = tc.CodeCache()
    try:
        assert _in_child(lambda: cache.put(b"w" * 32, _code())) == 0
        # A worker must not take what is meant for the main process.
        assert _in_child(lambda: os._exit(0 if cache.take_in() == 0 else 3)) == 0
        assert cache.take_in() == 1
    finally:
        cache.close()


def test_the_cache_keeps_at_most_its_bound():
    cache = tc.CodeCache(max_entries=3)
    try:
        for number in range(5):
            cache.put(number.to_bytes(32, "big"), _code())
        assert len(cache.entries) == 3
    finally:
        cache.close()


# --- through ansible-core -----------------------------------------------------------------

# Renders the same battery with or without the cache, in a fresh interpreter (installing
# patches ansible-core's environment class for the process), twice each, and prints the
# results and how many compiles reached Jinja.
_BATTERY = r"""
import json, sys
import jinja2
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([sys.argv[1]])
from ansible._internal._templating._jinja_bits import AnsibleEnvironment
from ansible.template import Templar, trust_as_template
from ansible.parsing.dataloader import DataLoader
compiles = failed = 0
original = jinja2.Environment.compile
def counting(self, *args, **kwargs):
    global compiles, failed
    compiles += 1
    try:
        return original(self, *args, **kwargs)
    except Exception:
        failed += 1
        raise
AnsibleEnvironment.compile = counting
if sys.argv[2] == "on":
    from ansible_collections.localllm.fleet.plugins.plugin_utils import template_code
    cache, what = template_code.install()
    assert what == "installed", what
variables = {"a": 3, "b": "x", "items": [1, 2], "path": "c:\\new"}
templar = Templar(loader=DataLoader(), variables=variables)
cases = [
    ("t", "{{ a + 1 }}"),
    ("t", "{{ b }}-{{ a }}"),
    ("t", "{{ items | map('string') | join(',') }}"),
    ("t", "{{ 'a\\1' }}"),                      # escaped backslash in a string constant
    ("t", "{{ path | regex_replace('\\\\', '/') }}"),
    ("t", "'{{ a }}'"),
    ("t", "[[ a ]] {{ a }}"),                  # the same text as the next one, other delimiters
    ("t", "#jinja2:variable_start_string:'[[', variable_end_string:']]'\n[[ a ]] {{ a }}"),
    ("t", "{{ a }} {{ a }}\n\n"),              # trailing newlines kept
    ("t", "{% if a > 2 %}big{% else %}small{% endif %}"),
    ("t", "{{ undefined_var | default('dflt') }}"),
    ("t", "{{ lookup('ansible.builtin.vars', 'b') }}"),
    ("t", "{{ a is number }}"),
    ("t", "{{ a if a > 5 else nosuchvar | nosuchfilter }}"),  # unknown filter, not reached
    ("t", "{{ a | nosuchfilter }}"),           # unknown filter: the same error every time
    ("t", "{{ a +* }}"),                       # syntax error: the same error every time
    ("c", "a > 2"),
    ("c", "b == 'x' and items | length == 2"),
    ("c", "a +* 1"),
    ("e", "a + 1"),
    ("e", "'{{ a }}'"),                        # the same text as a template above
    ("e", "'a\\1'"),
    ("r", "{{ 'a\\1' }}"),                     # backslashes not escaped (a different compile)
]
results = []
rounds = []
for _round in range(2):
    for kind, text in cases:
        text = trust_as_template(text)
        try:
            if kind == "t":
                value = templar.template(text)
            elif kind == "c":
                value = templar.evaluate_conditional(text)
            elif kind == "e":
                value = templar.evaluate_expression(text)
            else:
                value = templar.template(text, escape_backslashes=False)
            results.append([kind, text, "ok", repr(value)])
        except Exception as exc:
            results.append([kind, text, type(exc).__name__, str(exc).splitlines()[0]])
    rounds.append({"compiles": compiles, "failed": failed})
    compiles = failed = 0
print(json.dumps({"results": results, "rounds": rounds}))
"""


def _run_script(script: str, *args: str) -> dict:
    """`script` in a fresh interpreter with the project's ansible.cfg (argv[1]: the
    collections path); the JSON on its last line of output."""
    ran = subprocess.run(
        [sys.executable, "-c", script, str(REPO / "collections"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        cwd=REPO,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(ran.stdout.strip().splitlines()[-1])


def _battery(cache: str) -> dict:
    return _run_script(_BATTERY, cache)


def test_renders_are_the_same_with_the_cache_and_it_is_used():
    without, with_cache = _battery("off"), _battery("on")
    assert with_cache["results"] == without["results"]
    outcomes = {(kind, text): (status, value) for kind, text, status, value in without["results"]}
    # The battery means what it says: the cases differ where they should.
    assert outcomes[("t", "{{ 'a\\1' }}")] != outcomes[("r", "{{ 'a\\1' }}")]
    assert outcomes[("t", "{{ a +* }}")][0] != "ok"
    assert outcomes[("t", "'{{ a }}'")] != outcomes[("e", "'{{ a }}'")]
    assert outcomes[("t", "[[ a ]] {{ a }}")] == ("ok", repr("[[ a ]] 3"))
    assert outcomes[("t", "{{ a | nosuchfilter }}")][0] != "ok"
    assert outcomes[
        ("t", "#jinja2:variable_start_string:'[[', variable_end_string:']]'\n[[ a ]] {{ a }}")
    ] == (
        "ok",
        repr("3 {{ a }}"),
    )
    # Without the cache, each round compiles everything again. With it, the first round
    # compiles the same (no two cases share a key), and the second only what failed to
    # compile the first time (which is not kept).
    first, second = without["rounds"]
    assert second == first and first["failed"] > 0
    cached_first, cached_second = with_cache["rounds"]
    assert cached_first == first
    assert cached_second == {"compiles": first["failed"], "failed": first["failed"]}


def test_install_stays_off_on_an_ansible_core_it_was_not_tested_with():
    code = r"""
import sys
import ansible.release
ansible.release.__version__ = "2.99.0"
from ansible_collections.localllm.fleet.plugins.plugin_utils import template_code
cache, what = template_code.install()
from ansible._internal._templating._jinja_bits import AnsibleEnvironment
import jinja2
print(cache is None, AnsibleEnvironment.compile is jinja2.Environment.compile, what)
"""
    ran = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "collections")},
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.startswith("True True ansible-core 2.99.0 is not one"), ran.stdout


_PLAYS = [
    {
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            "shared": "{{ base ~ '-' ~ (3 * 7) }}",
            "base": "{{ 'fleet' | upper }}",
        },
        "tasks": [
            {
                "name": f"step {n}",
                "ansible.builtin.debug": {"msg": "{{ shared }} {{ " + str(n) + " }}"},
                "when": "shared is string",
            }
            for n in range(6)
        ]
        + [
            {
                "name": "loop",
                "ansible.builtin.debug": {"msg": "{{ shared }}/{{ item }}"},
                "loop": [1, 2, 3],
            }
        ],
    }
]


def test_a_playbook_gives_the_same_output_with_and_without_it(tmp_path):
    for name in ("on", "off"):
        (tmp_path / name).mkdir()
    on = ansible_playbook(tmp_path / "on", _PLAYS, "-vvv")
    off = ansible_playbook(
        tmp_path / "off", _PLAYS, env={"LOCALLLM_FLEET_TEMPLATE_CODE_CACHE": "false"}
    )
    assert not on.failed and not off.failed, on.out[-3000:] + off.out[-3000:]

    def messages(run):
        return [line.strip() for line in run.out.splitlines() if line.strip().startswith("msg:")]

    assert messages(on) == messages(off)
    assert "msg: FLEET-21 5" in messages(on) and "msg: FLEET-21/3" in messages(on)
    assert "template code cache: installed" in on.out
    # The workers sent what they compiled: the main process holds it at the end.
    kept = [
        line
        for line in on.out.splitlines()
        if "compiled templates kept in the main process" in line
    ]
    assert kept and int(kept[-1].split("cache: ")[1].split()[0]) > 0


def test_it_can_be_turned_off(tmp_path):
    off = ansible_playbook(
        tmp_path, _PLAYS, "-vvv", env={"LOCALLLM_FLEET_TEMPLATE_CODE_CACHE": "false"}
    )
    assert not off.failed and "template code cache" not in off.out


# --- what the main process compiles before a task's workers are forked --------------------


def test_precompile_does_nothing_before_the_cache_is_installed():
    # This process never installs it (the tests that do run in fresh interpreters).
    assert tc.installed() is None
    assert tc.precompile(["{{ a }}"], ["a > 1"]) == 0


def test_template_texts_finds_the_templates_in_nested_values_only():
    value = {
        "plain": "no template",
        "t": "{{ a }}",
        "nested": [{"s": "{% if x %}y{% endif %}"}, ("{# c #}", 3, None, True)],
        "number": 5,
    }
    assert list(tc.template_texts(value)) == ["{{ a }}", "{% if x %}y{% endif %}", "{# c #}"]


def test_template_texts_does_not_render_a_container_that_templates_on_access():
    class Lazy(dict):
        def __getitem__(self, key):
            raise AssertionError("rendered")

        def values(self):
            raise AssertionError("rendered")

        def items(self):
            raise AssertionError("rendered")

    class LazyList(list):
        def __getitem__(self, index):
            raise AssertionError("rendered")

        def __iter__(self):
            raise AssertionError("rendered")

    value = Lazy(x="{{ a }}", y=LazyList(["{{ b }}"]))
    assert list(tc.template_texts(value)) == ["{{ a }}", "{{ b }}"]


def test_template_texts_has_bounds():
    deep: list = ["{{ a }}"]
    for _ in range(tc.MAX_DEPTH + 5):
        deep = [deep]
    assert list(tc.template_texts(deep)) == []
    assert list(tc.template_texts("{{ a }}" + " " * tc.MAX_TEXT)) == []


def test_conditions_are_taken_as_ansible_core_compiles_them():
    assert list(tc.conditions([" a > 1 ", "", True, None, "{{ expr_var }}", "b"])) == [
        "a > 1",
        "{{ expr_var }}",  # a whole template: rendered as one first
        "b",
    ]
    assert list(tc.conditions("x is defined")) == ["x is defined"]


_PRECOMPILE = r"""
import json, sys
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([sys.argv[1]])
from ansible.template import Templar, trust_as_template
from ansible.parsing.dataloader import DataLoader
from ansible_collections.localllm.fleet.plugins.plugin_utils import template_code
cache, what = template_code.install()
assert what == "installed", what
new = template_code.precompile(
    ["{{ a + 1 }}", "{{ 'a\\1' }}", "{{ a +* }}", "#jinja2:variable_start_string:'[['\n[[ a ]]"],
    ["a > 2", "b == 'x'", "a +* 1"],
)
again = template_code.precompile(["{{ a + 1 }}"], ["a > 2"])
templar = Templar(loader=DataLoader(), variables={"a": 3, "b": "x"})
before = len(cache.entries)
results = [
    templar.template(trust_as_template("{{ a + 1 }}")),
    templar.template(trust_as_template("{{ 'a\\1' }}")),
    templar.evaluate_conditional(trust_as_template("a > 2")),
    templar.evaluate_conditional(trust_as_template(" b == 'x' ")),
]
out = {"new": new, "again": again, "kept_before": before, "kept_after": len(cache.entries)}
out.update(compiled=cache.compiled, results=[repr(r) for r in results])
print(json.dumps(out))
"""


def test_precompiled_texts_are_what_the_renders_use():
    out = _run_script(_PRECOMPILE)
    # Six texts new (the one with an override header is left to the worker), none again.
    assert out["new"] == 6 and out["again"] == 0
    # The four that compile were kept (the two syntax errors were not) ...
    assert out["kept_before"] == 4
    # ... and the renders compiled nothing more: they used exactly those.
    assert out["kept_after"] == 4 and out["compiled"] == 4
    assert out["results"] == [repr(4), repr("a\\1"), repr(True), repr(True)]
