"""Running a study: one ordinary run per point, resumable, then study.json / .md / .html.

The directory is described in :mod:`selfdistill.study.layout`. Each point goes through
:func:`selfdistill.evaluation.run_experiment`, the code path of ``selfdistill run``. A
point is *finished* when its run directory holds metrics.json and no ``INCOMPLETE`` marker
(:mod:`selfdistill.rundir.lifecycle`); ``resume`` skips finished points, after checking
that each was run with the config the study asks for now. A point killed half-way (even
by ``kill -9``) left its directory marked INCOMPLETE with its finished fold x seed cells
(:mod:`selfdistill.evaluation.resume`): it continues from them; the other points run.
Points run one after another; ``workers`` processes share each point's cells.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from selfdistill.atomic import atomic_write_text
from selfdistill.config import RunConfig, parse_config
from selfdistill.errors import ConfigError, SelfDistillError
from selfdistill.evaluation.experiment import run_experiment
from selfdistill.rundir.cellcache import cached_cells
from selfdistill.rundir.layout import CONFIG_FILE, METRICS_FILE, TIMINGS_FILE
from selfdistill.rundir.lifecycle import incomplete_reason
from selfdistill.rundir.read import read_metrics
from selfdistill.study.layout import POINTS_DIR, STUDY_FILE, STUDY_JSON
from selfdistill.study.results import point_summary, study_summary
from selfdistill.study.spec import Point, Study
from selfdistill.training.callbacks import Callback, ExperimentCallback

__all__ = ["StudyCallback", "StudyResult", "machine", "point_finished", "run_study"]

log = logging.getLogger(__name__)


class StudyCallback(ExperimentCallback):
    """Progress of a study; it gets each point's experiment and training events too."""

    def on_study_begin(self, total: int, finished: int) -> None:
        """The study has ``total`` points, ``finished`` of them already done (resume)."""

    def on_point_begin(self, index: int, total: int, point: Point) -> None:
        """Point ``index`` (1-based) starts running."""

    def on_point_end(self, index: int, total: int, point: Point, summary: dict[str, Any]
                     ) -> None:
        """Point ``index`` is finished (``summary['resumed']``: it was done before)."""


@dataclass
class StudyResult:
    """Where the study went and what study.json holds."""

    out_dir: Path
    summary: dict[str, Any]
    ran: int  # points run by this call (the others were finished before)
    seconds: float


def point_finished(run_dir: Path) -> bool:
    """A complete run directory: metrics.json written and no INCOMPLETE marker."""
    return (run_dir / METRICS_FILE).is_file() and incomplete_reason(run_dir) is None


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if a == b else f"{path or 'config'}: {a!r} then, {b!r} now"


#: Settings that change where or how fast a run goes, not its results.
_NEUTRAL = (("evaluation", "workers"), ("evaluation", "backend"), ("evaluation", "ray_address"),
            ("report",), ("tracking",))


