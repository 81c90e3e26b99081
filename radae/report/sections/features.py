"""Report section "Feature tables": rows and columns of the learned and handcrafted tables, how PyRadiomics ran."""
from __future__ import annotations

import pandas as pd
from markupsafe import Markup

from radae.report.blocks import Paragraph, Section, Table
from radae.report.sections.context import Context, plain, table_from_frame
from radae.runfolder import is_latent_column


def _flatten(obj: dict, prefix: str = "", skip: tuple[str, ...] = ()) -> list[list]:
    """Nested JSON -> [["a.b", value], ...] of its scalars (lists joined), leaving out subtrees named in ``skip``."""
    rows = []
    for key, v in obj.items():
        if key in skip:
            continue
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            rows += _flatten(v, f"{name}.", skip)
        elif isinstance(v, list):
            rows.append([name, ", ".join(map(str, v))])
        else:
            rows.append([name, plain(v, "g") if isinstance(v, float) else v])
    return rows


def features_section(ctx: Context) -> Section:
    """What the two feature tables hold: rows, columns per family, how PyRadiomics was run, provenance."""
    sec = Section("features", "Feature tables")
    run = ctx.run
    lat = run.table("extract/latent.parquet")
    rad = run.table("extract/radiomics.parquet")
    if lat is None and rad is None:
        sec.available = False
        return sec.missing("the feature tables", run.why("extract/latent.parquet", "extract/radiomics.parquet")
                           or "the extract stage did not run")
    k = ctx.keys
    parts = []
    if lat is not None:
        n_lat = sum(is_latent_column(c) for c in lat.columns)
        parts.append(Markup("learned: {} rows × {} latent features").format(
            k.put("features.latent.rows", len(lat), "int"), k.put("features.latent.columns", n_lat, "int")))
    if rad is not None:
        n_rad = sum(str(c) not in ("case_id", "patient_id") and pd.api.types.is_numeric_dtype(rad[c]) for c in rad.columns)
        parts.append(Markup("handcrafted (PyRadiomics): {} rows × {} features").format(
            k.put("features.radiomics.rows", len(rad), "int"), k.put("features.radiomics.columns", n_rad, "int")))
    ecfg = ctx.section_cfg("extract") or {}
    unit = {"all": "one row per lesion", "largest": "one row per patient (its largest lesion)",
            "volume_weighted_mean": "one row per patient (lesion-volume-weighted mean of each feature)"}.get(
        ecfg.get("aggregate", "all"), str(ecfg.get("aggregate")))
    sec.add(Paragraph(Markup("Tables: {}; {}, keyed by case_id and patient_id; Parquet and CSV twins in extract/.").format(
        Markup("; ").join(parts), unit)))
    rcfg = ecfg.get("radiomics") or {}
    if rcfg:
        grid = {"resampled": "on the image and mask resampled by radae's shared preprocessing path (same grid as the autoencoder)",
                "original": "on the original image grid, with PyRadiomics' own resampling"}.get(rcfg.get("grid"), str(rcfg.get("grid")))
        esum = (run.json("extract/summary.json") or {}).get("radiomics") or {}
        prov_r = ((run.json("extract/provenance.json") or {}).get("radiomics") or {})
        params = prov_r.get("parameter_files") or rcfg.get("params") or "the shipped default for the modality"
        sec.add(Paragraph(Markup("PyRadiomics ran {}; image types: {}; parameter file(s): {}. "
                                 "Extraction failures: {} learned, {} handcrafted (listed under Data).").format(
            grid, ", ".join(rcfg.get("image_types") or []) or prov_r.get("image_types") or "as in the parameter file", params,
            plain(((run.json("extract/summary.json") or {}).get("latent") or {}).get("failed"), "int"), plain(esum.get("failed"), "int"))))
    dic = run.table("extract/data_dictionary.csv")
    if dic is None:
        sec.missing("the data dictionary", run.why("extract/data_dictionary.csv"))
    elif "family" in dic.columns:
        counts = dic.groupby("family", sort=True).size().rename("columns").reset_index()
        sec.add(table_from_frame(counts, Markup("Columns per feature family (extract/data_dictionary.csv, {} entries, with "
                                                "units and a description of each).").format(len(dic))))
    prov = run.json("extract/provenance.json")
    if prov is not None:
        flat = _flatten(prov, skip=("lesions", "params", "run_dir", "featureClass"))
        sec.add(Table(["provenance", "value"], flat,
                      "Provenance of the feature tables (extract/provenance.json, with the full PyRadiomics settings; the "
                      "Parquet tables carry the same record in their metadata, and per-lesion image/mask hashes and "
                      "PyRadiomics diagnostics are rows of extract/lesion_provenance.parquet).",
                      collapsed=True))
    return sec
