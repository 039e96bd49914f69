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
    with pytest.raises(systemd_unit.UnitValueError, match="newline"):
        systemd_unit.environment_assignment("X", "a\n[Service]\nExecStartPre=/bin/evil")
