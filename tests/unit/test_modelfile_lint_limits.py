"""scripts/modelfile-lint on files far bigger than any Modelfile: bounded memory and a
clear answer (what the script reads is capped; what it parses is held compactly)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT = REPO / "scripts" / "modelfile-lint"


def lint_rss(path: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Run the script in a child of a fresh child, so that ru_maxrss is the script's alone."""
    probe = (
        "import resource, subprocess, sys\n"
        f"p = subprocess.run([sys.executable, {str(LINT)!r}, {str(path)!r}],\n"
        "                   capture_output=True, text=True)\n"
        "sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) + '\\n')\n"
        "sys.stdout.write(str(p.returncode) + '\\n' + p.stderr)\n"
    )
    outer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    rss_kib, code, stderr = outer.stdout.split("\n", 2)
    return subprocess.CompletedProcess([], int(code), "", stderr), int(rss_kib) * 1024


def test_a_50_mb_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    big = tmp_path / "Modelfile"
    big.write_bytes(b"FROM x\nLICENSE " + b"y" * (50 << 20) + b"\n")
    result, rss = lint_rss(big)
    assert result.returncode == 1
    assert result.stderr == f"{big}: larger than 16 MiB: not a Modelfile (Ollama's are KBs)\n"
    assert rss < 120 << 20, rss


def test_a_large_modelfile_under_the_cap_parses_in_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "Modelfile"
    big.write_bytes(b'FROM x\nLICENSE """' + b"word " * ((6 << 20) // 5) + b'"""\n')  # 6 MiB
    result, rss = lint_rss(big)
    assert result.returncode == 0, result.stderr
    assert rss < 100 << 20, rss  # one object per character took 135 MB here
