"""Stage keys that survive moving a run folder: paths in a config section are replaced by what they stand for.

A stage is up to date when its key is unchanged (:func:`radae.runner.stage_key`). Keys are built from the config
sections, and the config holds absolute paths (YAML-relative paths are resolved at load time), so copying or moving a
finished run folder, or the project, changed every key and redid every stage. Here each path-valued key is replaced
by the content it names (a file's sha256) or left out where it cannot change a result (the cache folder). The input
files a manifest names are keyed by the manifest's rows, not by their absolute paths (:func:`radae.data.sources.input_fingerprint`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

#: section -> key path inside it -> "content" (the file's sha256) or "drop" (cannot change a result)
PATH_KEYS: dict[str, dict[tuple[str, ...], str]] = {
    "data": {("manifest",): "content", ("evaluation_patients",): "content", ("validation_manifest",): "content",
             ("npz", "path"): "content"},
    "extract": {("radiomics", "params"): "content"},
    "preprocess": {("cache_dir",): "drop"},
}


def _content(value: Any) -> Any:
    from radae.util.hashing import file_sha256

    if value is None:
        return None
    p = Path(str(value))
    try:
        return {"sha256": file_sha256(p)}
    except OSError:  # missing: the stage itself reports it; the key just has to differ from a present file's
        return {"missing": p.name}


def portable_section(section: str, dump: dict) -> dict:
    """``dump`` (a section's ``model_dump(mode="json")``) with its paths replaced as :data:`PATH_KEYS` says."""
    rules = PATH_KEYS.get(section)
    if not rules or not isinstance(dump, dict):
        return dump
    out = dict(dump)
    for keys, how in rules.items():
        node = out
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node = None
                break
            node[k] = dict(node[k])
            node = node[k]
        if node is None or keys[-1] not in node:
            continue
        if how == "drop":
            node.pop(keys[-1])
        else:
            node[keys[-1]] = _content(node[keys[-1]])
    return out
