"""Feature tables: learned latents and PyRadiomics features per lesion, with provenance and a data dictionary.

- :mod:`radae.features.handcrafted` - PyRadiomics' own ``RadiomicsFeatureExtractor`` from a parameter file, one lesion
  at a time (the function the process pool and Dask both run)
- :mod:`radae.features.latent` - the trained encoder's latent per ROI (batched, optional flip averaging)
- :mod:`radae.features.parallel` - serial / process pool / Dask execution of per-lesion tasks
- :mod:`radae.features.table` - column order, atomic Parquet + CSV writing, provenance, patient aggregation
- :mod:`radae.features.dictionary` - the data dictionary (family, image type, units, description per column)
- :mod:`radae.features.tasks` - the lesion index, one PyRadiomics task per lesion, resume keys and partial results
- :mod:`radae.features.provenance` - versions, settings hash, table and per-lesion provenance
- :mod:`radae.features.run` - the extract stage's body: run the extractors, write every table (streamed)
- :mod:`radae.features.ibsi` - IBSI 1 compliance table (``radae ibsi --out FILE``)
"""
