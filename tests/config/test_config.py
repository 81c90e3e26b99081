"""Pipeline YAML -> frozen config: every user error is one ConfigError line naming file, key path and expectation."""
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from radae.config import PipelineConfig, data_root, load_pipeline
from radae.util.errors import ConfigError

BASE = "name: t\ndata: {synth: {cases: 4}}\n"


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _error(tmp_path, text, overrides=()) -> str:
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_pipeline(p, overrides=list(overrides))
    msg = str(e.value)
    assert "\n" not in msg  # one line
    if not msg.startswith("--set"):
        assert msg.startswith(str(p)), msg  # names the file
    return msg


@pytest.mark.parametrize(
    "text, key, expected",
    [
        (BASE + "preprocess: {spacingmm: [1, 1, 1]}\n", "preprocess.spacingmm", "unknown key"),
        (BASE + "pretrain: {model: {kind: dae, chanels: [4]}}\n", "pretrain.model.chanels", "unknown key"),
        (BASE + "colour: blue\n", "colour", "unknown key"),
        ("name: t\ndata: {synth: {cases: four}}\n", "data.synth.cases", "valid integer"),
        (BASE + "preprocess: {mask_channel: maybe}\n", "preprocess.mask_channel", "valid boolean"),
        (BASE + "preprocess: {spacing_mm: 1.0}\n", "preprocess.spacing_mm", "valid tuple"),
        (BASE + "preprocess: {spacing_mm: [1, 1]}\n", "preprocess.spacing_mm", "too few values"),
        (BASE + "preprocess: {interpolator: cubic}\n", "preprocess.interpolator", "'linear', 'bspline' or 'nearest'"),
        (BASE + "stages: [ingest, train]\n", "stages.1", "'ingest', 'preprocess'"),
        ("name: t\ndata: 3\n", "data", "valid dictionary"),
        ("data: {synth: {cases: 4}}\n", "name", "required key is missing"),
        ("name: a/b\ndata: {synth: {cases: 4}}\n", "name", "should match pattern"),
        ("name: '..'\ndata: {synth: {cases: 4}}\n", "name", "must not be only dots"),
    ],
)
def test_unknown_keys_and_wrong_types(tmp_path, text, key, expected):
    msg = _error(tmp_path, text)
    assert f": {key}: " in msg and expected in msg, msg


@pytest.mark.parametrize(
    "section, key, expected",
    [
        ("preprocess: {spacing_mm: [1, -1, 1]}", "preprocess.spacing_mm", "within [0.05, 20] mm, got [1.0, -1.0, 1.0]"),
        ("preprocess: {spacing_mm: [0, 1, 1]}", "preprocess.spacing_mm", "within [0.05, 20] mm"),
        ("preprocess: {spacing_mm: [1, 1, .nan]}", "preprocess.spacing_mm.2", "finite number (got nan)"),  # no NaN/inf in any key
        ("preprocess: {roi_size_vox: [64, 64, 1000]}", "preprocess.roi_size_vox", "within [4, 256] voxels, got [64, 64, 1000]"),
        ("preprocess: {roi_size_vox: [2, 64, 64]}", "preprocess.roi_size_vox", "within [4, 256] voxels"),
        ("preprocess: {normalise: {hu_min: 100, hu_max: 0}}", "preprocess.normalise", "hu_max must be greater than hu_min"),
        ("preprocess: {n_jobs: 0}", "preprocess.n_jobs", "greater than or equal to 1"),
        ("data: {synth: {cases: 1}}", "data.synth.cases", "greater than or equal to 4"),
        ("pretrain: {model: {channels: [4, 8], strides: [2]}}", "pretrain.model", "same length"),
        ("pretrain: {steps: -3}", "pretrain.steps", "greater than or equal to 1"),
        ("benchmark: {survival: {time: t, event: e, horizons: [0]}}", "benchmark.survival.horizons", "must be > 0"),
        ("benchmark: {cv: {folds: 1}}", "benchmark.cv.folds", "greater than or equal to 2"),
        ("benchmark: {clinical: [age], feature_sets: [learned, clinical], clinical_with: [handcrafted]}", "benchmark",
         "benchmark.clinical_with names 'handcrafted', which is not one of benchmark.feature_sets"),
        ("benchmark: {feature_sets: [learned, handcrafted], clinical_with: [learned]}", "benchmark",
         "benchmark.clinical_with needs the feature set 'clinical'"),
    ],
)
def test_impossible_values(tmp_path, section, key, expected):
    text = "name: t\n" + (section if section.startswith("data") else "data: {synth: {cases: 4}}\n" + section) + "\n"
    msg = _error(tmp_path, text)
    assert f": {key}: " in msg and expected in msg, msg


def test_data_needs_exactly_one_source(tmp_path):
    (tmp_path / "m.csv").write_text("case_id\n")
    for data in ("{}", "{manifest: m.csv, synth: {cases: 4}}"):
        msg = _error(tmp_path, f"name: t\ndata: {data}\n")
        assert ": data: give exactly one of data.manifest, data.synth or data.npz" in msg


def test_missing_files_are_named_with_their_key(tmp_path):
    msg = _error(tmp_path, "name: t\ndata: {manifest: nowhere/m.csv}\n")
    assert f": data.manifest: file not found: {tmp_path / 'nowhere' / 'm.csv'}" in msg
    (tmp_path / "m.csv").write_text("x\n")
    msg = _error(tmp_path, "name: t\ndata: {manifest: m.csv, evaluation_patients: ev.txt}\n")
    assert ": data.evaluation_patients: file not found" in msg
    msg = _error(tmp_path, BASE + "extract: {radiomics: {params: my_params.yaml}}\n")
    assert ": extract.radiomics.params: file not found" in msg
    with pytest.raises(ConfigError, match="pipeline file not found"):
        load_pipeline(tmp_path / "absent.yaml")


