"""Pipeline YAML -> :class:`PipelineConfig`: overrides, path resolution, one-line validation errors."""
from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from radae.util.errors import ConfigError
from radae.util.yamlsafe import load_bounded
from radae.config.base import data_root
from radae.config.pipeline import PipelineConfig


# ----------------------------------------------------------------------------- loading
_PATH_KEYS = {("data", "manifest"), ("data", "npz", "path"), ("data", "root"), ("data", "evaluation_patients"),
             ("data", "validation_manifest"), ("extract", "radiomics", "params"), ("preprocess", "cache_dir")}


def _expand(value: str) -> str:
    return value.replace("${RADAE_DATA}", str(data_root())).replace("$RADAE_DATA", str(data_root()))


def _resolve_paths(raw: dict, base: Path, source: Path) -> dict:
    for keys in _PATH_KEYS:
        node = raw
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            try:
                if "\x00" in node[keys[-1]]:
                    raise ValueError("NUL character")
                p = Path(_expand(node[keys[-1]])).expanduser()
                node[keys[-1]] = str(p if p.is_absolute() else (base / p).resolve())
            except (ValueError, OSError, RuntimeError) as e:
                raise ConfigError(f"{source}: {'.'.join(keys)}: not a usable path ({e}) -> give a file path") from None
    return raw


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key.path=value`` overrides (value parsed as YAML) to a raw config dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        if not all(p.strip() for p in parts):
            raise ConfigError(f"--set {item!r}: empty key name in {key.strip()!r} -> write key.path=value, e.g. "
                              "--set preprocess.n_jobs=4")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = nxt
        try:
            node[parts[-1]] = load_bounded(value, f"--set {key}", "value")
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
            raise ConfigError(f"--set {key}: value {value!r} is not valid YAML ({str(e).splitlines()[0][:120]})") from None
    return raw


def format_validation_error(path: Path | str, err: ValidationError) -> str:
    """One line: ``FILE: key.path: what is expected (got VALUE)`` per problem, joined by "; "."""
    lines = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(x) for x in e["loc"]) or "<top>"
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see README 'Pipeline YAML reference')"
        elif e["type"] == "missing" and e["loc"] and isinstance(e["loc"][-1], int):
            loc = ".".join(str(x) for x in e["loc"][:-1])
            msg = f"too few values (item {e['loc'][-1] + 1} is missing)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        got = e.get("input")
        got_s = ""
        if e["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict) and "got" not in msg:
            got_s = f" (got {_short_repr(got)})"
        lines.append(f"{path}: {loc}: {msg}{got_s}")
    return "; ".join(lines)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 4, 60, 60


def _short_repr(value: Any) -> str:
    """Bounded repr: a YAML alias bomb in a wrong-typed value must not be expanded into the message."""
    return _REPR.repr(value)


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = (), check_files: bool = True) -> PipelineConfig:
    """Read, validate and freeze a pipeline YAML. Raises ConfigError with file and key path."""
    from radae.config.lookup import find_pipeline, shipped_pipelines

    path = find_pipeline(path)
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline file not found (looked in {Path.cwd()} and {shipped_pipelines()})")
    try:
        raw = load_bounded(path.read_text(), path, "pipeline")  # safe: no Python tags; bounded: no alias bombs
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror}) -> check permissions") from None
    except (ValueError, TypeError, RecursionError, OverflowError) as e:  # e.g. PyYAML on a date such as 2020-13-45
        raise ConfigError(f"{path}: not valid YAML: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    raw = _resolve_paths(raw, path.resolve().parent, path)
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(path, e)) from None
    except RecursionError:
        raise ConfigError(f"{path}: nesting too deep -> flatten the YAML") from None
    cfg = cfg.model_copy(update={"source": path.resolve()})
    if check_files:
        for label, p in (
            ("data.manifest", cfg.data.manifest),
            ("data.evaluation_patients", cfg.data.evaluation_patients),
            ("data.validation_manifest", cfg.data.validation_manifest),
            ("extract.radiomics.params", cfg.extract.radiomics.params),
        ):
            if p is not None and not Path(p).exists():
                raise ConfigError(f"{path}: {label}: file not found: {p}")
    return cfg
