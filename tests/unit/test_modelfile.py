"""Modelfile parser/validator/serializer and the /api/create request it builds.

Expected values come from Ollama v0.32.15's parser/parser.go behaviour and its tests, and
docs/modelfile.md; the implementation was also checked against upstream's Go code.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils.modelfile import (
    INSTRUCTIONS,
    PLAIN_KEYWORDS,
    Command,
    Modelfile,
    ModelfileError,
    create_request,
    decode,
    lint,
    parameter_value,
    parameters,
    parse,
    parse_bytes,
    serialize,
    validate_model_name,
)

REPO = Path(__file__).resolve().parents[2]
LINT = REPO / "scripts" / "modelfile-lint"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "modelfiles"

ERR_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
ERR_ROLE = 'message role must be one of "system", "user", or "assistant"'


def commands(text: str) -> list[tuple[str, str]]:
    return [(c.name, c.args) for c in parse(text).commands]


def error_of(text: str, *, validate: bool = True) -> str:
    with pytest.raises(ModelfileError) as excinfo:
        parse(text, validate=validate)
    return str(excinfo.value)


# --- instructions -------------------------------------------------------------------


def test_every_instruction_is_stored_under_ollamas_command_name():
    text = (
        "FROM llama3.2\n"
        "ADAPTER ./lora.gguf\n"
        "DRAFT ./draft.gguf\n"
        "LICENSE MIT\n"
        "TEMPLATE {{ .Prompt }}\n"
        "SYSTEM You are Mario.\n"
        "PARAMETER temperature 0.7\n"
        "MESSAGE user Is Toronto in Canada?\n"
        "MESSAGE assistant yes\n"
        "RENDERER qwen3-coder\n"
        "PARSER qwen3-coder\n"
        "REQUIRES 0.14.0\n"
    )
    assert commands(text) == [
        ("model", "llama3.2"),
        ("adapter", "./lora.gguf"),
        ("draft", "./draft.gguf"),
        ("license", "MIT"),
        ("template", "{{ .Prompt }}"),
        ("system", "You are Mario."),
        ("temperature", "0.7"),
        ("message", "user: Is Toronto in Canada?"),
        ("message", "assistant: yes"),
        ("renderer", "qwen3-coder"),
        ("parser", "qwen3-coder"),
        ("requires", "0.14.0"),
    ]


@pytest.mark.parametrize("keyword", ["FROM", "from", "From", "fRoM"])
def test_instruction_keywords_are_case_insensitive(keyword):
    assert commands(f"{keyword} base\nsYsTeM hi\nPaRaMeTeR top_k 5\n") == [
        ("model", "base"),
        ("system", "hi"),
        ("top_k", "5"),
    ]


def test_parameter_names_are_case_sensitive():
    assert error_of("FROM base\nPARAMETER Temperature 0.7\n") == "unknown parameter 'Temperature'"
    assert commands("FROM base\nPARAMETER temperature 0.7\n")[1] == ("temperature", "0.7")


def test_from_may_come_after_other_instructions_and_repeat():
    assert commands("PARAMETER top_k 1\nFROM a\nFROM b\n") == [
        ("top_k", "1"),
        ("model", "a"),
        ("model", "b"),
    ]


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# only a comment\n", "PARAMETER top_k 1\n", "SYSTEM hi\nLICENSE MIT\n"],
)
def test_a_modelfile_without_from_is_rejected(text):
    assert error_of(text) == "no FROM line"


def test_unknown_instruction_reports_its_line():
    with pytest.raises(ModelfileError, match=re.escape(f"(line 3): {ERR_COMMAND}")):
        parse("\nFROM foo\nBADCOMMAND param1 value1\n")


def test_line_numbers_follow_ollamas_counting():
    # A keyword alone on its line is caught at the newline, so Ollama names the next line.
    assert error_of("FROM base\nSYSTEM\n") == f"(line 3): {ERR_COMMAND}"
    # "\r" and "\n" each count as a line end: CRLF files report doubled numbers.
    assert error_of("FROM base\r\nBAD x\r\n") == f"(line 3): {ERR_COMMAND}"
    assert error_of("FROM base\nBAD x\n") == f"(line 2): {ERR_COMMAND}"


def test_keyword_without_value_at_end_of_file_is_unexpected_eof():
    assert error_of("FROM") == "unexpected EOF"
    assert error_of("FROM base\nSYSTEM") == "unexpected EOF"


# --- values, quoting, comments ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('FROM "FOO  BAR  "', "FOO  BAR  "),
        ("FROM     FOOO BAR    ", "FOOO BAR"),
        ("FROM /what/is/the path ", "/what/is/the path"),
        ("FROM llama3:7b-instruct-q4_K_M", "llama3:7b-instruct-q4_K_M"),
        ('FROM "     model 1"', "     model 1"),
        ("FROM\tbase\t", "base"),
    ],
)
def test_values_are_trimmed_unless_quoted(line, expected):
    assert commands(line) == [("model", expected)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"""\nThis is a\nmultiline system.\n"""', "\nThis is a\nmultiline system.\n"),
        ('"""This is a\nmultiline system."""', "This is a\nmultiline system."),
        ('"""This is a single line."""', "This is a single line."),
        ('"""\nwith "quotes".\n"""', '\nwith "quotes".\n'),
        ('""""""', ""),
        ('""', ""),
        ('"\'"', "'"),
        ('"two\nlines"', "two\nlines"),
        ('"""  keep   spaces   """   ', "  keep   spaces   "),
        ('a "quoted" word', 'a "quoted" word'),
        ('x"', 'x"'),
    ],
)
def test_quoted_values(value, expected):
    assert commands(f"FROM foo\nSYSTEM {value}\n")[1] == ("system", expected)


@pytest.mark.parametrize(
    "value", ['"""This is a multiline system.""', '"', '"""\nnever closed\n', '"open\n']
)
def test_unclosed_quote_is_unexpected_eof(value):
    assert error_of(f"FROM foo\nSYSTEM {value}\n") == "unexpected EOF"