def test_not_yaml_or_not_a_mapping(tmp_path):
    assert "line 3 not valid YAML" in _error(tmp_path, "name: t\ndata: {synth: {cases: 4}\n")
    assert "top level must be a mapping of sections, got list" in _error(tmp_path, "- a\n- b\n")
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ConfigError, match="not a text file"):
        load_pipeline(p)


def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\ndata: {{synth: {{cases: 4}}}}\n"
    msg = _error(tmp_path, text)
    assert "could not determine a constructor for the tag" in msg and not marker.exists()
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_pipeline(_write(tmp_path, BASE, "ok.yaml"), overrides=[f"seed=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


def test_overrides_are_validated_like_the_file(tmp_path):
    p = _write(tmp_path, BASE)
    cfg = load_pipeline(p, overrides=["preprocess.spacing_mm=[2, 2, 2]", "seed=5", "pretrain.model.kind=vae"])
    assert cfg.preprocess.spacing_mm == (2.0, 2.0, 2.0) and cfg.seed == 5 and cfg.pretrain.model.kind == "vae"
    msg = _error(tmp_path, BASE, ["preprocess.roi_size_vox=[4096, 4, 4]"])
    assert ": preprocess.roi_size_vox: each ROI size must be within [4, 256] voxels" in msg
    assert "expected key.path=value" in _error(tmp_path, BASE, ["preprocess"])
    assert "'name' is not a section" in _error(tmp_path, BASE, ["name.x=1"])
    assert ": preprocess.bogus: unknown key" in _error(tmp_path, BASE, ["preprocess.bogus=1"])


def test_paths_resolve_against_the_yaml_and_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("RADAE_DATA", str(tmp_path / "shared"))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "m.csv").write_text("x\n")
    sub = tmp_path / "cfg"
    sub.mkdir()
    (sub / "m.csv").write_text("x\n")
    cfg = load_pipeline(_write(sub, "name: t\ndata: {manifest: m.csv, root: ../shared}\n"))
    assert cfg.data.manifest == sub / "m.csv" and cfg.data.root == (tmp_path / "shared").resolve()
    cfg = load_pipeline(_write(sub, "name: t\ndata: {manifest: '${RADAE_DATA}/m.csv'}\n"))
    assert cfg.data.manifest == (tmp_path / "shared" / "m.csv").resolve()
    assert data_root() == (tmp_path / "shared").resolve()
    assert cfg.source == (sub / "p.yaml").resolve()


def test_config_is_frozen_and_hashes_are_per_section(tmp_path):
    a = load_pipeline(_write(tmp_path, BASE))
    with pytest.raises(ValidationError):
        a.seed = 3
    b = load_pipeline(_write(tmp_path, BASE), overrides=["preprocess.roi_size_vox=[32, 32, 32]"])
    assert a.section_hash("preprocess") != b.section_hash("preprocess")
    assert a.section_hash("pretrain") == b.section_hash("pretrain") and a.section_hash("data") == b.section_hash("data")
    assert a.run_dir == Path("runs") / "t"


def test_shipped_pipelines_validate():
    root = Path(__file__).resolve().parents[2] / "pipelines"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert "demo.yaml" in names and "pretrain.yaml" in names
    for p in root.glob("*.yaml"):
        cfg = load_pipeline(p, check_files=False)
        assert isinstance(cfg, PipelineConfig) and yaml.safe_load(p.read_text())["name"] == cfg.name


def test_validation_manifest_resolves_and_becomes_the_external_cohort(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    for n in ("a.csv", "b.csv"):
        (sub / n).write_text("x\n")
    two = "name: t\ndata: {manifest: a.csv, validation_manifest: b.csv}\n"
    cfg = load_pipeline(_write(sub, two))
    assert cfg.data.validation_manifest == sub / "b.csv" and cfg.data.cohort_column == "cohort"
    assert cfg.model_dump(mode="json")["benchmark"]["external"] == {"column": "cohort", "develop": ["development"],
                                                                     "validate": ["validation"]}
    dump = cfg.model_dump(mode="json")  # reloads: the written-out external passes the check
    assert type(cfg).model_validate(dump).model_dump(mode="json") == dump
    cfg = load_pipeline(_write(sub, two), overrides=["data.cohort_column=site_group"])
    assert cfg.benchmark.external.column == "site_group"
    msg = _error(sub, two + "benchmark: {external: {column: cohort, develop: [A], validate: [B]}}\n")
    assert msg.endswith(": benchmark.external: column 'cohort' holds only ['development', 'validation'] with "
                        "data.validation_manifest (got ['a'] / ['b']) -> leave benchmark.external out or use those values")
    # another column of the manifests (e.g. a site) may still split the cohorts
    cfg = load_pipeline(_write(sub, two + "benchmark: {external: {column: site, develop: [s1], validate: [s2]}}\n"))
    assert cfg.benchmark.external.column == "site"
    assert "data.cohort_column: 'is_evaluation' is a column radae fills itself" in _error(sub, two, ["data.cohort_column=is_evaluation"])
    assert _error(sub, two.replace("b.csv", "c.csv")).endswith(f": data.validation_manifest: file not found: {sub / 'c.csv'}")
