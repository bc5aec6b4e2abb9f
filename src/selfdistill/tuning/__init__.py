"""Hyperparameter search with Optuna: ``selfdistill tune``.

- :mod:`selfdistill.tuning.space`: ``tune.space`` checked, sampled and applied to a config;
- :mod:`selfdistill.tuning.objective`: the validation score, from bars before the first
  test bar only (the leakage guarantee);
- :mod:`selfdistill.tuning.study`: the study (storage, pruning, parallel trial loops) and
  the final evaluation of the best point, test read once (:func:`run_tune`);
- :mod:`selfdistill.tuning.summary`: ``tune.json`` (history, importances, the warning).

Importing this package imports neither Optuna nor torch; the modules that need them do.
"""

from __future__ import annotations

__all__: list[str] = []