def test_comments_only_where_an_instruction_may_start():
    text = (
        "# leading comment\n"
        "FROM base # not a comment\n"
        "   # indented comment\n"
        "SYSTEM use #hashtags\n"
        'TEMPLATE """\n# inside a quoted value\n"""\n'
    )
    assert commands(text) == [
        ("model", "base # not a comment"),
        ("system", "use #hashtags"),
        ("template", "\n# inside a quoted value\n"),
    ]


def test_non_printable_characters_are_dropped_like_ollama_does():
    # Zero-width space, NBSP and NUL never reach Ollama's stored value.
    assert commands("FROM ba\u200bse\nSYSTEM a\u00a0b\x00c\n") == [
        ("model", "base"),
        ("system", "abc"),
    ]


def test_multibyte_text_survives():
    assert commands("FROM test\n\tSYSTEM 你好👋") == [("model", "test"), ("system", "你好👋")]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_files_with_a_byte_order_mark_are_read(encoding):
    bom = b"\xff\xfe" if encoding.endswith("le") else b"\xfe\xff"
    data = bom + "FROM bob\nPARAMETER num_ctx 4096\nSYSTEM You are a utf16 file.\n".encode(encoding)
    assert [(c.name, c.args) for c in parse_bytes(data).commands] == [
        ("model", "bob"),
        ("num_ctx", "4096"),
        ("system", "You are a utf16 file."),
    ]


def test_utf8_bom_and_invalid_bytes():
    assert decode(b"\xef\xbb\xbfFROM x") == "FROM x"
    assert decode(b"FROM a\xe2\x82b") == "FROM a\ufffdb"  # one U+FFFD per bad sequence, as Go


# --- PARAMETER ----------------------------------------------------------------------


def test_parameter_without_value():
    assert error_of("FROM foo\nPARAMETER num_ctx\n") == "unexpected EOF: num_ctx"
    assert error_of("FROM foo\nPARAMETER num_ctx") == "unexpected EOF"


def test_parameter_name_stops_at_characters_ollama_does_not_allow():
    assert error_of("FROM foo\nPARAMETER num-ctx 4096\n") == "unexpected EOF: num"


