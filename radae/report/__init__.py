"""The reproducibility report: one self-contained HTML page built from a run folder.

``build_report(run_dir)`` (radae.report.build) reads only ``runs/<name>/`` and writes
``report/report.html`` and ``report/summary.json``; ``radae report runs/<name>``
does the same from the shell.
"""
