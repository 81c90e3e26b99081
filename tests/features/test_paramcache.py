"""radae.features.paramcache: PyRadiomics' schema check is skipped only for a parameter dict that passed it before."""
from __future__ import annotations

import copy

import pytest

from radae.features import paramcache
from radae.features.handcrafted import read_params, shipped_params_path


def test_a_dict_that_passed_builds_the_same_extractor_without_the_check(tmp_path, monkeypatch):
    from radiomics import featureextractor

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    params = read_params(shipped_params_path("CT"))
    first = paramcache.build_extractor(copy.deepcopy(params))
    assert [p.parent for p in tmp_path.rglob("*") if p.is_file()] == [tmp_path / "radae" / "pyradiomics-params"]
    import pykwalify.core

    calls = []
    real = pykwalify.core.Core
    monkeypatch.setattr(pykwalify.core, "Core", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = paramcache.build_extractor(copy.deepcopy(params))
    assert calls == [] and pykwalify.core.Core is not paramcache._Checked
    ref = featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(params))
    n = len(calls)
    assert n > 0  # PyRadiomics' own constructor still runs the check
    for ex in (first, again):
        assert (ex.settings, ex.enabledFeatures, ex.enabledImagetypes) == (ref.settings, ref.enabledFeatures, ref.enabledImagetypes)
    changed = copy.deepcopy(params)
    changed["setting"]["binWidth"] = 13
    paramcache.build_extractor(changed)
    assert len(calls) == 2 * n  # another dict: checked


def test_a_rejected_dict_is_never_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    bad = {"imageType": {"Original": {}}, "setting": {"binWidth": "wide"}}
    for _ in range(2):
        with pytest.raises(Exception, match="binWidth|wide"):
            paramcache.build_extractor(copy.deepcopy(bad))
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_an_unwritable_cache_only_means_checking_again(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # a file where the folder would go
    params = read_params(shipped_params_path("CT"))
    ex = paramcache.build_extractor(copy.deepcopy(params))
    assert ex.settings["binWidth"] == params["setting"]["binWidth"]
