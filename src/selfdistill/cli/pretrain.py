"""``selfdistill pretrain``: EMA-teacher pretraining and the "does it help" table.

Writes into ``--out DIR``: the checkpoint (``pretrain.json`` +
``pretrain-e<epoch>.safetensors``), ``history.json`` (loss and collapse metrics
per epoch), ``config.yaml`` (resolved) and, unless ``--no-compare``,
``comparison.json`` (per-seed records and the summary table). Extra evaluation
seeds go to ``DIR/seed-<seed>/``. Rerunning the same command resumes a killed
pretraining from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from selfdistill.atomic import atomic_write_text
from selfdistill.cli.progress import ProgressCallback, console, stdout
from selfdistill.config import RunConfig, dump_config, load_config
from selfdistill.errors import ConfigError

if TYPE_CHECKING:  # the heavy imports wait for the command to run (fast --help)
    from selfdistill.evaluation.pretrain_compare import CompareData
    from selfdistill.methods.base import TrainData

__all__ = ["register"]


class _PretrainProgress(ProgressCallback):
    """Shows the pretraining loss and collapse metrics, or the validation loss."""

    def on_epoch_end(self, label: str, record: dict[str, float]) -> None:
        if "embedding_std" not in record:
            super().on_epoch_end(label, record)
            return
        info = (f"loss {record['loss']:.4f}  std {record['embedding_std']:.3f}  "
                f"rank {record['effective_rank']:.1f}")
        if record.get("collapsed"):
            info += "  [red]collapse?[/red]"
        self.progress.update(self._fit, advance=1, info=info)


def _prepare(cfg: RunConfig) -> tuple[TrainData, CompareData]:
    """Candles -> features -> labels -> purged split -> train-fitted scaler -> windows."""
    from selfdistill.evaluation.fold import (
        build_dataset,
        holdout_split,
        load_candles,
        make_train_data,
    )
    from selfdistill.evaluation.pretrain_compare import CompareData
    from selfdistill.nn.windows import make_windows
    from selfdistill.training.device import resolve_device

    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    split = holdout_split(ds, cfg)
    data, x, _ = make_train_data(ds, split, cfg, resolve_device(cfg.device))
    # (R, F, W) view, test rows included; windows read only their own row and earlier ones
    windows = x if x.dim() == 3 else make_windows(x, cfg.model.window)
    data.x = windows
    test = data.train_rows.new_tensor(split.test)
    return data, CompareData(windows, data.y, data.train_rows, data.val_rows, test,
                             ds.truth, data.n_classes)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(low: Any, high: Any) -> str:
    return "" if low is None else f" [{_fmt(low)}, {_fmt(high)}]"


def _verdict(row: dict[str, Any]) -> str:
    if row.get("reason"):
        return f"not testable: {row['reason']}"
    return str(row.get("verdict", ""))


def comparison_table(table: list[dict[str, Any]], records: list[dict[str, Any]],
                     title: str) -> Table:
    """One row per (label fraction, arm): test accuracy with interval and paired difference."""
    out = Table(title=title, header_style="bold")
    for name in ("labels", "arm", "n", "test acc", "vs", "difference", "p (adj.)", "verdict",
                 "test acc vs truth"):
        out.add_column(name, justify="left" if name in ("arm", "vs", "verdict") else "right")
    for row in table:
        cells = [r for r in records if r["fraction"] == row["fraction"] and r["arm"] == row["arm"]]
        truth = [r["test_accuracy_true"] for r in cells if "test_accuracy_true" in r]
        out.add_row(f"{row['fraction']:.0%}", row["arm"], str(cells[0]["n_labels"]),
                    _fmt(row["mean"]) + _interval(row["ci_low"], row["ci_high"]),
                    row.get("versus", ""),
                    _fmt(row.get("diff")) + _interval(row.get("diff_low"), row.get("diff_high")),
                    _fmt(row.get("p_adjusted")), _verdict(row),
                    _fmt(sum(truth) / len(truth) if truth else None))
    out.caption = ("test accuracy [95% interval] from per-bar tests on the test period (seeds "
                   "averaged per bar, their spread counted as training noise); verdicts from "
                   "Holm-adjusted p-values; models chosen on validation rows, test rows scored "
                   "once")
    return out


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def _seed_dir(out: Path, index: int, seed: int) -> Path:
    return out if index == 0 else out / f"seed-{seed}"


def run_pretrain(cfg: RunConfig, out: Path, *, fresh: bool, compare: bool) -> dict[str, Any]:
    """Pretrain (and compare) for every evaluation seed; write everything into ``out``."""
    from selfdistill.evaluation.pretrain_compare import compare_arms, summarise
    from selfdistill.methods.ema_teacher.pretraining import pretrain
    from selfdistill.nn.encoders import ENCODER_KINDS

    if cfg.model.kind not in ENCODER_KINDS:
        raise ConfigError(f"pretraining needs a window encoder: model.kind must be one of "
                          f"{', '.join(ENCODER_KINDS)}, got '{cfg.model.kind}'")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    data, cdata = _prepare(cfg)
    records: list[dict[str, Any]] = []
    collapsed = []
    with ProgressCallback.make_progress() as progress:
        callbacks = [_PretrainProgress(progress)]
        for i in range(cfg.evaluation.seeds):
            seed = cfg.seed + i
            result = pretrain(data, cfg, seed=seed, out_dir=_seed_dir(out, i, seed),
                              resume=not fresh, callbacks=callbacks)
            collapsed.append(result.collapsed)
            if compare:
                encoder = result.encoder(cfg.ema_teacher.downstream_encoder())
                records += compare_arms(cdata, encoder, cfg, seed=seed,
                                        fractions=cfg.ema_teacher.label_fractions,
                                        callbacks=callbacks)
    summary: dict[str, Any] = {"collapsed": collapsed, "records": records}
    if compare:
        summary["table"] = summarise(records, adjust=cfg.evaluation.adjust)
        _write_json(out / "comparison.json", summary)
    return summary


def register(app: typer.Typer) -> None:
    """Add ``pretrain`` to the app."""

    @app.command("pretrain")
    def pretrain_cmd(
        config: Path = typer.Argument(..., help="Run config (YAML); model.kind cnn or gru."),
        overrides: list[str] = typer.Option(
            [], "--set", help="Override a config key: --set ema_teacher.form=dino "
            "(value parsed as YAML; repeatable)."),
        out: Path | None = typer.Option(None, "--out", help="Output directory "
                                        "(default runs/<name>-pretrain)."),
        fresh: bool = typer.Option(False, "--fresh", help="Ignore a checkpoint in --out and "
                                   "start over (default: resume from it)."),
        compare: bool = typer.Option(True, "--compare/--no-compare", help="Run the linear-probe "
                                     "/ fine-tuning comparison after pretraining."),
    ) -> None:
        """Self-supervised EMA-teacher pretraining on the training bars, then the comparison."""
        cfg = load_config(config, overrides)
        out_dir = out or Path("runs") / f"{cfg.name}-pretrain"
        t0 = time.perf_counter()
        summary = run_pretrain(cfg, out_dir, fresh=fresh, compare=compare)
        if compare:
            stdout.print(comparison_table(summary["table"], summary["records"],
                                          f"{cfg.name}: does EMA-teacher pretraining help?"))
        if any(summary["collapsed"]):
            console.print("[red]warning:[/red] pretraining shows signs of collapse; "
                          f"see {out_dir / 'history.json'}")
        console.print(f"checkpoint: {out_dir}  ({time.perf_counter() - t0:.1f} s); start a run "
                      f"from it with --set ema_teacher.checkpoint={out_dir}")
