"""The pipeline's stages, one module each: read inputs through :mod:`radae.runfolder`, call the library, write outputs.

Each module has ``run(ctx)``; :data:`radae.runner.STAGE_REGISTRY` lists them in pipeline order with their upstream
stages and config sections. The package itself imports none, so ``from radae.stages import extract`` does not pay
for the benchmark stage's scikit-learn imports.
"""
