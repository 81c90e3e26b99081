"""Fuzzing the two loaders users feed by hand: nothing but radae's own errors may come out of them.

``load_pipeline`` gets random text, random YAML documents, and mutations of a valid config (random values at real
and invented key paths, random ``--set`` overrides); ``load_manifest`` gets random bytes, random CSV tables over the
real column names, and random Parquet files, with random outcome-column settings.
"""
from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radae.config import PipelineConfig, load_pipeline
from radae.util.errors import RadaeError
from radae.data.manifest import load_manifest

# Deterministic in CI; RADAE_FUZZ_EXAMPLES=5000 RADAE_FUZZ_RANDOM=1 for a longer hunt.
FUZZ = settings(max_examples=int(os.environ.get("RADAE_FUZZ_EXAMPLES", "120")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow], derandomize=os.environ.get("RADAE_FUZZ_RANDOM") != "1")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", "..", "/", "~", "${RADAE_DATA}", "a\x00b", "x" * 300, "2020-13-45", "1e400", "-0", "nan"]),
)
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                      max_leaves=12)


def _key_paths(model=PipelineConfig, prefix=()):
    """Every key path of the config schema (sections and leaves)."""
    out = []
    for name, field in model.model_fields.items():
        path = prefix + (name,)
        out.append(path)
        ann = field.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and hasattr(cand, "model_fields"):
                out += _key_paths(cand, path)
    return out


KEY_PATHS = _key_paths()
VALID = {"name": "f", "data": {"synth": {"cases": 4}}, "preprocess": {"spacing_mm": [1, 1, 1]}}


def _load_yaml_text(text: str | bytes, overrides=()) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "p.yaml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            load_pipeline(p, overrides=list(overrides))
        except RadaeError as e:
            assert str(e) and "Traceback" not in str(e)


def _set(doc: dict, path: tuple, value) -> dict:
    node = doc
    for k in path[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[path[-1]] = value
    return doc


@FUZZ
@given(st.text(max_size=300))
def test_pipeline_loader_on_random_text(text):
    _load_yaml_text(text)


@FUZZ
@given(st.binary(max_size=300))
def test_pipeline_loader_on_random_bytes(data):
    _load_yaml_text(data)


@FUZZ
@given(values)
def test_pipeline_loader_on_random_documents(doc):
    _load_yaml_text(yaml.safe_dump(doc))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEY_PATHS) | st.lists(st.text(max_size=6), min_size=1, max_size=3).map(tuple),
                          values), min_size=1, max_size=4))
def test_pipeline_loader_on_mutated_configs(edits):
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    for path, value in edits:
        _set(doc, path, value)
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:
        return
    _load_yaml_text(text)


@FUZZ
@given(st.lists(st.text(max_size=40) | st.builds(lambda k, v: f"{'.'.join(k)}={v}", st.sampled_from(KEY_PATHS),
                                                 st.text(max_size=20)), max_size=3))
def test_pipeline_loader_on_random_overrides(overrides):
    _load_yaml_text(yaml.safe_dump(VALID), overrides)


def test_yaml_alias_bomb_is_refused_quickly():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "name: *i\ndata: *i\n"
    with pytest.raises(RadaeError):
        _load_yaml_text_strict(bomb)


def _load_yaml_text_strict(text):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "p.yaml").write_text(text)
        load_pipeline(Path(d) / "p.yaml")


# ----------------------------------------------------------------------------- manifests
COLUMNS = ["case_id", "patient_id", "image", "mask", "mask_label", "seed_x", "seed_y", "seed_z", "modality", "series_uid",
           "label", "os_time", "os_event", "age"]
cells = st.one_of(st.none(), st.text(max_size=12), st.integers(-5, 5).map(str), st.floats().map(str),
                  st.sampled_from(["img.nii.gz", "../img.nii.gz", "/dev/null", "${RADAE_DATA}/x", "a\x00b", "true", "inf",
                                   "x" * 5000, "CT", "P1", "C1"]))
good_cells = {"case_id": st.sampled_from(["C1", "C2", "C3"]), "patient_id": st.sampled_from(["P1", "P2"]),
              "image": st.just("img.nii.gz"), "mask": st.sampled_from(["img.nii.gz", None]), "modality": st.just("CT"),
              "seed_x": st.just("1"), "seed_y": st.just("2"), "seed_z": st.just("3")}