def _results_only(config: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    for path in _NEUTRAL:
        node = out
        for part in path[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def _check_same_config(run_dir: Path, cfg: RunConfig, name: str) -> None:
    """A finished point is reused only if it ran the config the study asks for now."""
    try:
        stored = parse_config(yaml.safe_load((run_dir / CONFIG_FILE).read_text("utf-8")),
                              source=str(run_dir / CONFIG_FILE)).model_dump(mode="json")
    except (OSError, yaml.YAMLError, ConfigError) as exc:
        raise ConfigError(f"point '{name}' in {run_dir.parent.parent} has an unreadable "
                          f"{CONFIG_FILE} ({str(exc).splitlines()[0]}); run the study into "
                          "a new --out") from exc
    difference = _first_difference(_results_only(stored),
                                   _results_only(cfg.model_dump(mode="json")))
    if difference:
        raise ConfigError(f"point '{name}' in {run_dir.parent.parent} was run with another "
                          f"config ({difference}); run the changed study into a new --out")


def _prepare(out: Path, study: Study, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise ConfigError(f"study directory '{out}' is not empty; pass --resume to continue "
                          "it (finished points are kept), or choose another --out")
    (out / POINTS_DIR).mkdir(parents=True, exist_ok=True)
    if study.text and not (out / STUDY_FILE).is_file():
        atomic_write_text(out / STUDY_FILE, study.text)


def _seconds_of(run_dir: Path) -> float | None:
    try:
        value = json.loads((run_dir / TIMINGS_FILE).read_text("utf-8")).get("seconds")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _run_point(point: Point, run_dir: Path, workers: int | None,
               callbacks: Sequence[Callback]) -> float:
    """Run one point; a point killed half-way keeps its finished cells (the run's own
    cell cache, which refuses cells of another config), anything else starts afresh."""
    resume = run_dir.exists() and incomplete_reason(run_dir) is not None \
        and cached_cells(run_dir) > 0
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)
    if resume:
        log.info("point %s is unfinished: resuming it (%d cells kept)", point.name,
                 cached_cells(run_dir))
    try:
        result = run_experiment(point.config, out_dir=run_dir, workers=workers,
                                callbacks=callbacks, resume=resume)
    except SelfDistillError as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (f"study point '{point.name}': {exc.args[0]}", *exc.args[1:])
        raise
    _write_report(point, run_dir)
    return _seconds_of(run_dir) or result.seconds  # as for a resumed point: the run's own


def _write_report(point: Point, run_dir: Path) -> None:
    if point.config.report.enabled:
        from selfdistill.report import REPORT_FILE, SUMMARY_FILE, write_report

        if not (run_dir / REPORT_FILE).is_file() or not (run_dir / SUMMARY_FILE).is_file():
            write_report(run_dir)


def machine() -> dict[str, Any]:
    """The machine a study ran on (for the results page)."""
    import torch

    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__}


def run_study(study: Study, out_dir: str | Path, *, workers: int | None = None,
              resume: bool = False, callbacks: Sequence[Callback] = (),
              command: str = "") -> StudyResult:
    """Run every unfinished point of ``study`` into ``out_dir`` and write the study files.

    Args:
        study: the validated study (:func:`selfdistill.study.load_study`).
        out_dir: the study directory; must be empty unless ``resume``.
        workers: processes for each point's cells (default: each point's
            ``evaluation.workers``).
        resume: keep the finished points of ``out_dir`` and run the rest.
        callbacks: :class:`StudyCallback` instances get study progress; every callback
            is passed on to each point's :func:`run_experiment`.
        command: the command line, recorded in study.json.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    _prepare(out, study, resume)
    progress = [cb for cb in callbacks if isinstance(cb, StudyCallback)]
    dirs = [out / POINTS_DIR / p.name for p in study.points]
    for point, run_dir in zip(study.points, dirs, strict=True):
        if point_finished(run_dir):
            _check_same_config(run_dir, point.config, point.name)
    for cb in progress:
        cb.on_study_begin(len(dirs), sum(point_finished(d) for d in dirs))
    summaries: list[dict[str, Any]] = []
    context = {"machine": machine(), "command": command}
    for k, (point, run_dir) in enumerate(zip(study.points, dirs, strict=True), 1):
        summaries.append(_point(k, len(dirs), point, run_dir, workers, callbacks, progress))
        _write_json(out, study, summaries, t0, context, complete=False)
    payload = _write_json(out, study, summaries, t0, context, complete=True)
    from selfdistill.study.render import write_study_pages

    write_study_pages(out, payload)
    ran = sum(not s["resumed"] for s in summaries)
    return StudyResult(out, payload, ran, time.perf_counter() - t0)


def _point(k: int, total: int, point: Point, run_dir: Path, workers: int | None,
           callbacks: Sequence[Callback], progress: Sequence[StudyCallback]
           ) -> dict[str, Any]:
    """Run point ``k`` unless it is finished; its summary for study.json."""
    skipped = point_finished(run_dir)
    if skipped:
        _write_report(point, run_dir)  # a kill between the run and its report
        seconds = _seconds_of(run_dir)
    else:
        for cb in progress:
            cb.on_point_begin(k, total, point)
        seconds = _run_point(point, run_dir, workers, callbacks)
    summary = point_summary(point, read_metrics(run_dir),
                            run_dir=str(Path(POINTS_DIR) / point.name), seconds=seconds,
                            skipped=skipped)
    for cb in progress:
        cb.on_point_end(k, total, point, summary)
    return summary


def _write_json(out: Path, study: Study, summaries: list[dict[str, Any]], t0: float,
                context: dict[str, Any], *, complete: bool) -> dict[str, Any]:
    payload = study_summary(study, summaries, complete=complete,
                            seconds=time.perf_counter() - t0,
                            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                            command=context["command"])
    payload["machine"] = context["machine"]
    atomic_write_text(out / STUDY_JSON, json.dumps(payload, indent=1, default=str) + "\n")
    return payload
