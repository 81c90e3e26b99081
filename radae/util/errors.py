"""radae's own exceptions. Every message is one line: who (case/file/key), what is wrong, what to do.

Code raises these (never bare ValueError) for anything a user can cause; the CLI prints them
without a traceback and exits non-zero, and stage runners turn per-case ones into failures.csv rows.
"""
from __future__ import annotations


class RadaeError(Exception):
    """Base class: a problem with the user's input, config or environment (not a bug)."""


class ConfigError(RadaeError):
    """Pipeline YAML is invalid: unknown key, wrong type, impossible value, missing file."""


class ManifestError(RadaeError):
    """Manifest table is invalid (row-level problems are listed one per line)."""


class IngestError(RadaeError):
    """An image, mask, DICOM series or RTSTRUCT cannot be read or does not fit its partner."""


class PreprocessError(RadaeError):
    """A case cannot be resampled/normalised/cropped (empty mask, NaN voxels, ...)."""


class TrainError(RadaeError):
    """Pretraining cannot start or resume (no data, incompatible checkpoint, ...)."""


class ExtractError(RadaeError):
    """Feature extraction failed for a lesion."""


class BenchmarkError(RadaeError):
    """The benchmark cannot be run honestly (single class, too few events, key mismatch, ...)."""


class RunLockedError(RadaeError):
    """Another radae process holds the run folder."""


class RunInterrupted(RadaeError, KeyboardInterrupt):
    """The run was interrupted (SIGINT / Ctrl-C, SIGTERM); the stage is marked ``interrupted`` in its _stage.json.

    Still a KeyboardInterrupt, so code that stops on Ctrl-C keeps doing so."""


def case_message(case_id: str | None, path: object | None, problem: str, hint: str | None = None) -> str:
    """Format the canonical one-line message: ``case X: file F: problem (hint)``."""
    parts = []
    if case_id is not None:
        parts.append(f"case {case_id}")
    if path is not None:
        parts.append(f"file {path}")
    parts.append(problem)
    msg = ": ".join(parts)
    if hint:
        msg += f" -> {hint}"
    return msg.replace("\n", " ")
