"""Report section "Reproducibility appendix": the rerun command, seeds, environment, hashes, config, stage keys."""
from __future__ import annotations

from markupsafe import Markup

from radae.report.blocks import Paragraph, Pre, Section, Table
from radae.report.sections.context import Context, plain
from radae.util.values import as_text


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
        f"{command} --force", f"radae report {run.run_dir}")))
    sec.add(Table(["seed", "value"], [[k, as_text(v)] for k, v in seeds.items()],
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
