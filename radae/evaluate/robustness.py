"""The robustness study: extract every lesion unperturbed and perturbed, and record what each extractor saw.

The perturbations are in :mod:`radae.evaluate.perturbations`, the ICC and its summaries in
:mod:`radae.evaluate.icc`. :func:`perturbation_study` draws one perturbation per kind and lesion and calls the
stage's extractor; :func:`input_digests` / :func:`input_changes` show whether a perturbation changed the
arrays a feature set's extractor read at all; :func:`write_study_extras` writes the study's side tables.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from radae.evaluate.icc import family_table
from radae.evaluate.perturbations import ORIGINAL, Perturbation, PerturbationSettings, draw_perturbation
from radae.runfolder import OnFailure
from radae.util.fsutil import atomic_path

logger = logging.getLogger(__name__)


INPUTS_KEY = "__inputs__"  # extract() may return {INPUTS_KEY: {feature_set: digest of the arrays that set's extractor read}}


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of the arrays' dtype, shape and bytes (same arrays -> same digest)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def input_digests(roi_row: Mapping, mask_channel: bool) -> dict[str, str]:
    """Digests of what each feature set's extractor reads for one preprocessed lesion (its ROI index row).

    learned: the ROI image (and the ROI mask when the encoder takes a mask channel); handcrafted: the
    resampled lesion crop image and mask handed to PyRadiomics.
    """
    from radae.preprocess.store import load_roi

    out = {}
    if roi_row.get("roi_path"):
        roi = load_roi(roi_row["roi_path"])
        out["learned"] = array_digest(roi.image, roi.mask) if mask_channel else array_digest(roi.image)
    if roi_row.get("radiomics_image") and roi_row.get("radiomics_mask"):
        import SimpleITK as sitk

        out["handcrafted"] = array_digest(sitk.GetArrayFromImage(sitk.ReadImage(str(roi_row["radiomics_image"]))),
                                          sitk.GetArrayFromImage(sitk.ReadImage(str(roi_row["radiomics_mask"]))))
    return out


def input_changes(digests: pd.DataFrame) -> pd.DataFrame:
    """Per perturbation and feature set: how many lesions' extractor input differs from their unperturbed input.

    ``digests``: case_id, condition, feature_set, digest. Columns: condition, feature_set, n_lesions,
    n_changed, fraction_changed. A perturbation that changes no lesion's input cannot lower that set's ICC.
    """
    cols = ["condition", "feature_set", "n_lesions", "n_changed", "fraction_changed"]
    if digests.empty:
        return pd.DataFrame(columns=cols)
    orig = digests[digests["condition"] == ORIGINAL].set_index(["case_id", "feature_set"])["digest"]
    rows = []
    pert = digests[digests["condition"] != ORIGINAL]
    for (cond, fset), g in pert.groupby(["condition", "feature_set"], sort=True):
        ref = orig.reindex(list(zip(g["case_id"], g["feature_set"]))).to_numpy()
        changed = int((g["digest"].to_numpy() != ref).sum())
        rows.append({"condition": cond, "feature_set": fset, "n_lesions": len(g), "n_changed": changed,
                     "fraction_changed": changed / len(g)})
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------- the study
Extractor = Callable[[str, Perturbation | None], Mapping[str, Mapping[str, float]]]


def perturbation_study(
    case_ids: Sequence[str],
    kinds: Sequence[str],
    extract: Extractor,
    seed: int,
    settings: PerturbationSettings = PerturbationSettings(),
    on_failure: OnFailure | None = None,
    inputs: list[dict] | None = None,
) -> pd.DataFrame:
    """Extract every lesion unperturbed and under each perturbation kind; long table of the values.

    ``extract(case_id, perturbation_or_None)`` returns ``{feature_set: {feature: value}}`` - the stage
    passes a function that applies the perturbation to the lesion's inputs and runs the real
    extractors. Parameters are drawn per lesion from ``SeedSequence([seed, lesion index])``, one
    draw per kind, so results do not depend on which other lesions are in the study.
    A lesion whose extraction fails under any condition is reported through ``on_failure(case_id,
    message, None)`` and left out entirely (the ICC needs every condition).
    Columns: case_id, condition, feature_set, feature, value. If ``extract`` also returns
    ``{INPUTS_KEY: {feature_set: digest}}``, those rows (case_id, condition, feature_set, digest) are
    appended to ``inputs`` (for :func:`input_changes`), for the lesions that completed.
    """
    rows: list[dict] = []
    for i, cid in enumerate(case_ids):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), i]))
        conditions: list[tuple[str, Perturbation | None]] = [(ORIGINAL, None)]
        conditions += [(k, draw_perturbation(k, rng, settings)) for k in kinds]
        lesion_rows: list[dict] = []
        lesion_inputs: list[dict] = []
        try:
            for name, pert in conditions:
                feats = dict(extract(str(cid), pert))
                for fset, digest in (feats.pop(INPUTS_KEY, None) or {}).items():
                    lesion_inputs.append({"case_id": str(cid), "condition": name, "feature_set": fset, "digest": digest})
                for fset, values in feats.items():
                    for feat, val in values.items():
                        lesion_rows.append({"case_id": str(cid), "condition": name, "feature_set": fset, "feature": feat, "value": float(val)})
        except Exception as e:  # noqa: BLE001 - any failure of one lesion is reported, the study goes on
            msg = f"robustness: {name}: {e}".replace("\n", " ")
            logger.warning("case %s: %s", cid, msg)
            if on_failure is not None:
                on_failure(str(cid), msg, None)
            continue
        rows.extend(lesion_rows)
        if inputs is not None:
            inputs.extend(lesion_inputs)
    return pd.DataFrame(rows, columns=["case_id", "condition", "feature_set", "feature", "value"])


def write_study_extras(values: pd.DataFrame, digests: pd.DataFrame, kind: Literal["icc3_1", "icc2_1"], seed: int, out_dir) -> dict:
    """Write ``robustness_inputs.parquet`` and ``robustness_families.parquet`` into ``out_dir``; their summary.json part."""
    from pathlib import Path

    
    changes = input_changes(digests)
    fams = family_table(values, kind, seed=seed)
    for name, df in (("robustness_inputs.parquet", changes), ("robustness_families.parquet", fams)):
        with atomic_path(Path(out_dir) / name, suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)
    changed = {f"{r.condition}/{r.feature_set}": {"n_lesions": int(r.n_lesions), "n_changed": int(r.n_changed)}
               for r in changes.itertuples(index=False)}
    families = {f"{r.feature_set}/{r.family}": {"n_features": int(r.n_features), "median_icc": r.median_icc,
                                                "ci_low": r.ci_low, "ci_high": r.ci_high} for r in fams.itertuples(index=False)}
    return {"inputs_changed": changed, "families": families}
