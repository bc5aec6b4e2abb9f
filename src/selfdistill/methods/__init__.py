"""Methods: each composes losses with the one training loop and returns a Lineage.

``get_method(name)`` returns ``fit(data, cfg, *, seed, callbacks) -> Lineage``.
Methods register in :data:`METHODS`; add one with a single line below.
"""

from __future__ import annotations

from selfdistill.errors import ConfigError
from selfdistill.methods.base import Derived, Lineage, Member, Method, TrainData
from selfdistill.methods.baseline import fit_baseline, fit_label_smoothing, fit_majority
from selfdistill.methods.born_again import fit_born_again
from selfdistill.methods.byot import fit_byot
from selfdistill.methods.ema_teacher.pretraining import fit_ema_teacher
from selfdistill.methods.hmm import fit_hmm
from selfdistill.methods.lightgbm import fit_lightgbm
from selfdistill.methods.logistic import fit_logistic
from selfdistill.methods.snapshot import fit_snapshot

__all__ = ["METHODS", "Derived", "Lineage", "Member", "Method", "TrainData", "get_method"]

METHODS: dict[str, Method] = {
    "majority": fit_majority,
    "baseline": fit_baseline,
    "label_smoothing": fit_label_smoothing,
    "born_again": fit_born_again,
    "byot": fit_byot,
    "snapshot": fit_snapshot,
    "ema_teacher": fit_ema_teacher,
    "lightgbm": fit_lightgbm,
    "logistic": fit_logistic,
    "hmm": fit_hmm,
}


def get_method(name: str) -> Method:
    """The fit function of method ``name``."""
    if name not in METHODS:
        raise ConfigError(f"method '{name}' is not available; available: {', '.join(METHODS)}")
    return METHODS[name]
