"""``selfdistill study``: a grid of runs and the map of where self-distillation helps.

Progress goes to stderr: rich bars on a terminal, plain lines otherwise (a point's start
and end, each cell, and training at most every 10 s), so a log shows the study is alive.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import typer

from selfdistill.errors import ConfigError, Interrupted
from selfdistill.study.spec import Point, load_study

__all__ = ["register"]


def _key_line(summary: dict[str, Any]) -> str:
    """'born_again +0.0031 n.s.; byot -0.0120 worse' on the primary metric vs baseline."""
    primary = summary["primary_metric"]
    parts = []
    for row in summary["comparisons"]:
        if row["role"] == "hard_label" and row["metric"] == primary:
            diff = row["mean_diff"]
            shown = "n/a" if diff is None else f"{diff:+.4f}"
            verdict = {"no significant difference": "n.s."}.get(row["verdict"] or "",
                                                                 row["verdict"] or "?")
            parts.append(f"{row['method']} {shown} {verdict}")
    return f"{primary} vs baseline: " + "; ".join(parts) if parts else "no comparisons"


@contextlib.contextmanager
def _progress() -> Iterator[Any]:
    """Rich bars (points, cells, training) on a terminal; plain lines on stderr otherwise."""
    from selfdistill.cli.progress import ProgressCallback, console

    if not console.is_terminal:
        yield _plain(sys.stderr)
        return
    from selfdistill.study.runner import StudyCallback

    class StudyBars(ProgressCallback, StudyCallback):
        def on_study_begin(self, total: int, finished: int) -> None:
            self._points = self.progress.add_task("study points", total=total,
                                                  completed=finished, info="")

        def on_point_begin(self, index: int, total: int, point: Point) -> None:
            self.progress.update(self._points, info=point.name)
            if self._cells is not None:  # a fresh cells bar for the point's run
                self.progress.remove_task(self._cells)
                self._cells = None

        def on_point_end(self, index: int, total: int, point: Point,
                         summary: dict[str, Any]) -> None:
            if not summary["resumed"]:
                self.progress.console.print(f"{point.name}: {_key_line(summary)}",
                                            markup=False, highlight=False)
                self.progress.advance(self._points)

    with ProgressCallback.make_progress() as bars:
        yield StudyBars(bars)


def _plain(stream: TextIO) -> Any:
    """Plain progress lines: a point's start and end, the run's cells and training."""
    from selfdistill.cli.progress import PlainProgress
    from selfdistill.study.runner import StudyCallback

    class StudyProgress(PlainProgress, StudyCallback):
        def on_study_begin(self, total: int, finished: int) -> None:
            resumed = f", {finished} finished before (kept)" if finished else ""
            self._line(f"study: {total} point{'s' * (total != 1)}{resumed}")

        def on_point_begin(self, index: int, total: int, point: Point) -> None:
            self._line(f"point {index}/{total} {point.name}: running")

        def on_point_end(self, index: int, total: int, point: Point,
                         summary: dict[str, Any]) -> None:
            if summary["resumed"]:
                self._line(f"point {index}/{total} {point.name}: finished before, skipped")
                return
            seconds = summary["seconds"] or 0.0
            self._line(f"point {index}/{total} {point.name}: done in {seconds:.0f} s; "
                       f"{_key_line(summary)}")

    return StudyProgress(stream=stream)


def _study(path: Path, out: Path | None, workers: int | None, resume: bool) -> None:
    study = load_study(path)  # every point validated before anything runs
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    out = out if out is not None else Path("studies-out") / study.spec.name
    from selfdistill.study.runner import run_study

    command = " ".join(["selfdistill study", shlex.quote(str(path)), "--out",
                        shlex.quote(str(out)), *(["--workers", str(workers)] if workers else [])])
    t0 = time.perf_counter()
    try:
        with _progress() as callback:
            result = run_study(study, out, workers=workers, resume=resume,
                               callbacks=[callback], command=command)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the finished points are kept in '{out}': continue "
                          f"with selfdistill study {path} --out {out} --resume") from None
    typer.echo(f"study: {result.ran} point(s) run, "
               f"{len(study.points) - result.ran} kept; {time.perf_counter() - t0:.0f} s")
    for name in ("study.json", "study.md", "study.html"):
        typer.echo(f"{name}: {result.out_dir / name}")


def register(app: typer.Typer) -> None:
    """Add ``study`` to the app."""

    @app.command("study")
    def study(
        path: Path = typer.Argument(..., help="Study file (YAML): a base run config and "
                                    "a grid of settings; see studies/."),
        out: Path | None = typer.Option(None, "--out", help="Study directory (default "
                                        "studies-out/<name>)."),
        workers: int | None = typer.Option(None, "--workers", min=1, help="Processes for "
                                           "each point's folds x seeds cells (default "
                                           "evaluation.workers)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the study in --out: "
                                    "finished points are kept, the others run."),
    ) -> None:
        """Run a study (one run per grid point); write study.json, study.md, study.html."""
        _study(path, out, workers, resume)
