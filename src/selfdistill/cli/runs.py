"""``selfdistill runs list [DIR]`` and ``selfdistill runs compare A B [...]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

__all__ = ["list_lines", "register"]

_SHORT = {"own_baseline": "own", "simple_alternative": "simple", "trading": "trading",
          "disagreement": "disagreement"}


def list_lines(folder: Path) -> list[str]:
    """One line per run directory under ``folder`` (the text of ``runs list``)."""
    from selfdistill.rundir.catalog import find_runs, summarise_run

    lines = []
    for path in find_runs(folder):
        s = summarise_run(path)
        head = "; ".join(f"{out} acc {v['accuracy']:.3f}" + (f" nll {v['nll']:.3f}"
                                                              if "nll" in v else "")
                         for out, v in s.headline.items() if "accuracy" in v)
        found = ", ".join(f"{_SHORT.get(k, k)}: {v}" for k, v in s.findings.items())
        parts = [str(path), s.name, s.date or "?", s.data or "?",
                 ",".join(s.methods) or "?", head or "-", found or "-"]
        if s.problem:
            parts.append(s.problem)
        lines.append("  |  ".join(parts))
    return lines


def _cell(value: dict[str, Any] | None) -> str:
    if value is None:
        return "-"
    low, high = value.get("ci_low"), value.get("ci_high")
    interval = f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
    return f"{value['mean']:.4f}{interval}"


def _compare(paths: list[Path]) -> None:
    from selfdistill.cli.progress import stdout
    from selfdistill.evaluation.runcompare import compare_runs

    result = compare_runs(paths)

    def say(text: str) -> None:
        stdout.print(text, markup=False, highlight=False, soft_wrap=True)

    say("test metrics: mean [95% interval over folds]; runs: " + ", ".join(
        f"#{i + 1} {name}" for i, name in enumerate(result.runs)))
    for row in result.table:
        cells = "  ".join(f"#{i + 1} {_cell(v)}" for i, v in enumerate(row["values"]))
        say(f"{row['output']:<28} {row['metric']:<14} {cells}")
    for name, why in result.unpaired.items():
        say(f"{name} vs {result.runs[0]}: not paired: {why}")
    for name, rows in result.tests.items():
        say(f"{name} vs {result.runs[0]}: paired per-bar tests on the same test bars "
            "(Holm-adjusted):")
        for r in rows:
            interval = ("" if r["ci_low"] is None else
                        f" [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]")
            p = "" if r["p_adjusted"] is None else f", p_adj {r['p_adjusted']:.3g}"
            why = f" ({r['reason']})" if r.get("reason") else ""
            say(f"  {r['method']:<28} {r['metric']:<14} {r['mean_diff']:+.4f}{interval}{p}"
                f" -> {r['verdict']}{why}")


def register(app: typer.Typer) -> None:
    """Add the ``runs`` group (``list``, ``compare``) to the app."""
    runs = typer.Typer(help="List and compare run directories.", no_args_is_help=True)
    app.add_typer(runs, name="runs")

    @runs.command("list")
    def list_runs(
        folder: Path = typer.Argument(Path("runs"), help="Folder of run directories."),
    ) -> None:
        """One line per run: name, date, data, methods, headline metrics, findings."""
        from selfdistill.cli.progress import stdout

        lines = list_lines(folder)
        for line in lines:
            stdout.print(line, markup=False, highlight=False, soft_wrap=True)
        if not lines:
            stdout.print(f"no run directories in {folder}", markup=False)

    @runs.command("compare")
    def compare(
        run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories; the "
                                              "first is the reference."),
    ) -> None:
        """Side-by-side metrics, and paired per-bar tests where the runs share folds and data."""
        if len(run_dirs) < 2:
            from selfdistill.errors import ConfigError

            raise ConfigError("runs compare needs at least two run directories")
        _compare(run_dirs)
