"""The ``radae`` command line, radae's only entry point: parses arguments, configures logging and threads, calls
the runner or the library. ``python -m radae.cli`` is the same (torchrun uses it).

One module per group of commands: :mod:`~radae.cli.pipeline` (run, validate, report, reference),
:mod:`~radae.cli.features`, :mod:`~radae.cli.tools` (synth, predict, info, ibsi) and :mod:`~radae.cli.data`
(manifest, import); :mod:`~radae.cli.app` holds the app and what they share. Only this package imports the runner
and the stages.
"""
from __future__ import annotations

import os
import sys

# pydantic scans every installed package's entry points for plugins (30 ms of each command's start-up); radae uses none
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # a user's own setting wins

from radae.cli.app import app  # noqa: E402  (after the setting above)
# each registers its commands on app, in this order in `radae -h`
from radae.cli import pipeline, tools, features, data  # noqa: E402,F401,I001


def main() -> None:
    """The ``radae`` command and ``python -m radae.cli``: the app, with fewer collector passes (procutil)."""
    from radae.util import procutil

    procutil.fewer_young_collections()
    procutil.skip_final_collection_at_exit()
    try:
        app()
    except KeyboardInterrupt:  # a Ctrl-C that got past the command (a second one while the first one's exit unwinds):
        sys.exit(130)  # the exit status of an interrupted command, not death by SIGINT


__all__ = ["app", "main"]
