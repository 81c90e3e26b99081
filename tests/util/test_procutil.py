"""The command-line process's collector settings (radae.util.procutil)."""
from __future__ import annotations

import gc
import subprocess
import sys

from radae.util import procutil


def test_young_threshold_is_raised_and_never_lowered():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        procutil.fewer_young_collections()
        assert gc.get_threshold() == (procutil.YOUNG_GENERATION_THRESHOLD, 10, 10)
        gc.set_threshold(50_000, 7, 3)
        procutil.fewer_young_collections()
        assert gc.get_threshold() == (50_000, 7, 3)
    finally:
        gc.set_threshold(*before)


def test_the_command_line_entry_sets_it_and_still_collects_cycles():
    code = ("import gc, sys; from radae import cli; sys.argv = ['radae', '--version']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print(gc.get_threshold()[0], gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == [str(procutil.YOUNG_GENERATION_THRESHOLD), "True"]


def test_a_ctrl_c_that_gets_past_the_command_exits_130_not_by_signal():
    code = ("import radae.cli as c\n"
            "def boom():\n    raise KeyboardInterrupt\n"
            "c.app = boom\nc.main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 130, (r.returncode, r.stderr)
