"""The pipeline's stages, one module each (order: config.STAGES).

Importing a stage module registers it with radae.runner; :func:`radae.runner._ensure_stages_imported` imports all of
them. The package itself imports none, so ``from radae.stages import extract`` (``radae features``) does not pay for
the benchmark stage's scikit-learn imports.
"""
