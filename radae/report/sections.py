"""One function per report section: read the run folder, state key numbers, draw figures.

Every function takes the :class:`Context` and returns a :class:`~radae.report.blocks.Section`.
A section whose inputs are absent says so plainly and shows nothing invented. Numbers stated as
results go through ``ctx.keys.put`` (they end up in ``report/summary.json``); descriptive numbers
in captions are plain text.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from radae.report import forest as glance
from radae.report import plots
from radae.report.artifacts import RunFolder
from radae.report.blocks import Figure, Heading, Note, Paragraph, Pre, Section, Table
from radae.report.learned_checks import diagnostics_blocks, oracle_blocks, pretraining_effect_blocks
from radae.report.keys import KeyNumbers, format_number, key_segment

logger = logging.getLogger(__name__)


@dataclass
class Context:
    run: RunFolder
    keys: KeyNumbers
    cfg: dict  # config.resolved.yaml as a plain dict ({} when absent)
    max_rows: int = 50

    def section_cfg(self, *path: str):
        node = self.cfg
        for p in path:
            if not isinstance(node, dict):
                return None
            node = node.get(p)
        return node


def _unit_word(unit: str | None) -> str:
    """What one benchmark row is, for "N patients, M {unit}s" ("34 patients, 34 patients" would read as a typo)."""
    return {"patient": "patient-level row", None: "row"}.get(unit, unit)


def _pretrain_saw_evaluation_images(ctx: "Context") -> bool:
    """``pretrain.include_evaluation_patients``: the encoder was trained on the evaluation patients' images too."""
    return bool((ctx.section_cfg("pretrain") or {}).get("include_evaluation_patients"))


def _no_evaluation_patients(ctx: "Context") -> bool:
    """No patient was designated for evaluation: pretraining saw every benchmarked patient's images."""
    cases = ctx.run.table("ingest/cases.parquet")
    if cases is None or "is_evaluation" not in cases:
        return False
    return not cases["is_evaluation"].astype(bool).any()


NO_HOLDOUT = ("no patient was designated as an evaluation patient (data.evaluation_patients / data.holdout_fraction), so "
              "pretraining used every patient's images and the benchmark evaluates patients the encoder was trained on; "
              "their labels were never used, but learned features may look better than on new patients")


def fig(figure, caption: str | Markup, alt: str) -> Figure:
    return Figure(plots.to_data_uri(figure), caption, alt)


def plain(value, spec: str = ".3g") -> str:
    return format_number(value, spec)


def numeric(s: pd.Series) -> pd.Series:
    """Outcome columns arrive as strings from the manifest ("1.0", "201.3"); empty -> NaN."""
    return pd.to_numeric(s, errors="coerce")


def table_from_frame(df: pd.DataFrame, caption: str | Markup = "", max_rows: int | None = None, digits: int = 3,
                     wide: tuple[str, ...] = (), collapsed: bool = False) -> Table:
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
    return Table([str(c) for c in df.columns], rows, caption, numeric=numeric_cols, wide=[c in wide for c in df.columns],
                 collapsed=collapsed)


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
        "{} patients are evaluation patients (used for the benchmark; {}). "
        "Modalities (patients per modality): {}."
    ).format(
        k.put("data.lesions", n_lesions, "int"), k.put("data.patients", n_patients, "int"),
        k.put("data.multi_lesion_patients", int((per_patient > 1).sum()), "int"),
        k.put("data.evaluation_patients", n_eval, "int"),
        "their images, without labels, were also used for pretraining" if _pretrain_saw_evaluation_images(ctx)
        else ("none held out of pretraining" if n_eval == 0 else "held out of pretraining"),
        Markup(", ").join(Markup("{} {}").format(m, k.put(f"data.modality.{key_segment(m)}", n, "int")) for m, n in mods.items()),
    )))

    sec.add(*oracle_blocks(ctx))

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
                plain(t[known].median(), ".4g"), plain(t[known].min(), ".4g"), plain(t[known].max(), ".4g")))
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
                                max_rows=ctx.max_rows, wide=("message",)))
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
            "Sources: {}; evaluation patients {}.").format(
            {"dae": "denoising autoencoder", "vae": f"β-VAE (β = {mcfg.get('beta')})"}.get(mcfg.get("kind"), mcfg.get("kind")),
            mcfg.get("channels"), mcfg.get("strides"), mcfg.get("latent_dim"), mcfg.get("latent_mode"),
            pcfg.get("steps"), pcfg.get("batch_size"), plain(pcfg.get("lr"), "g"), pcfg.get("loss"),
            _noise_text(ncfg.get("kind"), (summ or {}).get("noise_models")),
            *(plain(v, "g") for v in (ncfg.get("sigma") or [None, None])),
            ", ".join(pcfg.get("sources") or []),
            "were included in pretraining" if pcfg.get("include_evaluation_patients")
            else ("were not designated, so every patient's images were used in pretraining" if _no_evaluation_patients(ctx)
                  else "were excluded from pretraining"))))
    if _no_evaluation_patients(ctx):
        sec.add(Note("Warning: " + NO_HOLDOUT + "."))
    if summ is not None:
        sec.add(*pretrain_summary_blocks(ctx, summ))
    sec.add(*diagnostics_blocks(ctx))
    if metrics is None:
        sec.missing("loss curves", run.why("pretrain/metrics.csv"))
    else:
        sec.add(*training_curve_blocks(metrics, summ or {}))
    if previews:
        shown = previews if len(previews) <= 3 else [previews[0], *previews[-2:]]
        for rel in shown:
            png = run.binary(rel)
            if png is not None:
                step = Path(rel).stem.removeprefix("step_").lstrip("0") or "0"
                sec.add(Figure(plots.to_data_uri(png), Markup(
                    "Reconstruction example at step {}: central axial, coronal and sagittal slices (rows) of one validation ROI; "
                    "columns: clean input, noisy input, reconstruction (one grey-level window of the modality: CT soft tissue, "
                    "MR 1st-99th percentile, PET 0 to the 99.5th percentile) and the absolute error. {} preview(s) "
                    "in pretrain/previews/.").format(step, len(previews)), f"reconstruction preview at step {step}"))
    else:
        sec.add(Note("No reconstruction previews were found in pretrain/previews/."))
    return sec


