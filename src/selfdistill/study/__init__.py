"""Studies: when does self-distillation help? A grid of ordinary runs, and its map.

::

    study.yaml (base run config + datasets x variants x grid)
      -> spec.load_study: every point's run config validated before anything runs
      -> runner.run_study: run_experiment per point (one run directory each, resumable)
      -> results: each point's metrics, findings and key comparisons from its metrics.json,
         plus one study-wide Benjamini-Hochberg family over the key comparisons
      -> render: study.json, study.md, study.html (self-contained, figures inline)

Reading a study file imports no torch (a config error answers at once); the runner's
names (``run_study``, ...) load on first use. ``selfdistill study STUDY.yaml`` is the
command; the shipped studies are in ``studies/`` and their results in docs/results.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selfdistill.study.layout import POINTS_DIR, STUDY_FILE, STUDY_HTML, STUDY_JSON, STUDY_MD
from selfdistill.study.spec import Point, Study, StudyConfig, load_study, parse_study

if TYPE_CHECKING:
    from selfdistill.study.runner import StudyCallback, StudyResult, point_finished, run_study

__all__ = [
    "POINTS_DIR",
    "STUDY_FILE",
    "STUDY_HTML",
    "STUDY_JSON",
    "STUDY_MD",
    "Point",
    "Study",
    "StudyCallback",
    "StudyConfig",
    "StudyResult",
    "load_study",
    "parse_study",
    "point_finished",
    "run_study",
]


_RUNNER = frozenset({"StudyCallback", "StudyResult", "point_finished", "run_study"})


def __getattr__(name: str) -> Any:
    """The runner's names, imported on first use (they pull in torch)."""
    if name in _RUNNER:
        from selfdistill.study import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'selfdistill.study' has no attribute '{name}'")