def _table(n: int):
    """Columns over the real names (mostly plausible cells, some random) plus invented columns; n rows."""
    column = lambda name: st.lists(good_cells.get(name, cells) | cells if name in good_cells else cells,  # noqa: E731
                                   min_size=n, max_size=n)
    real = st.lists(st.sampled_from(COLUMNS), unique=True, min_size=3, max_size=len(COLUMNS))
    return real.flatmap(lambda names: st.fixed_dictionaries({c: column(c) for c in names}).flatmap(
        lambda t: st.dictionaries(st.text(max_size=6), column("extra"), max_size=2).map(lambda extra: {**t, **extra})))


tables = st.integers(0, 6).flatmap(_table)
options = st.fixed_dictionaries({
    "required_columns": st.lists(st.sampled_from(COLUMNS[10:] + ["nope"]), max_size=3).map(tuple),
    "numeric_columns": st.lists(st.sampled_from(COLUMNS[10:]), max_size=2).map(tuple),
    "binary_columns": st.lists(st.sampled_from(COLUMNS[10:]), max_size=2).map(tuple),
    "nonnegative_columns": st.lists(st.sampled_from(COLUMNS[10:]), max_size=2).map(tuple),
    "root": st.sampled_from([None, ".", "sub", "/"]),
    "modalities": st.sampled_from([None, ["CT"], ["mr", "PET"]]),
    "pseudonymise_key": st.sampled_from([None, "k"]),
    "check_files": st.booleans(),
})


def _load_manifest(write, **kw) -> None:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "img.nii.gz").write_bytes(b"x")
        (d / "sub").mkdir()
        if kw.get("root") not in (None, "/"):
            kw["root"] = d / kw["root"]
        path = write(d)
        try:
            df = load_manifest(path, **kw)
        except RadaeError as e:
            assert str(e)
            return
        assert df["case_id"].is_unique and len(df) > 0


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(["m.csv", "m.parquet", "m.txt"]))
def test_manifest_loader_on_random_bytes(data, name):
    def write(d):
        (d / name).write_bytes(data)
        return d / name
    _load_manifest(write)


@FUZZ
@given(tables, options)
def test_manifest_loader_on_random_csv_tables(table, opts):
    def write(d):
        pd.DataFrame(table).to_csv(d / "m.csv", index=False)
        return d / "m.csv"
    _load_manifest(write, **opts)


@FUZZ
@given(tables, options, st.sampled_from(["string", "float", "mixed"]))
def test_manifest_loader_on_random_parquet_tables(table, opts, kind):
    def write(d):
        df = pd.DataFrame(table)
        if kind == "float":
            df = df.apply(pd.to_numeric, errors="coerce")
        elif kind == "mixed":
            df = df.astype(object)
            df.iloc[:, 0] = pd.to_numeric(df.iloc[:, 0], errors="coerce")
        try:
            df.to_parquet(d / "m.parquet")
        except Exception:  # noqa: BLE001 - pyarrow cannot store this mix; write it as strings
            df.astype(str).to_parquet(d / "m.parquet")
        return d / "m.parquet"
    _load_manifest(write, **opts)


def test_manifest_with_weird_but_valid_text_is_accepted(tmp_path):
    (tmp_path / "img.nii.gz").write_bytes(b"x")
    text = "\ufeffcase_id, patient_id ,image,modality,mask,seed_x,seed_y,seed_z\nÄ-1,Ø,img.nii.gz, ct ,,1,2,3\n"
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    df = load_manifest(tmp_path / "m.csv")
    assert df.loc[0, "case_id"] == "Ä-1" and df.loc[0, "modality"] == "CT" and df.loc[0, "seed_z"] == 3.0


@pytest.mark.parametrize("name", [c for c in string.punctuation if c not in "/\\"][:6])
def test_odd_file_names_do_not_escape_the_loaders(tmp_path, name):
    p = tmp_path / f"m{name}.yaml"
    p.write_text("name: t\ndata: {manifest: 'x\\u0000y.csv'}\n")
    with pytest.raises(RadaeError):
        load_pipeline(p)