def test_two_blanks_after_parameter_make_an_empty_name():
    assert parse("FROM x\nPARAMETER  top_k 5\n", validate=False).commands[1] == Command(
        "", "top_k 5"
    )
    assert error_of("FROM x\nPARAMETER  top_k 5\n") == "unknown parameter ''"


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("num_ctx", "4096", 4096),
        ("seed", "-1", -1),
        ("num_predict", "+42", 42),
        ("main_gpu", "0", 0),
        ("draft_num_predict", "4", 4),
        ("temperature", "0.7", 0.7),
        ("top_p", "0.95", 0.95),
        ("min_p", "1e-2", 0.01),
        ("repeat_penalty", "1_000.5", 1000.5),
        ("temperature", "0.1234567891234", 0.12345679),  # float32, shortest digits
        ("use_mmap", "true", True),
        ("use_mmap", "F", False),
        ("use_mmap", "1", True),
        ("stop", "<|eot_id|>", ["<|eot_id|>"]),
    ],
)
def test_parameter_values_are_typed_like_ollama(name, raw, expected):
    value = parameter_value(name, raw)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("temperature", "hot", "invalid float value [hot]"),
        ("temperature", "1e39", "invalid float value [1e39]"),  # beyond float32
        ("temperature", "1._5", "invalid float value [1._5]"),
        ("num_ctx", "x", "invalid int value [x]"),
        ("num_ctx", "4k", "invalid int value [4k]"),
        ("num_ctx", "1_000", "invalid int value [1_000]"),
        ("num_ctx", "2.5", "invalid int value [2.5]"),
        ("seed", "9223372036854775808", "invalid int value [9223372036854775808]"),
        ("use_mmap", "yes", "invalid bool value [yes]"),
        ("use_mmap", "", "invalid bool value []"),
        ("num_gqa", "1", "unknown parameter 'num_gqa'"),
        ("numa", "true", "unknown parameter 'numa'"),
    ],
)
def test_invalid_parameter_values_give_ollamas_errors(name, raw, message):
    with pytest.raises(ModelfileError, match=re.escape(message)):
        parameter_value(name, raw)
    assert error_of(f"FROM x\nPARAMETER {name} {raw}\n") == message


def test_huge_numbers_are_ollamas_error_not_a_crash():
    digits = "9" * 5000  # beyond Python's int-from-string limit
    assert error_of(f"FROM x\nPARAMETER num_ctx {digits}\n") == f"invalid int value [{digits}]"
    assert parameter_value("temperature", "0." + "1" * 5000) == 0.11111111


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0x1p-2", 0.25), ("0x_1p-2", 0.25), ("0X1.8P1", 3.0), ("-Infinity", float("-inf"))],
)
def test_go_float_syntax_is_accepted(raw, expected):
    assert parameter_value("temperature", raw) == expected


@pytest.mark.parametrize("raw", ["0x1.8", "_1.5", "1__0", "+nan", "infinite", "1e", "."])
def test_go_float_syntax_rejects(raw):
    with pytest.raises(ModelfileError, match=re.escape(f"invalid float value [{raw}]")):
        parameter_value("temperature", raw)


def test_deprecated_names_are_unknown_to_parameter_value_itself():
    # As in Ollama, only the Modelfile path turns them into warnings (see parameters()).
    with pytest.raises(ModelfileError, match=r"^unknown parameter 'mirostat'$"):
        parameter_value("mirostat", "1")


def test_first_failing_instruction_is_the_one_reported():
    text = "FROM x\nPARAMETER top_k many\nREQUIRES banana\nPARAMETER temperature hot\n"
    assert error_of(text) == "invalid int value [many]"
    assert error_of("FROM x\nREQUIRES banana\nPARAMETER top_k many\n") == (
        "requires must be a valid semver (e.g. 0.14.0)"
    )


def test_stop_accumulates_in_order_and_other_parameters_keep_the_last_value():
    text = (
        "FROM x\nPARAMETER stop <|start_header_id|>\nPARAMETER temperature 0.2\n"
        'PARAMETER stop "### User: "\nPARAMETER temperature 0.6\nPARAMETER stop </s>\n'
    )
    assert parameters(parse(text).commands) == {
        "stop": ["<|start_header_id|>", "### User: ", "</s>"],
        "temperature": 0.6,
    }


