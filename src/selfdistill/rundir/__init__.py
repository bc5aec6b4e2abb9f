"""The run directory: its layout, the one writer, and the readers.

- :mod:`~selfdistill.rundir.layout`: the file names, creating the directory;
- :mod:`~selfdistill.rundir.write`: :func:`write_run` and :func:`save_lineage_models`;
- :mod:`~selfdistill.rundir.read`: metrics, predictions, backtest series, prices.

Nothing is imported here: the readers stay light (no config, no model files).
"""
