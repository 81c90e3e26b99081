"""Report section "Pretraining": the autoencoder, its training facts, diagnostics, loss curves and previews."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from radae.report import plots
from radae.report.blocks import Figure, Note, Paragraph, Section
from radae.report.learned_checks import diagnostics_blocks
from radae.report.sections.context import NO_HOLDOUT, Context, fig, no_evaluation_patients, plain


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
            else ("were not designated, so every patient's images were used in pretraining" if no_evaluation_patients(ctx)
                  else "were excluded from pretraining"))))
    if no_evaluation_patients(ctx):
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