def test_deprecated_parameters_warn_and_are_not_sent():
    modelfile = parse("FROM x\nPARAMETER mirostat 2\nPARAMETER use_mlock true\nPARAMETER top_k 9\n")
    assert modelfile.warnings == [
        "parameter mirostat is deprecated",
        "parameter use_mlock is deprecated",
    ]
    assert parameters(modelfile.commands) == {"top_k": 9}


def test_values_json_cannot_carry_are_rejected_like_ollamas_client():
    assert error_of("FROM x\nPARAMETER temperature NaN\n") == "json: unsupported value: NaN"
    assert error_of("FROM x\nPARAMETER top_p -inf\n") == "json: unsupported value: -Inf"
    # Only the value that is finally sent counts.
    assert parameters(parse("FROM x\nPARAMETER top_p inf\nPARAMETER top_p 0.9\n").commands) == {
        "top_p": 0.9
    }


def test_validate_false_keeps_only_the_syntax_pass():
    modelfile = parse("FROM x\nPARAMETER Temperature hot\nREQUIRES nope\n", validate=False)
    assert [c.name for c in modelfile.commands] == ["model", "Temperature", "requires"]


# --- MESSAGE ------------------------------------------------------------------------


def test_message_roles():
    assert commands('FROM foo\nMESSAGE system """\nYou parse files.\n"""\n')[1] == (
        "message",
        "system: \nYou parse files.\n",
    )
    assert error_of("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n") == f"(line 3): {ERR_ROLE}"
    assert error_of("FROM foo\nMESSAGE User hi\n") == f"(line 2): {ERR_ROLE}"


def test_message_without_content():
    assert error_of("FROM foo\nMESSAGE user\n") == "unexpected EOF: user"
    assert error_of("FROM foo\nMESSAGE user") == "unexpected EOF"


# --- REQUIRES -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("0.14.0", "0.14.0"),
        ("v0.14.0", "0.14.0"),
        ("0.14", "0.14"),
        ("1", "1"),
        ("0.20.0-rc.1+build.7", "0.20.0-rc.1+build.7"),
    ],
)
def test_requires_accepts_semver_and_drops_the_v(raw, sent, tmp_path):
    request, _ = create_request(
        parse(f"FROM x\nREQUIRES {raw}\n"), model="m", base_dir=str(tmp_path)
    )
    assert request["requires"] == sent


@pytest.mark.parametrize("raw", ["latest", "vv1", "0.14.0-rc.01", "01.2.3", "0.14-rc1", ">=0.14"])
def test_requires_rejects_what_is_not_semver(raw):
    assert error_of(f"FROM x\nREQUIRES {raw}\n") == "requires must be a valid semver (e.g. 0.14.0)"


# --- serialize ----------------------------------------------------------------------


def test_serialize_writes_the_layout_ollama_writes():
    modelfile = parse(
        "FROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER top_k 5\n"
        'TEMPLATE """{{ .Prompt }}\n"""\nMESSAGE user Hey there!\nSYSTEM " lead"\n'
    )
    assert serialize(modelfile.commands) == (
        "FROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER top_k 5\n"
        'TEMPLATE "{{ .Prompt }}\n"\nMESSAGE user Hey there!\nSYSTEM " lead"\n'
    )


ROUND_TRIP_VALUES = [
    "plain",
    "",
    "  leading and trailing  ",
    "\tstarts with a tab",
    "multi\nline\n",
    'has "quotes" and\nnewlines',
    '"starts with a quote',
    'ends with a quote"\nand a second line',
    '""',
    '"""',
    "carriage\rreturn",
    "windows\r\nline ends",
    "# looks like a comment",
    "你好👋 émoji",
    'a line ending in a quote"\nis fine with triple quotes',
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES)
def test_serialize_round_trips(value):
    original = [
        Command("model", value or "base"),
        Command("system", value),
        Command("license", value),
        Command("message", f"user: {value}"),
        Command("stop", value),
    ]
    text = serialize(original)
    assert parse(text, validate=False).commands == original


