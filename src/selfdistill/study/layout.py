"""The study directory: what a study writes where.

::

    DIR/study.yaml            the study file as given (what was asked)
    DIR/points/<point>/       one run directory per point, exactly as ``selfdistill run``
                              writes it (config.yaml, metrics.json, ..., report.html)
    DIR/study.json            every point's settings, metrics, findings and key comparisons
                              (rewritten after each point; ``complete`` false until the end)
    DIR/study.md, study.html  tables and plots (written at the end)
"""

from __future__ import annotations

__all__ = ["POINTS_DIR", "STUDY_FILE", "STUDY_HTML", "STUDY_JSON", "STUDY_MD"]

POINTS_DIR = "points"
STUDY_FILE = "study.yaml"
STUDY_JSON = "study.json"
STUDY_MD = "study.md"
STUDY_HTML = "study.html"
