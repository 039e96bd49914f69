"""nvidia_driver's proof that the driver answers (tasks/verify.yml): one check that nvidia-smi
reports the installed release on every GPU in the persistence mode asked, which says what
runs when it passes and names what is wrong when it does not. Run on the control node with
the lab's nvidia-smi stand-in answering from the rtx4090 profile (driver 550.54.15)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_hardware import lab_env
from role_testing import run_task_file

pytestmark = pytest.mark.controller  # ansible-playbook runs the role's task file

# What the role's earlier phases decided (reboot-decision.yml, preflight.yml): the units are
# there, no reboot is due, nothing changed in this run.
DECIDED = {
    "__nvidia_driver_units_present": True,
    "__nvidia_driver_reboot_needed": False,
    "__nvidia_driver_reboot_now": False,
    "__nvidia_driver_changed": False,
    "__nvidia_driver_gpu": {"module_flavour": {"flavour": "open"}},
    "__nvidia_driver_fabricmanager": False,
}


def verify(tmp_path: Path, *, expected: str = "", persistence_running: bool = True):
    env = lab_env(tmp_path, "rtx4090")
    root = Path(env["LOCALLLM_LAB_ROOT"])
    if persistence_running:
        pid = root / "run" / "nvidia-persistenced" / "nvidia-persistenced.pid"
        pid.parent.mkdir(parents=True)
        pid.write_text("4242\n")
    # ansible-playbook itself and the role's interpreter come from the test's own paths.
    env = {"LOCALLLM_LAB_ROOT": env["LOCALLLM_LAB_ROOT"], "PATH": env["PATH"]}
    variables = {**DECIDED, "__nvidia_driver_expected": expected}
    run = run_task_file(tmp_path, "nvidia_driver", "verify.yml", variables, env=env)
    return run, " ".join(run.out.split())


def test_a_driver_that_answers_in_persistence_mode_says_what_runs(tmp_path):
    run, text = verify(tmp_path, expected="550.54.15")
    assert run.rc == 0, run.out[-4000:]
    assert (
        "nvidia_driver: localhost: NVIDIA driver 550.54.15 (open modules) answers on 1 GPU(s);"
        " persistence mode on; Fabric Manager not needed." in text
    )


def test_another_driver_than_the_installed_one_is_named(tmp_path):
    run, text = verify(tmp_path, expected="570.172.08")
    assert run.rc != 0
    assert "nvidia-smi on localhost reports driver 550.54.15 where driver 570.172.08" in text
    assert "persistence mode on localhost's GPUs" not in text


def test_persistence_mode_that_never_comes_on_is_named(tmp_path):
    run, text = verify(tmp_path, persistence_running=False)
    assert run.rc != 0
    assert (
        "persistence mode on localhost's GPUs is Disabled after five reads 2 s apart,"
        " where Enabled was asked" in text
    )
    assert "systemctl status nvidia-persistenced" in text