def test_serialize_round_trips_whatever_the_parser_produces():
    text = "FROM x\nPARAMETER  top_k 5\nPARAMETER message no role\nPARAMETER model y\n"
    parsed = parse(text, validate=False).commands
    assert parse(serialize(parsed), validate=False).commands == parsed


def test_serialize_refuses_what_no_modelfile_can_say():
    with pytest.raises(ValueError, match="no Modelfile quoting"):
        serialize([Command("model", "x"), Command("system", 'a line ending in """\nend')])
    with pytest.raises(ValueError, match="U\\+0000"):
        serialize([Command("system", "nul\x00byte")])
    with pytest.raises(ValueError, match="cannot be written"):
        serialize([Command("top-k", "1")])


# --- create_request -----------------------------------------------------------------


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_create_request_from_a_model_name(tmp_path):
    text = (
        "FROM deepseek-r1:32b\nPARAMETER temperature 0.6\nPARAMETER top_p 0.95\n"
        "PARAMETER num_ctx 8192\nPARAMETER stop <|im_end|>\nLICENSE one\nLICENSE two\n"
        'MESSAGE user Is Toronto in Canada?\nMESSAGE assistant yes\nSYSTEM ""\n'
    )
    request, uploads = create_request(parse(text), model="r1-fleet:32b", base_dir=str(tmp_path))
    assert uploads == []
    assert request == {
        "model": "r1-fleet:32b",
        "from": "deepseek-r1:32b",
        "license": ["one", "two"],
        "parameters": {
            "num_ctx": 8192,
            "stop": ["<|im_end|>"],
            "temperature": 0.6,
            "top_p": 0.95,
        },
        "messages": [
            {"role": "user", "content": "Is Toronto in Canada?"},
            {"role": "assistant", "content": "yes"},
        ],
    }
    assert json.loads(json.dumps(request)) == request  # plain JSON, floats as Go sends them


def test_create_request_from_a_gguf_file_relative_to_the_modelfile(tmp_path):
    weights = tmp_path / "models" / "tiny.gguf"
    weights.parent.mkdir()
    weights.write_bytes(b"GGUF\x03\x00\x00\x00weights")
    (tmp_path / "lora.gguf").write_bytes(b"GGUF\x03\x00\x00\x00lora")
    modelfile = parse("FROM ./models/tiny.gguf\nADAPTER lora.gguf\nTEMPLATE {{ .Prompt }}\n")
    request, uploads = create_request(modelfile, model="tiny", base_dir=str(tmp_path))
    assert request == {
        "model": "tiny",
        "files": {"tiny.gguf": sha256(b"GGUF\x03\x00\x00\x00weights")},
        "adapters": {"lora.gguf": sha256(b"GGUF\x03\x00\x00\x00lora")},
        "template": "{{ .Prompt }}",
    }
    assert uploads == [str(tmp_path / "lora.gguf"), str(weights)]


def test_create_request_sends_text_values_verbatim(tmp_path):
    text = (
        'FROM x\nTEMPLATE """\n  {{ .Prompt }}  \n"""\nSYSTEM "  padded  "\nRENDERER r\nPARSER p\n'
    )
    request, _ = create_request(parse(text), model="m", base_dir=str(tmp_path))
    assert request == {
        "model": "m",
        "from": "x",
        "template": "\n  {{ .Prompt }}  \n",
        "system": "  padded  ",
        "renderer": "r",
        "parser": "p",
    }


def test_create_request_uses_the_injected_digest_function(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"\x00" * 16)
    seen = []

    def fake_digest(path: str) -> str:
        seen.append(path)
        return "sha256:" + "ab" * 32

    request, _ = create_request(
        parse(f"FROM {tmp_path}/m.gguf\n"),
        model="m",
        base_dir="/elsewhere",
        digest_file=fake_digest,
    )
    assert request["files"] == {"m.gguf": "sha256:" + "ab" * 32}
    assert seen == [str(tmp_path / "m.gguf")]