def _noise_text(kind: str | None, used: dict | None) -> str:
    """"auto (gaussian for 14 items)" - the configured noise kind and what it resolved to per modality."""
    if not used:
        return str(kind)
    detail = ", ".join(f"{k} for {n} items" for k, n in used.items())
    return f"{kind} ({detail})"


def pretrain_summary_blocks(ctx: Context, summ: dict) -> list:
    """Training facts and the denoising PSNR gain on the validation patients (pretrain/summary.json)."""
    k = ctx.keys
    out = [Paragraph(Markup(
        "{} parameters; {} of {} planned steps done ({} epochs{}) on {} with {} training items from {} patient(s); "
        "validation: {} items from {} patient(s). Evaluation patients excluded from pretraining: {}. Weights kept: {}.").format(
        k.put("pretrain.n_params", summ.get("n_params"), "int"), k.put("pretrain.steps_done", summ.get("steps_done"), "int"),
        plain(summ.get("steps_planned"), "int"), plain(summ.get("epochs"), ".3g"),
        ", stopped early" if summ.get("stopped_early") else "", summ.get("device", "n/a"),
        plain(summ.get("train_items"), "int"), plain(summ.get("train_patients"), "int"),
        plain(summ.get("val_items"), "int"), plain(summ.get("val_patients"), "int"),
        plain(summ.get("excluded_evaluation_patients"), "int"), summ.get("weights", "n/a")))]
    if summ.get("val_psnr_recon_db") is not None:
        out.append(Paragraph(Markup(
            "Denoising on the validation patients: PSNR of the noisy input {} dB, of the reconstruction {} dB — a gain of {} dB "
            "(final validation loss {}; training loss {}).").format(
            k.put("pretrain.val_psnr_noisy_db", summ.get("val_psnr_noisy_db"), ".2f"),
            k.put("pretrain.val_psnr_recon_db", summ.get("val_psnr_recon_db"), ".2f"),
            k.put("pretrain.val_psnr_gain_db", summ.get("val_psnr_gain_db"), ".2f"),
            k.put("pretrain.final_val_loss", summ.get("final_val_loss"), ".4g"),
            k.put("pretrain.final_train_loss", summ.get("final_train_loss"), ".4g"))))
    else:
        out.append(Note("Not available: denoising PSNR — there was no validation split (pretrain.val_fraction is 0 or only one "
                        "patient), so no held-out PSNR was measured."))
    if summ.get("patches_per_s") is not None:
        out.append(Paragraph(Markup("Throughput {} patches/s; fraction of training time spent waiting for data {}.").format(
            plain(summ.get("patches_per_s"), ".3g"), plain(summ.get("data_wait_fraction"), ".2f"))))
    return out


