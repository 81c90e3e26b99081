"""One function per report section: read the run folder, state key numbers, draw figures.

Every function takes the :class:`Context` and returns a :class:`~radae.report.blocks.Section`.
A section whose inputs are absent says so plainly and shows nothing invented. Numbers stated as
results go through ``ctx.keys.put`` (they end up in ``report/summary.json``); descriptive numbers
in captions are plain text.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from radae.report import plots
from radae.report.artifacts import RunFolder
from radae.report.blocks import Figure, Note, Paragraph, Pre, Section, Table
from radae.report.keys import KeyNumbers, format_number, key_segment

logger = logging.getLogger(__name__)


@dataclass
class Context:
    run: RunFolder
    keys: KeyNumbers
    cfg: dict  # config.resolved.yaml as a plain dict ({} when absent)
    max_rows: int = 50
    facts: dict = field(default_factory=dict)  # numbers one section hands to another (e.g. the headline)

    def section_cfg(self, *path: str):
        node = self.cfg
        for p in path:
            if not isinstance(node, dict):
                return None
            node = node.get(p)
        return node


def fig(figure, caption: str | Markup, alt: str) -> Figure:
    return Figure(plots.to_data_uri(figure), caption, alt)


def plain(value, spec: str = ".3g") -> str:
    return format_number(value, spec)


def numeric(s: pd.Series) -> pd.Series:
    """Outcome columns arrive as strings from the manifest ("1.0", "201.3"); empty -> NaN."""
    return pd.to_numeric(s, errors="coerce")


def median_iqr(v: np.ndarray, spec: str = ".3g") -> str:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    return f"{plain(q2, spec)} [{plain(q1, spec)}, {plain(q3, spec)}]"


def table_from_frame(df: pd.DataFrame, caption: str | Markup = "", max_rows: int | None = None, digits: int = 3) -> Table:
    """A blocks.Table from a DataFrame: floats to ``digits`` significant digits, long tables cut with a note."""
    shown = df if max_rows is None else df.head(max_rows)
    rows = []
    for rec in shown.itertuples(index=False):
        row = []
        for v in rec:
            if isinstance(v, (float, np.floating)):
                row.append(plain(v, f".{digits}g"))
            else:
                row.append("" if v is None or (isinstance(v, float) and np.isnan(v)) else v)
        rows.append(row)
    numeric_cols = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    if max_rows is not None and len(df) > max_rows:
        caption = Markup("{} (first {} of {} rows; the full table is in the run folder)").format(caption, max_rows, len(df))
    return Table([str(c) for c in df.columns], rows, caption, numeric=numeric_cols)


def outcome_spec(ctx: Context) -> dict:
    """Outcome column names from the resolved config (None when not configured)."""
    cls = ctx.section_cfg("benchmark", "classification") or {}
    surv = ctx.section_cfg("benchmark", "survival") or {}
    return {"label": cls.get("label"), "time": surv.get("time"), "event": surv.get("event")}


def patient_outcomes(ctx: Context) -> pd.DataFrame | None:
    """One row per patient with numeric outcome columns (first lesion's values; they are patient-level)."""
    cases = ctx.run.table("ingest/cases.parquet")
    if cases is None:
        return None
    spec = outcome_spec(ctx)
    cols = [c for c in (spec["label"], spec["time"], spec["event"]) if c and c in cases.columns]
    out = cases.drop_duplicates("patient_id")[["patient_id", *cols]].copy()
    for c in cols:
        out[c] = numeric(out[c])
    return out.reset_index(drop=True)


# ============================================================================= data
def data_section(ctx: Context) -> Section:
    sec = Section("data", "Data")
    k = ctx.keys
    cases = ctx.run.table("ingest/cases.parquet")
    if cases is None:
        sec.available = False
        return sec.missing("the cohort description", ctx.run.why("ingest/cases.parquet") or "the ingest stage did not run")
    n_lesions, n_patients = len(cases), cases["patient_id"].nunique()
    per_patient = cases.groupby("patient_id").size()
    n_eval = cases.loc[cases["is_evaluation"].astype(bool), "patient_id"].nunique() if "is_evaluation" in cases else 0
    mods = cases.drop_duplicates(["patient_id", "modality"])["modality"].value_counts().sort_index()
    sec.add(Paragraph(Markup(
        "The manifest lists {} lesions in {} patients ({} with more than one lesion); "
        "{} patients are evaluation patients (held out of pretraining, used for the benchmark). "
        "Modalities (patients per modality): {}."
    ).format(
        k.put("data.lesions", n_lesions, "int"), k.put("data.patients", n_patients, "int"),
        k.put("data.multi_lesion_patients", int((per_patient > 1).sum()), "int"),
        k.put("data.evaluation_patients", n_eval, "int"),
        Markup(", ").join(Markup("{} {}").format(m, k.put(f"data.modality.{key_segment(m)}", n, "int")) for m, n in mods.items()),
    )))

    # outcomes, at patient level
    spec = outcome_spec(ctx)
    pts = patient_outcomes(ctx)
    if pts is not None and (spec["label"] or spec["time"]):
        rows = []
        if spec["label"] and spec["label"] in pts:
            y = pts[spec["label"]]
            known = y.notna()
            rows.append(Markup("{}: {} of {} patients with a known label are positive ({} unlabeled).").format(
                spec["label"], k.put("data.outcome.positives", int((y[known] == 1).sum()), "int"),
                k.put("data.outcome.labelled_patients", int(known.sum()), "int"), int((~known).sum())))
        if spec["time"] and spec["time"] in pts and spec["event"] in pts:
            t, e = pts[spec["time"]], pts[spec["event"]]
            known = t.notna() & e.notna()
            rows.append(Markup("{} / {}: {} events in {} patients with follow-up; median observed time {} (range {}–{}).").format(
                spec["time"], spec["event"], k.put("data.outcome.events", int((e[known] == 1).sum()), "int"),
                k.put("data.outcome.survival_patients", int(known.sum()), "int"),
                plain(t[known].median()), plain(t[known].min()), plain(t[known].max())))
        sec.add(*(Paragraph(r) for r in rows))
    elif pts is not None:
        sec.add(Note("No outcome is configured (benchmark.classification / benchmark.survival), so none is described."))

    rois = ctx.run.table("preprocess/rois.parquet")
    if rois is None:
        sec.missing("spacing and lesion-volume distributions", ctx.run.why("preprocess/rois.parquet") or "preprocess did not run")
    else:
        sp = {ax: rois[f"orig_spacing_{ax}"].to_numpy(float) for ax in "xyz" if f"orig_spacing_{ax}" in rois}
        if sp:
            sec.add(fig(plots.strip_by_group(sp, "voxel spacing (mm)", "Original voxel spacing per axis"),
                        f"Voxel spacing of the original images, one point per lesion (n = {len(rois)} lesions). "
                        f"All lesions are resampled to the preprocessing grid below.", "original spacing per axis"))
        vol = rois["lesion_volume_ml"].to_numpy(float)
        sec.add(Paragraph(Markup("Lesion volume, median [IQR]: {} mL (n = {} lesions that passed preprocessing).").format(
            Markup("{} [{}, {}]").format(
                k.put("data.volume_ml.median", np.nanmedian(vol), ".3g"),
                k.put("data.volume_ml.q1", np.nanpercentile(vol, 25), ".3g"),
                k.put("data.volume_ml.q3", np.nanpercentile(vol, 75), ".3g")),
            len(vol))))
        sec.add(fig(plots.histogram(vol, "lesion volume (mL, log scale)", "Lesion volume", log_x=True),
                    f"Lesion volumes measured on the original-grid mask (n = {np.isfinite(vol).sum()} lesions).",
                    "histogram of lesion volumes"))

    sec.add(*failures_blocks(ctx))
    return sec


def failures_blocks(ctx: Context) -> list:
    fails = ctx.run.table("failures.csv")
    if fails is None:
        return [Note(f"Not available: the failure list — {ctx.run.why('failures.csv')}.")]
    k = ctx.keys
    if fails.empty:
        return [Paragraph(Markup("Failures: {} — every case passed every stage that ran.").format(k.put("data.failures.total", 0, "int")))]
    by_stage = fails.groupby("stage", sort=False).size()
    out = [Paragraph(Markup("Failures: {} case-stage failures ({}); each is listed with its message below.").format(
        k.put("data.failures.total", len(fails), "int"),
        Markup(", ").join(Markup("{} in {}").format(k.put(f"data.failures.{key_segment(s)}", n, "int"), s) for s, n in by_stage.items()),
    ))]
    out.append(table_from_frame(fails[["case_id", "stage", "message", "file"]].fillna(""), "Cases that failed (run-level failures.csv)",
                                max_rows=ctx.max_rows))
    return out


# ============================================================================= preprocessing
def preprocess_section(ctx: Context) -> Section:
    sec = Section("preprocess", "Preprocessing")
    pcfg = ctx.section_cfg("preprocess")
    summ = ctx.run.json("preprocess/summary.json")
    rois = ctx.run.table("preprocess/rois.parquet")
    if summ is None and rois is None:
        sec.available = False
        return sec.missing("preprocessing results", ctx.run.why("preprocess/summary.json", "preprocess/rois.parquet"))
    if pcfg:
        norm = pcfg.get("normalise", {})
        present = set(rois["modality"].astype(str).str.upper()) if rois is not None else set()
        rules = {
            "CT": f"CT clipped to [{plain(norm.get('hu_min'), 'g')}, {plain(norm.get('hu_max'), 'g')}] HU and scaled to [0, 1]",
            "MR": f"MR z-scored within the {norm.get('mr_region')}",
            "PET": f"PET SUV clipped at {plain(norm.get('suv_max'), 'g')} and divided by {plain(norm.get('suv_scale'), 'g')}",
        }
        used = [rules[m] for m in ("CT", "MR", "PET") if m in present]
        used += [f"{m}: {norm.get('other')}" for m in sorted(present - set(rules))]
        sec.add(Paragraph(Markup(
            "Each lesion was resampled to {} mm ({} interpolation for the image, {} for the mask) and cropped to a "
            "{} voxel ROI (x × y × z) centred on the lesion for the autoencoder. Intensity normalisation: {}. PyRadiomics "
            "receives the raw intensities on the same resampled grid, cropped to the lesion bounding box plus {} voxels."
        ).format(
            " × ".join(plain(s) for s in pcfg.get("spacing_mm", [])), pcfg.get("interpolator"), pcfg.get("mask_interpolation"),
            " × ".join(str(s) for s in pcfg.get("roi_size_vox", [])), "; ".join(used) or "n/a",
            pcfg.get("radiomics_margin_vox"),
        )))
    if summ is not None:
        k = ctx.keys
        sec.add(Paragraph(Markup("{} of {} lesions were preprocessed ({} failed; {} came from the cache of an earlier run).").format(
            k.put("preprocess.ok", summ.get("ok"), "int"), k.put("preprocess.lesions", summ.get("lesions"), "int"),
            k.put("preprocess.failed", summ.get("failed"), "int"), plain(summ.get("cache_hits"), "int"))))
    if rois is not None and "touches_border" in rois:
        n_border = int(rois["touches_border"].astype(bool).sum())
        sec.add(Paragraph(Markup("{} lesion masks touch the edge of their original image (the lesion may extend beyond the "
                                 "field of view; its volume and shape features are then underestimated).").format(
            ctx.keys.put("preprocess.touches_border", n_border, "int"))))
    return sec


# ============================================================================= reproducibility appendix
def appendix_section(ctx: Context, command: str) -> Section:
    sec = Section("appendix", "Reproducibility appendix")
    run = ctx.run
    env = run.json("environment.json")
    cfg_text = run.text("config.resolved.yaml")
    seeds = {
        "pipeline seed (seed)": ctx.section_cfg("seed"),
        "synthetic cohort (data.synth.seed)": ctx.section_cfg("data", "synth", "seed"),
        "cross-validation (benchmark.cv.seed)": ctx.section_cfg("benchmark", "cv", "seed"),
    }
    sec.add(Paragraph(Markup("To rerun every stage from the project root: <code>{}</code>. To rebuild only this page from the run "
                             "folder (nothing recomputed): <code>{}</code>.").format(
        f"{command} --force", f"python -m radae.report {run.run_dir}")))
    sec.add(Table(["seed", "value"], [[k, "" if v is None else v] for k, v in seeds.items()],
                  "Seeds. All randomness is drawn from generators seeded with these values."))
    if env is None:
        sec.missing("versions, git commit and hardware", run.why("environment.json"))
    else:
        dev = env.get("device") or {}
        hw = [["date (UTC)", env.get("date_utc")], ["git commit", env.get("git_commit") or "unknown (not a git checkout)"],
              ["python", env.get("python")], ["platform", env.get("platform")], ["CPU cores", env.get("cpu_count")],
              ["torch threads", dev.get("torch_threads")], ["CUDA", dev.get("cuda")]]
        if dev.get("gpu"):
            hw.append(["GPU", f"{dev.get('gpu')} × {dev.get('gpu_count', 1)}"])
        sec.add(Table(["", "value"], hw, "Environment of the last `radae run` on this folder (environment.json)."))
        pk = env.get("packages") or {}
        sec.add(Table(["package", "version"], [[n, v or "not installed"] for n, v in pk.items()], "Package versions."))
    # hashes: model, feature tables, inputs
    hashes = []
    for rel, what in (("pretrain/model.pt", "autoencoder weights"), ("extract/latent.parquet", "learned feature table"),
                      ("extract/radiomics.parquet", "handcrafted feature table"), ("ingest/cases.parquet", "case table")):
        h = run.sha256(rel) if run.exists(rel) else None
        hashes.append([rel, what, h or "missing"])
    sec.add(Table(["file", "what", "sha256"], hashes, "Content hashes of the model and the tables the results come from."))
    cases = run.table("ingest/cases.parquet")
    if cases is not None and "image_sha256" in cases:
        cols = [c for c in ("case_id", "patient_id", "modality", "image_sha256", "mask_sha256") if c in cases]
        sec.add(Pre(cases[cols].to_csv(index=False), "Per-lesion image and mask sha256 (the input data).", collapsed=True))
    if cfg_text is not None:
        sec.add(Pre(cfg_text, "Resolved pipeline configuration (config.resolved.yaml): every default made explicit.", collapsed=True))
    else:
        sec.missing("the resolved configuration", run.why("config.resolved.yaml"))
    stages = []
    for name in ("ingest", "preprocess", "pretrain", "extract", "benchmark"):
        meta = run.stage_meta(name)
        stages.append([name, (meta or {}).get("status", "not run"), plain((meta or {}).get("seconds"), ".3g"),
                       (meta or {}).get("failures", ""), ((meta or {}).get("key") or "")[:16]])
    sec.add(Table(["stage", "status", "seconds", "failures", "stage key (first 16 hex)"], stages,
                  "Stages of this run. A stage's key hashes its configuration section, the seed and its upstream keys; "
                  "an unchanged key means the stage was skipped as up to date."))
    return sec


# ============================================================================= pretraining
def pretrain_section(ctx: Context) -> Section:
    sec = Section("pretrain", "Pretraining")
    run = ctx.run
    metrics = run.table("pretrain/metrics.csv")
    summ = run.json("pretrain/summary.json")
    previews = run.files("pretrain/previews/*.png")
    if metrics is None and summ is None and not run.exists("pretrain/model.pt"):
        sec.available = False
        return sec.missing("pretraining results", run.why("pretrain/metrics.csv", "pretrain/summary.json", "pretrain/model.pt")
                           or "the pretrain stage did not run")
    pcfg = ctx.section_cfg("pretrain") or {}
    mcfg = pcfg.get("model") or {}
    ncfg = pcfg.get("noise") or {}
    if pcfg:
        sec.add(Paragraph(Markup(
            "A 3D convolutional {} (channels {}, strides {}, latent dimension {}, {} latent) was trained for up to {} steps "
            "(batch {}, AdamW lr {}, {} loss) to reconstruct clean ROIs from inputs corrupted with {} noise (σ in [{}, {}]). "
            "Sources: {}; evaluation patients {} pretraining.").format(
            {"dae": "denoising autoencoder", "vae": f"β-VAE (β = {mcfg.get('beta')})"}.get(mcfg.get("kind"), mcfg.get("kind")),
            mcfg.get("channels"), mcfg.get("strides"), mcfg.get("latent_dim"), mcfg.get("latent_mode"),
            pcfg.get("steps"), pcfg.get("batch_size"), plain(pcfg.get("lr"), "g"), pcfg.get("loss"), ncfg.get("kind"),
            *(plain(v, "g") for v in (ncfg.get("sigma") or [None, None])),
            ", ".join(pcfg.get("sources") or []), "were included in" if pcfg.get("include_evaluation_patients") else "were excluded from")))
    if summ is not None:
        sec.add(*pretrain_summary_blocks(ctx, summ))
    if metrics is None:
        sec.missing("loss curves", run.why("pretrain/metrics.csv"))
    else:
        sec.add(*loss_curve_blocks(metrics))
    if previews:
        shown = previews if len(previews) <= 3 else [previews[0], *previews[-2:]]
        for rel in shown:
            png = run.binary(rel)
            if png is not None:
                sec.add(Figure(plots.to_data_uri(png), f"Reconstruction preview {Path(rel).name} (orthogonal slices as written by "
                               f"the pretrain stage; {len(previews)} previews in pretrain/previews/).", f"reconstruction preview {Path(rel).stem}"))
    else:
        sec.add(Note("No reconstruction previews were found in pretrain/previews/."))
    return sec


def pretrain_summary_blocks(ctx: Context, summ: dict) -> list:
    """Denoising PSNR gain and the scalar facts of pretrain/summary.json."""
    return [Table(["", "value"], [[key, plain(v, "g") if isinstance(v, float) else v] for key, v in summ.items()
                                  if isinstance(v, (int, float, str, bool))], "pretrain/summary.json")]


def loss_curve_blocks(metrics: pd.DataFrame) -> list:
    xcol = next((c for c in ("step", "global_step", "epoch") if c in metrics), None)
    if xcol is None or metrics.empty:
        return [Note("Not available: loss curves — pretrain/metrics.csv has no step column or no rows.")]
    series = {}
    for col in [c for c in metrics.columns if "loss" in c.lower()]:
        v = pd.to_numeric(metrics[col], errors="coerce")
        ok = v.notna()
        if ok.sum() >= 1:
            series[col] = (metrics.loc[ok, xcol].to_numpy(float), v[ok].to_numpy(float))
    if not series:
        return [Note("Not available: loss curves — pretrain/metrics.csv has no loss column.")]
    return [fig(plots.loss_curves(series, xlabel=xcol), f"Loss per {xcol} ({len(metrics)} logged rows).", "loss curves")]


# ============================================================================= latent space
def latent_section(ctx: Context) -> Section:
    sec = Section("latent", "Latent space")
    lat = ctx.run.table("extract/latent.parquet")
    if lat is None:
        sec.available = False
        return sec.missing("the latent space", ctx.run.why("extract/latent.parquet") or "the extract stage did not run")
    feat = [c for c in lat.columns if c.startswith("latent_")]
    X = lat[feat].to_numpy(dtype=float)
    ok = np.isfinite(X).all(axis=1)
    if len(feat) < 2 or ok.sum() < 3:
        sec.available = False
        return sec.missing("the latent space", f"extract/latent.parquet has {len(feat)} latent columns and {ok.sum()} complete rows")
    X, rows = X[ok], lat.loc[ok].reset_index(drop=True)
    sd = X.std(axis=0)
    Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    U, S, _ = np.linalg.svd(Z, full_matrices=False)
    scores = U[:, :2] * S[:2]
    var = S**2 / np.sum(S**2)
    k = ctx.keys
    sec.add(Paragraph(Markup("{} lesions × {} latent dimensions (standardised). The first two principal components explain {} "
                             "and {} of the variance.").format(
        k.put("latent.lesions", len(rows), "int"), k.put("latent.dimensions", len(feat), "int"),
        k.put("latent.pc1_variance", var[0], ".3f"), k.put("latent.pc2_variance", var[1], ".3f"))))
    spec = outcome_spec(ctx)
    pts = patient_outcomes(ctx)
    colourings = []
    if pts is not None and spec["label"] and spec["label"] in pts:
        colourings.append((spec["label"], "categorical", pts.set_index("patient_id")[spec["label"]]))
    if pts is not None and spec["event"] and spec["event"] in pts:
        colourings.append((spec["event"], "categorical", pts.set_index("patient_id")[spec["event"]]))
    if not colourings:
        colourings.append((None, "none", None))
    for label, kind, values in colourings:
        c = None if values is None else rows["patient_id"].astype(str).map(values.rename(index=str)).to_numpy(object)
        if c is not None:
            c = np.array([None if v != v else int(v) if float(v).is_integer() else v for v in c], dtype=object)
        title = f"PCA of latent features{'' if label is None else ' coloured by ' + label}"
        sec.add(fig(plots.scatter_2d(scores, c, kind, label or "", f"PC1 ({var[0]:.1%} of variance)",
                                     f"PC2 ({var[1]:.1%} of variance)", title),
                    f"One point per lesion (n = {len(rows)}); grey points have no outcome (e.g. unlabeled pretraining "
                    f"patients). PCA is unsupervised: the outcome only colours the points. UMAP is not used (not installed).",
                    title))
    return sec


def downstream_section(ctx: Context) -> Section:
    sec = Section("downstream", "Downstream results")
    sec.available = False
    return sec.missing("downstream", "not yet written")


def robustness_section(ctx: Context) -> Section:
    sec = Section("robustness", "Robustness of features (ICC under perturbation)")
    rob = ctx.run.table("benchmark/robustness.parquet")
    rcfg = ctx.section_cfg("benchmark", "robustness") or {}
    if rob is None:
        sec.available = False
        why = ctx.run.why("benchmark/robustness.parquet")
        if rcfg and not rcfg.get("enabled", True):
            why = "benchmark.robustness.enabled is false in this run"
        return sec.missing("feature robustness", why or "the benchmark stage did not run")
    if rob.empty:
        sec.available = False
        return sec.missing("feature robustness", "benchmark/robustness.parquet has no rows (no lesion completed every perturbation)")
    kind = {"icc3_1": "ICC(3,1), consistency", "icc2_1": "ICC(2,1), absolute agreement"}.get(rcfg.get("icc"), str(rcfg.get("icc")))
    n_les = int(rob["n_lesions"].max()) if "n_lesions" in rob else None
    n_cond = int(rob["n_conditions"].max()) if "n_conditions" in rob else None
    pert = ", ".join(rcfg.get("perturbations") or []) or "n/a"
    sec.add(Paragraph(Markup(
        "Each of up to {} lesions was re-extracted under each perturbation ({}) through the same path as the real "
        "extraction; lesions are subjects and the {} conditions (original + perturbed) are raters of a {}. "
        "A feature with ICC ≥ 0.75 is usually called robust, ≥ 0.9 excellent.").format(
        plain(n_les, "int"), pert, plain(n_cond, "int"), kind)))
    k = ctx.keys
    rows, groups = [], {}
    for fset, g in rob.groupby("feature_set", sort=True):
        x = g["icc"].to_numpy(dtype=float)
        seg = f"robustness.{key_segment(fset)}"
        frac = lambda t: float(np.mean(np.nan_to_num(x, nan=-np.inf) >= t)) if len(x) else float("nan")  # noqa: E731
        rows.append([fset, k.put(f"{seg}.n_features", len(x), "int"), int(np.isnan(x).sum()),
                     k.put(f"{seg}.median_icc", np.nanmedian(x) if np.isfinite(x).any() else np.nan, ".3f"),
                     k.put(f"{seg}.fraction_icc_ge_0_75", frac(0.75), ".3f"),
                     k.put(f"{seg}.fraction_icc_ge_0_90", frac(0.90), ".3f")])
        groups[str(fset)] = x
    sec.add(Table(["feature set", "features", "ICC undefined", "median ICC", "fraction ICC ≥ 0.75", "fraction ICC ≥ 0.90"], rows,
                  "ICC per feature set. Undefined ICCs (constant features) count as not robust in the fractions.",
                  numeric=[False, True, True, True, True, True]))
    sec.add(fig(plots.distributions(groups, "ICC", "Distribution of per-feature ICC", thresholds=(0.75, 0.9)),
                f"Per-feature ICC by feature set (fraction of the set's features per bin; dashed lines at 0.75 and 0.9). "
                f"n = {n_les} lesions × {n_cond} conditions. ICCs below 0 are drawn at the left edge.",
                "histogram of ICC per feature set"))
    worst = rob.sort_values("icc", na_position="first").head(min(ctx.max_rows, 15))
    sec.add(table_from_frame(worst[["feature_set", "feature", "icc", "n_lesions"]], "Least robust features"))
    return sec


def redundancy_section(ctx: Context) -> Section:
    sec = Section("redundancy", "Redundancy: learned vs handcrafted features")
    red = ctx.run.table("benchmark/redundancy.parquet")
    if red is None or red.empty:
        sec.available = False
        return sec.missing("the redundancy analysis", ctx.run.why("benchmark/redundancy.parquet")
                           or "benchmark/redundancy.parquet has no rows")
    k = ctx.keys
    ok = red.dropna(subset=["abs_rho"])
    best = ok.loc[ok.groupby("latent")["abs_rho"].idxmax()].sort_values("abs_rho", ascending=False)
    n_lat, n_hc = red["latent"].nunique(), red["feature"].nunique()
    parts = [Markup("Spearman correlation between each of {} latent dimensions and each of {} handcrafted features "
                    "(lesion volume included), over all lesions. Median over latents of the strongest |ρ|: {}; fraction "
                    "of latents with a handcrafted twin (|ρ| ≥ 0.8): {}.").format(
        k.put("redundancy.n_latent", n_lat, "int"), k.put("redundancy.n_handcrafted", n_hc, "int"),
        k.put("redundancy.median_max_abs_rho", best["abs_rho"].median() if len(best) else np.nan, ".3f"),
        k.put("redundancy.fraction_latent_max_abs_rho_ge_0_8", (best["abs_rho"] >= 0.8).sum() / max(n_lat, 1), ".3f"))]
    vol = ok[ok["is_volume"].astype(bool)] if "is_volume" in ok else ok.iloc[:0]
    if len(vol):
        parts.append(Markup(" The latent most correlated with lesion volume has |ρ| = {}.").format(
            k.put("redundancy.volume_max_abs_rho", vol["abs_rho"].max(), ".3f")))
    sec.add(Paragraph(Markup("").join(parts)))
    # heat map: every latent x the handcrafted features that matter most (+ volume)
    strength = ok.groupby("feature")["abs_rho"].max().sort_values(ascending=False)
    vol_names = set(red.loc[red["is_volume"].astype(bool), "feature"]) if "is_volume" in red else set()
    cols = list(dict.fromkeys([*sorted(vol_names), *strength.index[:30]]))
    mat = red.pivot_table(index="latent", columns="feature", values="rho", aggfunc="first").reindex(columns=cols)
    mat = mat.sort_index()
    sec.add(fig(plots.heatmap(mat.to_numpy(float), list(mat.index), [c.replace("original_", "") for c in cols],
                              "Spearman ρ: latent dimensions × handcrafted features", "Spearman ρ"),
                f"Rows: all {len(mat)} latent dimensions; columns: lesion volume and the {len(cols) - len(vol_names)} handcrafted "
                f"features with the strongest correlation to any latent (of {n_hc}). Colour range fixed at [-1, 1].",
                "heat map of latent-handcrafted correlations"))
    top = best.head(10)[["latent", "feature", "rho"]]
    sec.add(table_from_frame(top, "The ten latent dimensions with the strongest handcrafted twin"))
    return sec


def ibsi_section(ctx: Context) -> Section:
    sec = Section("ibsi", "IBSI compliance of the handcrafted features")
    tab = ctx.run.table("extract/ibsi_compliance.csv")
    if tab is None or tab.empty:
        sec.available = False
        return sec.missing("the IBSI compliance table", ctx.run.why("extract/ibsi_compliance.csv") or "the table has no rows")
    status_col = next((c for c in ("status", "match", "within_tolerance", "compliant") if c in tab.columns), None)
    if status_col is not None:
        counts = tab[status_col].astype(str).value_counts().sort_index()
        k = ctx.keys
        sec.add(Paragraph(Markup("PyRadiomics (as configured by radae) against the IBSI reference values: {} of {} compared "
                                 "features ({}).").format(
            k.put("ibsi.rows", len(tab), "int"), len(tab),
            Markup(", ").join(Markup("{}: {}").format(v, k.put(f"ibsi.{key_segment(status_col)}.{key_segment(v)}", n, "int"))
                              for v, n in counts.items()))))
    sec.add(table_from_frame(tab, "IBSI compliance (extract/ibsi_compliance.csv): reference value and tolerance, radae's value, "
                             "and why a feature differs where it does.", max_rows=ctx.max_rows, digits=6))
    return sec


def summary_section(ctx: Context) -> Section:
    sec = Section("summary", "Run summary")
    return sec