def test_create_request_from_a_safetensors_directory(tmp_path):
    tmp_path = tmp_path.resolve()  # uploads are real paths, as Ollama resolves symlinks
    model_dir = tmp_path / "hf-model"
    (model_dir / "2_Dense").mkdir(parents=True)
    files = {
        "model-00001-of-00002.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}a",
        "model-00002-of-00002.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}b",
        "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
        "tokenizer.json": b"{}",
        "tokenizer.model": bytes(range(256)),
        "2_Dense/config.json": b'{"in": 1}',
        "README.md": b"not uploaded",
    }
    for name, data in files.items():
        (model_dir / name).write_bytes(data)
    request, uploads = create_request(parse("FROM hf-model\n"), model="st", base_dir=str(tmp_path))
    expected = {name: sha256(data) for name, data in files.items() if name != "README.md"}
    assert request["files"] == expected
    assert uploads == sorted(str(model_dir / name) for name in expected)


def test_create_request_directory_without_weights(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelfileError, match=r"^no Modelfile or safetensors files found$"):
        create_request(parse("FROM empty\n"), model="m", base_dir=str(tmp_path))


def test_missing_from_path_is_sent_as_a_name_like_ollama_does(tmp_path):
    request, uploads = create_request(
        parse("FROM ./missing.gguf\n"), model="m", base_dir=str(tmp_path)
    )
    assert request == {"model": "m", "from": "./missing.gguf"}
    assert uploads == []


def test_missing_adapter_or_draft_is_an_error(tmp_path):
    missing = tmp_path / "lora.gguf"
    with pytest.raises(ModelfileError) as excinfo:
        create_request(parse("FROM x\nADAPTER lora.gguf\n"), model="m", base_dir=str(tmp_path))
    assert str(excinfo.value) == f"stat {missing}: no such file or directory"


