"""Patient tables of a cohort with several modalities: one block of columns per modality, never mixed.

``extract.aggregate: largest`` over all of a patient's lesions would pick the MR lesion for one patient and the PET
lesion for the next and put both in the same column. With more than one modality in the lesion table, each
modality is aggregated on its own (:func:`radae.features.table.aggregate_patients` on that modality's lesions) and
its columns are prefixed with the modality: ``MR_latent_0``, ``PET_original_firstorder_Mean``, plus
``MR_n_lesions`` / ``MR_case_ids``. ``n_lesions`` and ``case_ids`` count and list the lesions used over all
modalities. A patient without lesions of a modality has NaN there (``<mod>_n_lesions`` 0). A single-modality
cohort keeps the plain layout.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from radae.features.table import KEYS, aggregate_patients, whole_patients


def modality_columns(features: list[str], modalities: list[str]) -> dict[str, str]:
    """Column kinds of a per-modality patient table (``features``: the lesion table's feature columns)."""
    out = {"patient_id": "text", "n_lesions": "int", "case_ids": "text"}
    for m in modalities:
        out.update({f"{m}_n_lesions": "int", f"{m}_case_ids": "text", **{f"{m}_{c}": "float" for c in features}})
    return out


def aggregate_by_modality(chunks: Iterable[pd.DataFrame], volume_ml: pd.Series, modality: pd.Series, how: str,
                          modalities: list[str]) -> Iterator[pd.DataFrame]:
    """Per-modality patient rows (see the module docstring) from a lesion table read in chunks.

    ``modality``: each lesion's modality indexed by case_id; ``modalities``: the column blocks, in order.
    """
    for chunk in whole_patients(chunks):
        feats = [c for c in chunk.columns if c not in KEYS]
        mods = chunk["case_id"].map(modality).astype(str)
        out = pd.DataFrame({"patient_id": sorted(chunk["patient_id"].unique())})
        used: dict[str, list[str]] = {p: [] for p in out["patient_id"]}
        for m in modalities:
            sub = chunk[(mods == m).to_numpy()]
            agg = (aggregate_patients(sub, volume_ml, how) if len(sub)
                   else pd.DataFrame(columns=["patient_id", "n_lesions", "case_ids", *feats]))
            for p, ids in zip(agg["patient_id"], agg["case_ids"]):
                used[p] += str(ids).split(";")
            agg = agg.rename(columns={"n_lesions": f"{m}_n_lesions", "case_ids": f"{m}_case_ids",
                                      **{c: f"{m}_{c}" for c in feats}})
            out = out.merge(agg, on="patient_id", how="left")
            out[f"{m}_n_lesions"] = pd.to_numeric(out[f"{m}_n_lesions"]).fillna(0).astype(np.int64)
            out[f"{m}_case_ids"] = out[f"{m}_case_ids"].fillna("")
        out.insert(1, "n_lesions", sum(out[f"{m}_n_lesions"] for m in modalities).astype(np.int64))
        out.insert(2, "case_ids", [";".join(sorted(used[p])) for p in out["patient_id"]])
        yield out
