"""The report's sections, one module per section; :mod:`radae.report.build` puts them in page order.

Each section module has one public ``<name>_section(ctx)`` that reads the run folder through
``ctx.run`` and returns a :class:`~radae.report.blocks.Section`; :mod:`.context` holds what they share.
"""