def training_curve_blocks(metrics: pd.DataFrame, summ: dict) -> list:
    """Loss per step (train and validation) and the validation PSNR of noisy vs reconstructed input."""
    if metrics.empty or "step" not in metrics:
        return [Note("Not available: loss curves — pretrain/metrics.csv has no rows.")]
    split = metrics["split"].astype(str) if "split" in metrics else pd.Series("train", index=metrics.index)
    series = {}
    for part, cols in (("train", ("loss", "recon", "kl", "sparse")), ("val", ("loss",))):
        rows = metrics[split == part]
        for col in cols:
            if col not in rows:
                continue
            v = pd.to_numeric(rows[col], errors="coerce")
            same_as_total = col == "recon" and np.allclose(v.to_numpy(float), pd.to_numeric(rows["loss"], errors="coerce").to_numpy(float),
                                                           equal_nan=True)
            if v.notna().any() and not same_as_total and not (col in ("kl", "sparse") and (v.fillna(0) == 0).all()):
                name = f"{part} {'total loss' if col == 'loss' else col}"
                series[name] = (rows["step"].to_numpy(float)[v.notna()], v.dropna().to_numpy(float))
    out = []
    if series:
        out.append(fig(plots.loss_curves(series, xlabel="optimizer step"),
                       f"Loss per logged step (train: window means; val: clean-target reconstruction loss on the "
                       f"{plain(summ.get('val_items'), 'int')} validation items).", "training and validation loss curves"))
    val = metrics[split == "val"]
    if {"psnr_noisy", "psnr_recon"} <= set(val.columns) and pd.to_numeric(val["psnr_recon"], errors="coerce").notna().any():
        x = val["step"].to_numpy(float)
        out.append(fig(plots.lines_by_group(
            {"noisy input": (x, pd.to_numeric(val["psnr_noisy"], errors="coerce").to_numpy(float)),
             "reconstruction": (x, pd.to_numeric(val["psnr_recon"], errors="coerce").to_numpy(float))},
            "optimizer step", "PSNR vs clean input (dB)", "Denoising on validation patients", ylim=None, reference=None),
            "PSNR of the corrupted input and of its reconstruction against the clean ROI, at each validation step. "
            "The gap is the denoising gain.", "validation PSNR of noisy input and reconstruction"))
    return out


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
    sec.add(Paragraph(Markup("{} rows × {} latent dimensions (standardised). The first two principal components explain {} "
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
    coloured = []
    for label, kind, values in colourings:
        c = None if values is None else rows["patient_id"].astype(str).map(values.rename(index=str)).to_numpy(object)
        if c is not None:
            c = np.array([None if v != v else int(v) if float(v).is_integer() else v for v in c], dtype=object)
            coloured.append((label, c))
        title = f"PCA of latent features{'' if label is None else ' coloured by ' + label}"
        sec.add(fig(plots.scatter_2d(scores, c, kind, label or "", f"PC1 ({var[0]:.1%} of variance)",
                                     f"PC2 ({var[1]:.1%} of variance)", title),
                    f"One point per row of latent.parquet (n = {len(rows)}); grey points have no outcome (e.g. unlabeled pretraining "
                    f"patients). PCA is unsupervised and linear: the outcome only colours the points, and distances keep their meaning "
                    f"(UMAP, when umap-learn is installed, is drawn below).",
                    title))
    from radae.report.latent_views import view_blocks

    sec.add(*view_blocks(ctx, rows, X, coloured, int(ctx.cfg.get("seed") or 0)))
    return sec


# ============================================================================= feature tables
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
        n_lat = sum(str(c).startswith("latent_") for c in lat.columns)
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


# ============================================================================= downstream results
CLS_METRICS = (("auc", "AUC"), ("balanced_accuracy", "balanced accuracy"), ("brier", "Brier score"),
               ("calibration_slope", "calibration slope"), ("calibration_intercept", "calibration intercept"))
SURV_METRICS = (("harrell_c", "Harrell's C"), ("uno_c", "Uno's C"), ("td_auc_mean", "mean td-AUC"), ("ibs", "integrated Brier"))


def _ci(ctx: Context, key: str, entry: dict | None, est: str = "mean", fmt: str = ".3f") -> Markup:
    """``0.812 [0.701, 0.901]`` with all three numbers as key spans (n/a when the entry is missing)."""
    entry = entry or {}
    k = ctx.keys
    return Markup("{} [{}, {}]").format(k.put(f"{key}.{est}", entry.get(est), fmt), k.put(f"{key}.ci_low", entry.get("ci_low"), fmt),
                                        k.put(f"{key}.ci_high", entry.get("ci_high"), fmt))


def _first(d: dict | None):
    return next(iter(d.items())) if d else (None, None)


def downstream_section(ctx: Context) -> Section:
    sec = Section("downstream", "Downstream results: learned vs handcrafted features")
    run = ctx.run
    summ = run.json("benchmark/summary.json")
    if summ is None:
        sec.available = False
        return sec.missing("downstream results", run.why("benchmark/summary.json") or "the benchmark stage did not run")
    cvc = summ.get("cv") or {}
    fsets = summ.get("feature_sets") or {}
    k = ctx.keys
    sec.add(Paragraph(Markup(
        "Cohort: {} ({} {}s from {} patients). Every feature set is evaluated on the same rows and the same folds: {}-fold "
        "cross-validation grouped by patient, repeated {} times, with a nested {}-fold search of hyperparameters; imputation, "
        "filtering (|r| ≥ {} dropped), scaling and selection ({}, up to {} features) are fitted inside each training fold. "
        "Intervals: fold-mean metrics with the {} corrected t interval; pooled out-of-fold metrics with a "
        "{}-replicate patient bootstrap. One paired test per pair of sets; the pre-specified primary family is adjusted "
        "alone ({}), every other pair is exploratory (Benjamini–Hochberg).").format(
        ("evaluation patients only (their images, not their labels, were used in pretraining)"
         if _pretrain_saw_evaluation_images(ctx)
         else "evaluation patients only (never seen in pretraining)") if summ.get("cohort") == "evaluation_patients"
        else "the development cohort only (see External validation)" if summ.get("cohort") == "external_development" else "all patients (" + NO_HOLDOUT + ")",
        k.put("benchmark.n_rows", summ.get("n_rows"), "int"), _unit_word(summ.get("unit")),
        k.put("benchmark.n_patients", summ.get("n_patients"), "int"), cvc.get("folds"), cvc.get("repeats"), cvc.get("inner_folds"),
        cvc.get("correlation_threshold"), cvc.get("selection"), cvc.get("max_features"),
        {"calibrated": "calibrated-df (K − 1, Bouckaert 2003)", "nadeau_bengio": "Nadeau–Bengio"}.get(
            cvc.get("interval"), "Nadeau–Bengio"), cvc.get("bootstrap"),
        {"holm": "Holm", "bh": "Benjamini–Hochberg"}.get(cvc.get("adjust"), cvc.get("adjust") or "n/a"))))
    if fsets:
        sec.add(Table(["feature set", "input features", "preprocessing"],
                      [[n, k.put(f"benchmark.feature_sets.{key_segment(n)}.n_features", v.get("n_features"), "int"),
                        v.get("preprocessing", "")] for n, v in fsets.items()],
                      "Feature sets compared (volume, voxel PCA and clinical are baselines that expose weak signatures).",
                      numeric=[False, True, False]))
    preds = run.table("benchmark/predictions.parquet")
    comps = run.table("benchmark/comparisons.csv")
    if summ.get("classification"):
        sec.add(*classification_blocks(ctx, summ["classification"], preds, comps, cvc.get("adjust")))
    else:
        sec.add(Heading("Classification"), Note("No classification task in this run (benchmark.classification is not set)."))
    if summ.get("survival"):
        sec.add(*survival_blocks(ctx, summ["survival"], comps, cvc.get("adjust")))
    else:
        sec.add(Heading("Survival"), Note("No survival task in this run (benchmark.survival is not set, or it was refused)."))
    sec.add(*pretraining_effect_blocks(ctx))
    return sec


def _result_rows(ctx: Context, task: str, results: dict, metrics, main: str) -> tuple[list, list]:
    rows, forest = [], []
    for fset, per_model in results.items():
        for model, entry in per_model.items():
            base = f"{task}.{key_segment(fset)}.{key_segment(model)}"
            row = [fset, model]
            for m, _label in metrics:
                row.append(_ci(ctx, f"{base}.{m}", entry.get(m)))
            pooled = entry.get(f"{main}_pooled") or {}
            row.append(_ci(ctx, f"{base}.{main}_pooled", pooled, est="estimate"))
            if task == "survival":
                row.append(ctx.keys.put(f"{base}.logrank_p", entry.get("logrank_p"), ".3g"))
            rows.append(row)
            e = entry.get(main) or {}
            forest.append((f"{fset} / {model}", *(float(e.get(x)) if e.get(x) is not None else np.nan for x in ("mean", "ci_low", "ci_high"))))
    return rows, forest


def _control_rows(ctx: Context, task: str, control: dict, main: str) -> tuple[list, list]:
    rows, forest = [], []
    for fset, per_model in (control or {}).items():
        for model, entry in per_model.items():
            e = entry.get(main) or {}
            rows.append([fset, model, _ci(ctx, f"{task}.shuffled_control.{key_segment(fset)}.{key_segment(model)}.{main}", e)])
            forest.append((f"shuffled labels: {fset}", *(float(e.get(x)) if e.get(x) is not None else np.nan for x in ("mean", "ci_low", "ci_high"))))
    return rows, forest


def _fold_blocks(ctx: Context, task: str, metric: str, label: str) -> list:
    """Per-fold values of the main metric (cv_results.parquet): the spread behind the means."""
    cvres = ctx.run.table("benchmark/cv_results.parquet")
    if cvres is None:
        return [Note(f"Not available: per-fold results — {ctx.run.why('benchmark/cv_results.parquet')}.")]
    c = cvres[(cvres["task"] == task) & (cvres["metric"] == metric) & (cvres["fold"] >= 0)]
    if c.empty:
        return []
    groups = {}
    for (fset, model, control), g in c.groupby(["feature_set", "model", "control"], sort=False):
        one_model = c["model"].nunique() == 1
        groups[f"{'shuffled: ' if control else ''}{fset}" + ("" if one_model else f"\n{model}")] = g["value"].to_numpy(float)
    n_test = int(c["n_test"].median())
    return [fig(plots.strip_by_group(groups, f"{label} per outer test fold", f"{label} per fold", ylim=(0.0, 1.0), reference=0.5),
                f"One point per outer test fold and repeat (median {n_test} rows per test fold); boxes: quartiles.",
                f"{label} per fold")]


def _comparison_table(ctx: Context, comps: pd.DataFrame | None, task: str, adjust: str | None) -> list:
    if comps is None:
        return [Note(f"Not available: pairwise comparisons — {ctx.run.why('benchmark/comparisons.csv')}.")]
    c = comps[comps["task"] == task] if "task" in comps else comps.iloc[:0]
    if c.empty:
        return [Note("No pairwise comparisons (fewer than two feature sets).")]
    adj_col = "p_adjusted" if "p_adjusted" in c else ("p_holm" if adjust == "holm" else "p_bh")
    if "role" in c:  # the primary family shown, the exploratory pairs collapsed
        out = []
        for role, collapsed in (("primary", False), ("exploratory", True)):
            part = c[c["role"] == role]
            if len(part):
                out += _comparison_rows_table(ctx, part, task, adj_col, role, collapsed)
        return out
    return _comparison_rows_table(ctx, c, task, adj_col, "", False)


TEST_NAMES = {"corrected_t": "corrected t (folds)", "corrected_t_nadeau_bengio": "corrected t, Nadeau–Bengio (folds)",
              "corrected_t_calibrated": "corrected t, calibrated df (folds)",
              "patient_bootstrap": "patient bootstrap (identical fold differences)", "delong": "DeLong (pooled)"}


def _comparison_rows_table(ctx: Context, c: pd.DataFrame, task: str, adj_col: str, role: str, collapsed: bool) -> list:
    rows = []
    k = ctx.keys
    for r in c.itertuples(index=False):
        key = f"comparisons.{task}.{key_segment(r.model)}.{key_segment(r.test)}.{key_segment(r.set_a)}__vs__{key_segment(r.set_b)}"
        ci = "" if pd.isna(r.ci_low) else f"[{plain(r.ci_low, '.3f')}, {plain(r.ci_high, '.3f')}]"
        rows.append([f"{r.set_a} vs {r.set_b}", r.model, TEST_NAMES.get(r.test, r.test),
                     Markup("{} − {} = {} {}").format(plain(r.estimate_a, ".3f"), plain(r.estimate_b, ".3f"),
                                                      k.put(f"{key}.diff", r.diff, ".3f"), ci),
                     k.put(f"{key}.p_raw", r.p_raw, ".3g"), k.put(f"{key}.p_adjusted", getattr(r, adj_col), ".3g"),
                     "yes" if str(r.significant).lower() in ("true", "1") else "no"])
    caption = {"primary": "Primary comparison (pre-specified by benchmark.primary, plus the best learned-feature set; adjusted "
                          "within this family): paired corrected t-test of the fold-wise differences of the metric.",
               "exploratory": f"Exploratory comparisons: all other pairs ({len(rows)}), Benjamini–Hochberg adjusted; "
                              "hypothesis-generating only (click to expand)."}.get(role, "Paired comparisons of feature sets on the same folds.")
    return [Table(["comparison", "model", "test", "estimate a − b = difference [95% CI]", "p", "p adjusted", "significant"],
                  rows, caption, numeric=[False, False, False, False, True, True, False], collapsed=collapsed)]


def classification_blocks(ctx: Context, cls: dict, preds: pd.DataFrame | None, comps: pd.DataFrame | None,
                          adjust: str | None) -> list:
    k = ctx.keys
    label = cls.get("label")
    out: list = [Heading(f"Classification: {label}")]
    out.append(Paragraph(Markup("{} rows from {} patients; {} positive, {} negative.").format(
        k.put("classification.n_rows", cls.get("n_rows"), "int"), k.put("classification.n_patients", cls.get("n_patients"), "int"),
        k.put("classification.n_positive", cls.get("n_positive"), "int"), k.put("classification.n_negative", cls.get("n_negative"), "int"))))
    results = cls.get("results") or {}
    rows, forest = _result_rows(ctx, "classification", results, CLS_METRICS, "auc")
    cols = ["feature set", "model", *(f"{lab} mean [95% CI]" for _m, lab in CLS_METRICS), "pooled AUC [bootstrap 95% CI]"]
    out.append(Table(cols, rows, "Cross-validated classification metrics (mean over outer folds and repeats)."))
    crow, cforest = _control_rows(ctx, "classification", cls.get("shuffled_control"), "auc")
    if crow:
        out.append(Table(["feature set", "model", "AUC mean [95% CI]"], crow,
                         "Shuffled-label control: the same pipeline on outcomes permuted between patients. It should be near 0.5; "
                         "if it is not, something leaks."))
    if forest:
        out.append(fig(plots.estimate_with_ci(forest + cforest, "AUC (mean over folds, 95% CI)", "Discrimination by feature set"),
                       f"AUC with corrected-t 95% intervals; dashed line = chance. n = {cls.get('n_rows')} rows, "
                       f"{cls.get('n_positive')} positive.", "AUC with confidence intervals per feature set"))
    out += _fold_blocks(ctx, "classification", "auc", "AUC")
    out += _comparison_table(ctx, comps, "classification", adjust)
    if preds is None:
        out.append(Note(f"Not available: ROC and calibration curves — {ctx.run.why('benchmark/predictions.parquet')}."))
        return out
    p = preds[(preds["task"] == "classification") & (~preds["control"].astype(bool)) & (preds["repeat"] == preds["repeat"].min())]
    model = next(iter(p["model"].unique()), None) if len(p) else None
    p = p[p["model"] == model]
    if p.empty:
        out.append(Note("Not available: ROC and calibration curves — predictions.parquet has no classification rows."))
        return out
    from sklearn.metrics import roc_curve

    from radae.evaluate.stats import auc_score

    rocs, cals = {}, {}
    prim = [x for pr in ((cls.get("primary") or {}).get("pairs") or []) for x in (pr["set_a"], pr["set_b"])]
    shown = list(dict.fromkeys(prim)) or list(p["feature_set"].unique())  # the primary sets; the rest are in predictions.parquet
    for fset, g in p.groupby("feature_set", sort=False):
        if fset not in shown:
            continue
        y, s = g["label"].to_numpy(float), g["score"].to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(s)
        y, s = y[ok], s[ok]
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        rocs[f"{fset} (AUC {auc_score(y, s):.3f}, n = {len(y)})"] = (fpr, tpr)
        n_bins = int(max(3, min(10, len(y) // 10)))
        edges = np.unique(np.quantile(s, np.linspace(0, 1, n_bins + 1)))
        idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
        pred = np.array([s[idx == b].mean() for b in range(len(edges) - 1) if (idx == b).any()])
        obs = np.array([y[idx == b].mean() for b in range(len(edges) - 1) if (idx == b).any()])
        cnt = np.array([(idx == b).sum() for b in range(len(edges) - 1) if (idx == b).any()])
        ent = ((results.get(fset) or {}).get(model) or {})
        slope, icpt = ((ent.get(m) or {}).get("mean") for m in ("calibration_slope", "calibration_intercept"))
        cals[f"{fset}: slope {plain(slope, '.2f')}, intercept {plain(icpt, '.2f')} ({len(cnt)} bins)"] = (pred, obs, cnt)
    out.append(fig(plots.roc_curves(rocs, f"ROC, pooled out-of-fold predictions ({model}, first repeat)"),
                   "Each curve pools the out-of-fold predictions of one repeat, so every row is predicted once by a model "
                   "that never saw it. The AUC in the legend (this repeat only) differs from the fold mean and from the pooled "
                   "AUC in the table (mean prediction over repeats).", "ROC curves"))
    out.append(fig(plots.calibration_curves(cals, f"Calibration, pooled out-of-fold predictions ({model})"),
                   "Observed fraction of positives against the mean predicted probability in quantile bins of the prediction "
                   "(marker area ~ rows in the bin); the dashed diagonal is perfect calibration. Legend: calibration slope "
                   "(ideal 1) and intercept (ideal 0), fold means. Shown: the primary comparison's sets ("
                   + ", ".join(shown) + "); every set's out-of-fold predictions are in benchmark/predictions.parquet.",
                   "calibration curves"))
    return out


def survival_blocks(ctx: Context, sv: dict, comps: pd.DataFrame | None, adjust: str | None) -> list:
    k = ctx.keys
    out: list = [Heading(f"Survival: {sv.get('time')} / {sv.get('event')}")]
    horizons = sv.get("horizons") or []
    out.append(Paragraph(Markup("{} rows from {} patients with {} events. Time-dependent AUC at horizons {}; integrated Brier "
                                "score over {}.").format(
        k.put("survival.n_rows", sv.get("n_rows"), "int"), k.put("survival.n_patients", sv.get("n_patients"), "int"),
        k.put("survival.n_events", sv.get("n_events"), "int"), ", ".join(plain(h, ".4g") for h in horizons) or "n/a",
        " – ".join(plain(x, ".4g") for x in (sv.get("ibs_window") or [])) or "n/a")))
    results = sv.get("results") or {}
    rows, forest = _result_rows(ctx, "survival", results, SURV_METRICS, "harrell_c")
    cols = ["feature set", "model", *(f"{lab} mean [95% CI]" for _m, lab in SURV_METRICS), "pooled Harrell's C [bootstrap 95% CI]",
            "log-rank p (risk groups)"]
    out.append(Table(cols, rows, "Cross-validated survival metrics (mean over outer folds and repeats). Risk groups: above/below "
                     "the training-fold median risk."))
    crow, cforest = _control_rows(ctx, "survival", sv.get("shuffled_control"), "harrell_c")
    if crow:
        out.append(Table(["feature set", "model", "Harrell's C mean [95% CI]"], crow,
                         "Shuffled-outcome control (should be near 0.5)."))
    if forest:
        out.append(fig(plots.estimate_with_ci(forest + cforest, "Harrell's C (mean over folds, 95% CI)", "Concordance by feature set"),
                       f"C-index with corrected-t 95% intervals; dashed line = chance. n = {sv.get('n_rows')} rows, "
                       f"{sv.get('n_events')} events.", "C-index with confidence intervals per feature set"))
    out += _fold_blocks(ctx, "survival", "harrell_c", "Harrell's C")
    td = {}
    for fset, per_model in results.items():
        model, entry = _first(per_model)
        hs = sorted((float(m.split("@", 1)[1]), v.get("mean")) for m, v in (entry or {}).items() if m.startswith("td_auc@"))
        if hs:
            td[f"{fset} / {model}"] = (np.array([h for h, _ in hs]), np.array([np.nan if v is None else v for _, v in hs], dtype=float))
    if td:
        out.append(fig(plots.lines_by_group(td, f"horizon ({sv.get('time')})", "time-dependent AUC (mean over folds)",
                                            "Time-dependent AUC (cumulative/dynamic)"),
                       "Uno's cumulative/dynamic AUC at each horizon, mean over outer folds; dashed line = chance.",
                       "time-dependent AUC per horizon"))
    km = ctx.run.table("benchmark/km.parquet")
    if km is None or km.empty:
        out.append(Note(f"Not available: Kaplan–Meier curves — {ctx.run.why('benchmark/km.parquet') or 'km.parquet has no rows'}."))
    else:
        panels = {}
        for (fset, model), g in km.groupby(["feature_set", "model"], sort=False):
            p = ((results.get(fset) or {}).get(model) or {}).get("logrank_p")
            groups = {}
            for grp, gg in g.groupby("group", sort=True):
                gg = gg.sort_values("time")
                groups[str(grp)] = (gg["time"].to_numpy(float), gg["survival"].to_numpy(float), gg["ci_lower"].to_numpy(float),
                                    gg["ci_upper"].to_numpy(float), int(gg["at_risk"].max()) if gg["at_risk"].notna().any() else 0)
            panels[f"{fset} / {model}: log-rank p = {plain(p, '.3g')}"] = groups
        out.append(fig(plots.km_panels(panels, sv.get("time") or "time", "Kaplan–Meier curves of out-of-fold risk groups"),
                       "Patients split at the training-fold median of the predicted risk (first repeat, out-of-fold; a "
                       "patient with several lesions counts once, in the group most of its lesions fall in), with 95% "
                       "confidence bands; n = patients at risk at time 0.", "Kaplan-Meier curves"))
        nar = glance.numbers_at_risk_table(km, sv.get("time") or "time")
        if nar is not None:
            out.append(nar)
    out += _comparison_table(ctx, comps, "survival", adjust)
    return out


def _skip_reason(ctx: Context, part: str) -> str:
    """Why the benchmark skipped robustness/redundancy, as it recorded in its summary.json ("" if it did not)."""
    info = (ctx.run.json("benchmark/summary.json") or {}).get(part) or {}
    if info.get("status") == "skipped":
        return f"the benchmark skipped it: {info.get('reason') or 'no reason given'}"
    return ""


def robustness_section(ctx: Context) -> Section:
    sec = Section("robustness", "Robustness of features (ICC under perturbation)")
    rob = ctx.run.table("benchmark/robustness.parquet")
    rcfg = ctx.section_cfg("benchmark", "robustness") or {}
    if rob is None:
        sec.available = False
        return sec.missing("feature robustness", _skip_reason(ctx, "robustness") or ctx.run.why("benchmark/robustness.parquet")
                           or "the benchmark stage did not run")
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
    sec.add(table_from_frame(worst[[c for c in ("feature_set", "feature", "icc", "icc_ci_low", "icc_ci_high", "n_lesions")
                                    if c in worst]], "Least robust features (ICC with its 95% interval)"))
    from radae.report.robustness_views import robustness_extra_blocks

    sec.add(*robustness_extra_blocks(ctx))
    return sec


def redundancy_section(ctx: Context) -> Section:
    sec = Section("redundancy", "Redundancy: learned vs handcrafted features")
    red = ctx.run.table("benchmark/redundancy.parquet")
    if red is None or red.empty:
        sec.available = False
        return sec.missing("the redundancy analysis", _skip_reason(ctx, "redundancy") or ctx.run.why("benchmark/redundancy.parquet")
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
    sec.add(table_from_frame(top, "Latent dimensions with the strongest handcrafted twin (up to ten)"))
    return sec


def ibsi_section(ctx: Context) -> Section:
    sec = Section("ibsi", "IBSI compliance of the handcrafted features")
    tab = ctx.run.table("extract/ibsi_compliance.csv")
    if tab is None or tab.empty:
        sec.available = False
        return sec.missing("the IBSI compliance table", ctx.run.why("extract/ibsi_compliance.csv") or "the table has no rows")
    if not {"dataset", "status"} <= set(tab.columns):
        sec.add(Note("extract/ibsi_compliance.csv has no dataset/status columns; shown as is."))
        sec.add(table_from_frame(tab, "IBSI compliance table", max_rows=ctx.max_rows, digits=6))
        return sec
    k = ctx.keys
    status = tab["status"].astype(str)
    compared = status.isin(["match", "mismatch"])
    n_match = int((status == "match").sum())
    sec.add(Paragraph(Markup(
        "PyRadiomics, run through radae's own wrapper, against the IBSI 1 consensus reference values (digital phantom and "
        "CT phantom configurations): {} of {} features with a reference and a PyRadiomics counterpart match within the "
        "IBSI tolerance; {} do not, each with the reason below. Rows marked not_in_pyradiomics / not_configurable are IBSI "
        "features or settings PyRadiomics cannot produce.").format(
        k.put("ibsi.match", n_match, "int"), k.put("ibsi.compared", int(compared.sum()), "int"),
        k.put("ibsi.mismatch", int((status == "mismatch").sum()), "int"))))
    counts = pd.crosstab(tab["dataset"].astype(str), status).reset_index()
    counts.columns.name = None
    sec.add(table_from_frame(counts, "Features per IBSI dataset/configuration and outcome of the comparison."))
    mism = tab.loc[status == "mismatch"]
    mism = pd.DataFrame({
        "dataset": mism["dataset"], "IBSI feature": mism.get("ibsi_feature"),
        "PyRadiomics feature": mism.get("pyradiomics_feature", pd.Series("", index=mism.index)).astype(str).str.replace("original_", "", regex=False),
        "reference ± tolerance": [f"{plain(r, '.6g')} ± {plain(t, '.3g')}" for r, t in zip(mism.get("reference"), mism.get("tolerance"))],
        "radae": mism.get("value"), "reason": mism.get("reason")})
    if len(mism):  # one row per reason (a sentence each), the per-feature list behind a toggle
        reasons = mism.assign(reason=mism["reason"].fillna("no reason recorded").astype(str)).groupby("reason", sort=False).agg(
            features=("PyRadiomics feature", lambda v: ", ".join(list(dict.fromkeys(v))[:4]) + (" …" if v.nunique() > 4 else "")),
            n=("PyRadiomics feature", "size"), datasets=("dataset", lambda v: ", ".join(sorted(set(map(str, v))))))
        reasons = reasons.reset_index()[["reason", "n", "datasets", "features"]].rename(
            columns={"n": "mismatches", "features": "for example"})
        sec.add(table_from_frame(reasons, "Why features differ from the IBSI reference: one sentence per reason.", wide=("reason",)))
        sec.add(table_from_frame(mism, "Every feature that differs (click to expand).", max_rows=ctx.max_rows, digits=6,
                                 wide=("reason",), collapsed=True))
    version = tab["pyradiomics_version"].dropna().astype(str).unique() if "pyradiomics_version" in tab else []
    sec.add(Paragraph(f"Full table (naming map PyRadiomics → IBSI, values, tolerances): extract/ibsi_compliance.csv, "
                      f"{len(tab)} rows; PyRadiomics {', '.join(version) or 'version not recorded'}."))
    return sec


def summary_section(ctx: Context) -> Section:
    """What was compared and the headline in one sentence, with CIs (built after the result sections)."""
    sec = Section("summary", "Run summary")
    run = ctx.run
    cases = run.table("ingest/cases.parquet")
    bsum = run.json("benchmark/summary.json")
    k = ctx.keys
    if bsum is None:
        sec.add(Paragraph(Markup("No benchmark results in this run ({}), so there is no headline comparison. {}").format(
            run.why("benchmark/summary.json") or "the benchmark stage did not run",
            Markup("The run covers {} lesions from {} patients.").format(k.put("data.lesions", len(cases), "int"),
                                                                         k.put("data.patients", cases["patient_id"].nunique(), "int"))
            if cases is not None else "")))
    else:
        sentences = [s for s in (_headline(ctx, bsum, "classification"), _headline(ctx, bsum, "survival")) if s]
        if sentences:
            sec.add(Paragraph(Markup(" ").join(sentences)))
        else:
            sec.add(Paragraph("The benchmark ran but produced no task results (see the downstream section)."))
        comps = run.table("benchmark/comparisons.csv")
        for task in ("classification", "survival"):
            sec.add(*glance.primary_blocks(k, bsum, task, comps))
        sets = list((bsum.get("feature_sets") or {}).keys())
        cvc = bsum.get("cv") or {}
        tasks = []
        if bsum.get("classification"):
            tasks.append(f"classification of {bsum['classification'].get('label')}")
        if bsum.get("survival"):
            tasks.append(f"survival ({bsum['survival'].get('time')}, {bsum['survival'].get('event')})")
        sec.add(Paragraph(Markup("Compared: feature sets {} with {} for {}; {}-fold × {} patient-grouped nested cross-validation "
                                 "(seed {}).").format(", ".join(sets) or "none", ", ".join((cvc.get("models") or []) + (cvc.get("survival_models") or [])) or "n/a",
                                                      " and ".join(tasks) or "no task", cvc.get("folds"), cvc.get("repeats"), cvc.get("seed"))))
        if bsum.get("headline"):
            sec.add(Paragraph(Markup("Benchmark stage's own one-line summary: <em>{}</em>").format(bsum["headline"])))
    stages = []
    for name in ("ingest", "preprocess", "pretrain", "extract", "benchmark"):
        meta = run.stage_meta(name) or {}
        stages.append(f"{name}: {meta.get('status', 'not run')}")
    sec.add(Paragraph("Stages: " + "; ".join(stages) + "."))
    return sec


def _headline(ctx: Context, bsum: dict, task: str) -> Markup | None:
    """"On N patients, learned features reached AUC m [lo, hi] vs handcrafted m [lo, hi] (adjusted p = x)."""
    t = bsum.get(task)
    if not t or not t.get("results"):
        return None
    main, label = ("auc", "AUC") if task == "classification" else ("harrell_c", "Harrell's C")
    results = t["results"]
    pair = [s for s in ("learned", "handcrafted") if s in results]
    if len(pair) < 2:  # no learned-vs-handcrafted pair: the best set against the first other one
        best = (t.get("best") or {}).get("feature_set")
        pair = [best] + [s for s in results if s != best][:1] if best in results else list(results)[:2]
    model = _first(results[pair[0]])[0]
    k = ctx.keys
    parts = []
    for i, fset in enumerate(pair):
        entry = ((results.get(fset) or {}).get(model) or {}).get(main) or {}
        key = f"{task}.{key_segment(fset)}.{key_segment(model)}.{main}"
        parts.append(Markup("{} features {}{} (95% CI {}–{})").format(
            fset, f"{label} " if i == 0 else "", k.put(f"{key}.mean", entry.get("mean"), ".3f"),
            k.put(f"{key}.ci_low", entry.get("ci_low"), ".3f"), k.put(f"{key}.ci_high", entry.get("ci_high"), ".3f")))
    outcome = t.get("label") if task == "classification" else f"{t.get('time')} / {t.get('event')}"
    cvc = bsum.get("cv") or {}
    sentence = Markup("<strong>{}</strong> ({} patients, {} {}s; {}, {}-fold × {} cross-validation): {}").format(
        outcome, k.put(f"{task}.n_patients", t.get("n_patients"), "int"), k.put(f"{task}.n_rows", t.get("n_rows"), "int"),
        _unit_word(bsum.get("unit")), model, cvc.get("folds"), cvc.get("repeats"), Markup(" vs ").join(parts))
    comps = ctx.run.table("benchmark/comparisons.csv")
    adjust = (bsum.get("cv") or {}).get("adjust")
    if comps is not None and len(pair) == 2 and "task" in comps:
        c = comps[(comps["task"] == task) & (comps["model"] == model) & (comps["test"] != "delong")
                  & (((comps["set_a"] == pair[0]) & (comps["set_b"] == pair[1])) | ((comps["set_a"] == pair[1]) & (comps["set_b"] == pair[0])))]
        if len(c):
            r = c.iloc[0]
            key = f"comparisons.{task}.{key_segment(model)}.{key_segment(r['test'])}.{key_segment(r['set_a'])}__vs__{key_segment(r['set_b'])}"
            col = "p_adjusted" if "p_adjusted" in r else ("p_holm" if adjust == "holm" else "p_bh")
            sentence += Markup("; paired difference {} − {} = {} ({}-adjusted p = {})").format(
                r["set_a"], r["set_b"], k.put(f"{key}.diff", r["diff"], ".3f"), {"holm": "Holm", "bh": "BH"}.get(adjust, adjust),
                k.put(f"{key}.p_adjusted", r[col], ".3g"))
    ctrl = t.get("shuffled_control") or {}
    cset, cper = _first(ctrl)
    if cper:
        cmodel, centry = _first(cper)
        sentence += Markup("; shuffled-label control ({}) {}").format(cset,
            k.put(f"{task}.shuffled_control.{key_segment(cset)}.{key_segment(cmodel)}.{main}.mean", (centry.get(main) or {}).get("mean"), ".3f"))
    return sentence + Markup(".")