def test_draft_must_differ_from_from(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(
        ModelfileError, match="DRAFT must not reference the same local path as FROM"
    ):
        create_request(parse("FROM ./m.gguf\nDRAFT m.gguf\n"), model="m", base_dir=str(tmp_path))
    (tmp_path / "d.gguf").write_bytes(b"GGUF draft")
    request, _ = create_request(
        parse("FROM qwen3:8b\nDRAFT d.gguf\n"), model="m", base_dir=str(tmp_path)
    )
    assert request["draft_files"] == {"d.gguf": sha256(b"GGUF draft")}


def test_unknown_home_directory_user(tmp_path):
    with pytest.raises(ModelfileError, match="failed to find user 'no-such-user-zz'"):
        create_request(parse("FROM ~no-such-user-zz/m.gguf\n"), model="m", base_dir=str(tmp_path))


def test_create_request_reports_bad_parameters_in_order(tmp_path):
    modelfile = parse("FROM x\nPARAMETER top_k many\n", validate=False)
    with pytest.raises(ModelfileError, match=re.escape("invalid int value [many]")):
        create_request(modelfile, model="m", base_dir=str(tmp_path))


@pytest.mark.parametrize("name", ["bad name", "", ":latest", "ns.x/model", "-model", "m" * 81])
def test_invalid_model_names_are_refused(name, tmp_path):
    with pytest.raises(ModelfileError, match=re.escape(f"invalid model name: {name}")):
        create_request(parse("FROM x\n"), model=name, base_dir=str(tmp_path))


@pytest.mark.parametrize(
    "name", ["m", "deepseek-r1:32b", "team/model:v1.2", "registry.local:5000/team/model:tag"]
)
def test_valid_model_names(name):
    validate_model_name(name)


def test_quantize_is_passed_through(tmp_path):
    request, _ = create_request(
        parse("FROM x\n"), model="m", base_dir=str(tmp_path), quantize="q4_K_M"
    )
    assert request["quantize"] == "q4_K_M"


# --- lint() and the CLI -------------------------------------------------------------


def test_lint_helper(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("FROM x\nPARAMETER mirostat 1\n")
    bad.write_text("FROM x\nMESSAGE tool hi\n")
    modelfile, error = lint(str(good))
    assert error is None
    assert isinstance(modelfile, Modelfile)
    assert modelfile.warnings == ["parameter mirostat is deprecated"]
    assert lint(str(bad)) == (None, f"(line 2): {ERR_ROLE}")
    with pytest.raises(OSError):
        lint(str(tmp_path / "missing"))


def run_lint(*args: str, cwd: Path | None = None, stdin: str | None = None):
    return subprocess.run(
        [sys.executable, str(LINT), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        check=False,
    )


def test_cli_valid_files_exit_zero_quietly():
    result = run_lint(str(FIXTURES / "deepseek-r1.Modelfile"), str(FIXTURES / "generic.Modelfile"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_cli_prints_warnings_on_stderr_and_still_passes(tmp_path):
    path = tmp_path / "Modelfile"
    path.write_text("FROM x\nPARAMETER penalize_newline true\n")
    result = run_lint(str(path))
    assert result.returncode == 0
    assert result.stderr == f"{path}: warning: parameter penalize_newline is deprecated\n"


def test_cli_reports_every_invalid_file_with_ollamas_text(tmp_path):
    good = FIXTURES / "generic.Modelfile"
    bad_param = tmp_path / "a.Modelfile"
    bad_param.write_text("FROM x\nPARAMETER temperature hot\n")
    bad_command = tmp_path / "b.Modelfile"
    bad_command.write_text("FROM x\n\nINSTRUCTION y\n")
    result = run_lint(str(bad_param), str(good), str(bad_command))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{bad_param}: invalid float value [hot]\n{bad_command}: (line 3): {ERR_COMMAND}\n"
    )


def test_cli_unreadable_file_and_usage_errors_exit_two(tmp_path):
    missing = tmp_path / "nope"
    result = run_lint(str(FIXTURES / "generic.Modelfile"), str(missing))
    assert result.returncode == 2
    assert result.stderr == f"{missing}: cannot read: No such file or directory\n"
    no_args = run_lint()
    assert no_args.returncode == 2
    assert "usage: modelfile-lint FILE" in no_args.stderr
    assert run_lint("--bogus").returncode == 2


def test_cli_reads_standard_input():
    result = run_lint("-", stdin="FROM x\nMESSAGE user\n")
    assert (result.returncode, result.stderr) == (1, "<stdin>: unexpected EOF: user\n")


def test_cli_runs_with_plain_python_from_anywhere(tmp_path):
    # What Ansible's `validate: scripts/modelfile-lint %s` does: a temp copy elsewhere,
    # relative FROM paths meaningless there, no virtualenv.
    python = shutil.which("python3")
    if python is None:
        pytest.skip("no python3 on PATH")
    rendered = tmp_path / "tmpabc123"
    rendered.write_text("FROM ./weights/does-not-exist-here.gguf\nPARAMETER num_ctx 4096\n")
    result = subprocess.run(
        [python, "-I", str(LINT), str(rendered)],
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


# ---------------------------------------------------------------------------
# The modelfile_line filter writes the instructions the parser reads back
# ---------------------------------------------------------------------------


def test_every_instruction_but_from_parameter_and_message_is_plain():
    assert set(PLAIN_KEYWORDS) == set(INSTRUCTIONS) - {"from", "parameter", "message"}


@pytest.fixture
def modelfile_filter():
    """The filter plugin (controller side: it needs ansible.errors)."""
    from ansible_collections.localllm.fleet.plugins.filter import modelfile

    return modelfile


@pytest.mark.controller
@pytest.mark.parametrize("keyword", PLAIN_KEYWORDS)
def test_modelfile_line_writes_plain_instructions_under_their_keyword(keyword, modelfile_filter):
    line = modelfile_filter.modelfile_line(keyword.upper(), "0.14.0")  # fits REQUIRES too
    assert line == f"{keyword.upper()} 0.14.0"
    assert parse(f"FROM m\n{line}\n").commands[-1] == Command(keyword, "0.14.0")


@pytest.mark.controller
def test_modelfile_line_writes_anything_else_as_a_parameter(modelfile_filter):
    assert modelfile_filter.modelfile_line("temperature", 0.6) == "PARAMETER temperature 0.6"
    assert modelfile_filter.modelfile_line("from", "qwq:32b") == "FROM qwq:32b"
    assert modelfile_filter.modelfile_line("message", "user", "Hi") == "MESSAGE user Hi"
