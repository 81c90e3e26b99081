"""``python -m radae.report RUN_DIR [--out DIR] [--title T]``: rebuild a report without recomputing."""
from __future__ import annotations

import argparse
import logging
import sys

from radae.util.errors import RadaeError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m radae.report", description=__doc__)
    ap.add_argument("run_dir", help="run folder, e.g. runs/demo")
    ap.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pathlib import Path

    from radae.report.build import build_report

    if not Path(args.run_dir).is_dir():
        print(f"radae report: error: run folder {args.run_dir} not found -> give the folder runs/<name> of a pipeline run",
              file=sys.stderr)
        return 2
    try:
        result = build_report(args.run_dir, args.out, title=args.title)
    except RadaeError as e:
        print(f"radae report: error: {e}", file=sys.stderr)
        return 2
    print(f"report: {result.html_path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
