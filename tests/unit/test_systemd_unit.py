"""Values written into systemd units read back unchanged."""

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import systemd_unit


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (True, 'Environment="X=true"'),
        (False, 'Environment="X=false"'),
        (4, 'Environment="X=4"'),
        (["http://a", "https://b"], 'Environment="X=http://a,https://b"'),
        ('say "hi"', 'Environment="X=say \\"hi\\""'),
        ("C:\\path", 'Environment="X=C:\\\\path"'),
        ("100%", 'Environment="X=100%%"'),
    ],
)
def test_assignments_escape_what_systemd_would_change(value, line):
    assert systemd_unit.environment_assignment("X", value) == line


def test_null_and_empty_values_are_left_out_and_lines_sorted():
    lines = systemd_unit.environment_lines(
        {
            "OLLAMA_HOST": "127.0.0.1:11434",
            "OLLAMA_DEBUG": None,
            "OLLAMA_ORIGINS": [],
            "CUDA_VISIBLE_DEVICES": ["GPU-1", "GPU-2"],
        }
    )
    assert lines == [
        'Environment="CUDA_VISIBLE_DEVICES=GPU-1,GPU-2"',
        'Environment="OLLAMA_HOST=127.0.0.1:11434"',
    ]


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", ""])
def test_bad_names_are_refused(name):
    with pytest.raises(systemd_unit.UnitValueError, match="not a valid environment variable name"):
        systemd_unit.environment_assignment(name, "x")


def test_newlines_cannot_be_smuggled_into_the_unit():
    with pytest.raises(systemd_unit.UnitValueError, match="line break"):
        systemd_unit.environment_assignment("X", "a\n[Service]\nExecStartPre=/bin/evil")


# systemd ends a line at LF, CR and NUL (fileio.c read_line); other line separators and
# control characters are refused as well: nobody means them in an environment value.
@pytest.mark.parametrize(
    "value",
    [
        "http://app.example\rUser=root\rProtectSystem=no",
        "a\x00b",
        "a\x0bb",
        "a\x0cb",
        "a\x85b",
        "a\u2028b",
        "a\u2029b",
        "a\x1bb",
        "a\x7fb",
    ],
)
def test_no_line_break_or_control_character_reaches_the_unit(value):
    with pytest.raises(systemd_unit.UnitValueError, match="line break or control character"):
        systemd_unit.environment_assignment("OLLAMA_ORIGINS", value)


def test_a_list_element_cannot_smuggle_a_carriage_return_either():
    with pytest.raises(systemd_unit.UnitValueError, match=r"U\+000D"):
        systemd_unit.environment_lines({"OLLAMA_ORIGINS": ["http://a", "http://b\rUser=root"]})


def test_tabs_stay_allowed_inside_quoted_values():
    assert systemd_unit.environment_assignment("X", "a\tb") == 'Environment="X=a\tb"'


@pytest.mark.parametrize(
    ("path", "written"),
    [
        ("/usr/share/ollama", "/usr/share/ollama"),
        ("/srv/models/", "/srv/models"),
        ("/srv/100%h", "/srv/100%%h"),
        ("/srv/ünïcode", "/srv/ünïcode"),
    ],
)
def test_paths_are_written_with_specifiers_escaped(path, written):
    assert systemd_unit.unit_path(path, "ollama_store_dir") == written


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/srv/models 100%h", "whitespace"),
        ("/srv/models\tx", "control character"),
        ("/srv/models\u00a0x", "whitespace"),
        ("srv/models", "absolute"),
        ("", "absolute"),
        ("~/models", "absolute"),
        ("/srv/../etc", r"'\.' or '\.\.'"),
        ("/srv/./models", r"'\.' or '\.\.'"),
        ("/srv//models", "'//'"),
        ('/srv/"models"', "quote"),
        ("/srv/models\\x", "backslash"),
        ("/srv/a\nExecStartPre=/bin/sh", "line break"),
        ("/srv/a\rb", "control character"),
    ],
)
def test_paths_systemd_would_misread_are_refused(path, reason):
    with pytest.raises(systemd_unit.UnitValueError, match=reason):
        systemd_unit.unit_path(path, "ollama_store_dir")


@pytest.mark.parametrize("name", ["ollama", "_ollama", "nvidia-persistenced", "svc_1"])
def test_user_and_group_names_systemd_accepts(name):
    assert systemd_unit.unit_name(name, "ollama_user") == name


@pytest.mark.parametrize(
    "name", ["", "1ollama", "root --persistence-mode", "a\nb", "a%h", "x" * 32, "ümlaut", "-x"]
)
def test_user_and_group_names_systemd_would_misread_are_refused(name):
    with pytest.raises(systemd_unit.UnitValueError, match="not a valid user or group name"):
        systemd_unit.unit_name(name, "ollama_user")


def test_problems_lists_every_bad_setting_by_its_variable():
    problems = systemd_unit.problems(
        paths={"ollama_home": "/usr/share/ollama", "ollama_store_dir": "/srv/models 100%h"},
        names={"ollama_user": "ollama", "ollama_group": "a b"},
        environment={"OLLAMA_ORIGINS": "http://a\rUser=root", "OLLAMA_HOST": "127.0.0.1:11434"},
    )
    assert len(problems) == 3
    assert problems[0].startswith("ollama_store_dir: ")
    assert problems[1].startswith("ollama_group: ")
    assert problems[2].startswith("OLLAMA_ORIGINS: ")
    assert systemd_unit.problems(paths={"p": "/a"}, names={"n": "b"}, environment={"X": 1}) == []
