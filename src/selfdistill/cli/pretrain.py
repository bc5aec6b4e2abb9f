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
from collections.abc import Collection
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

#: torch threads while pretraining and comparing: the window encoders are small, and
#: intra-op threads cost more than they save; on a shared machine two threads of one
#: process waiting on each other made a step 20-40x slower (benchmarks/bench_ema_pretrain.py)
PRETRAIN_THREADS = 1


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
                     title: str, downstream: Collection[str] = ()) -> Table:
    """One row per (label fraction, arm, encoder): test accuracy, interval, paired difference."""
    out = Table(title=title, header_style="bold")
    for name in ("labels", "arm", "encoder", "n", "test acc", "vs", "difference", "p (adj.)",
                 "verdict", "test acc vs truth"):
        out.add_column(name, justify="left" if name in ("arm", "encoder", "vs", "verdict")
                       else "right")
    for row in table:
        cells = [r for r in records if r["fraction"] == row["fraction"] and r["arm"] == row["arm"]
                 and r.get("pretrained") == row.get("pretrained")]
        truth = [r["test_accuracy_true"] for r in cells if "test_accuracy_true" in r]
        encoder = row.get("pretrained") or ""
        out.add_row(f"{row['fraction']:.0%}", row["arm"],
                    encoder + (" *" if encoder in downstream else ""), str(cells[0]["n_labels"]),
                    _fmt(row["mean"]) + _interval(row["ci_low"], row["ci_high"]),
                    row.get("versus", ""),
                    _fmt(row.get("diff")) + _interval(row.get("diff_low"), row.get("diff_high")),
                    _fmt(row.get("p_adjusted")), _verdict(row),
                    _fmt(sum(truth) / len(truth) if truth else None))
    out.caption = ("test accuracy [95% interval] from per-bar tests on the test period (seeds "
                   "averaged per bar, their spread counted as training noise); verdicts from "
                   "p-values adjusted as one family; models chosen on validation rows, test rows "
                   "scored once; encoder: objective / student (online) or teacher (EMA), * the "
                   "one ema_teacher.encoder keeps for downstream use")
    return out


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def _seed_dir(out: Path, index: int, seed: int) -> Path:
    return out if index == 0 else out / f"seed-{seed}"


def _variants(cfg: RunConfig) -> list[RunConfig]:
    """``cfg`` itself, then one config per other objective in ``compare_objectives``."""
    out = [cfg]
    for objective in cfg.ema_teacher.compare_objectives:
        if all(v.ema_teacher.objective != objective for v in out):
            e = cfg.ema_teacher.model_copy(update={"objective": dict(objective)})
            out.append(cfg.model_copy(update={"ema_teacher": e}))
    return out


def _variant_dir(seed_dir: Path, index: int, name: str) -> Path:
    return seed_dir if index == 0 else seed_dir / f"objective-{name}"


def _pretrain_variants(cfg: RunConfig, data: TrainData, *, seed_dir: Path, seed: int,
                       fresh: bool, callbacks: list[Any]
                       ) -> tuple[dict[str, Any], list[bool], set[str]]:
    """Pretrain every objective for one seed: encoders by name, collapse flags, defaults."""
    from selfdistill.methods.ema_teacher.pretraining import objective_name, pretrain

    encoders: dict[str, Any] = {}
    collapsed, defaults = [], set()
    for i, vcfg in enumerate(_variants(cfg)):
        name = objective_name(vcfg.ema_teacher)
        result = pretrain(data, vcfg, seed=seed, out_dir=_variant_dir(seed_dir, i, name),
                          resume=not fresh, callbacks=callbacks)
        collapsed.append(result.collapsed)
        for which in ("student", "teacher"):
            encoders[f"{name}/{which}"] = result.encoder(which)
        defaults.add(f"{name}/{vcfg.ema_teacher.downstream_encoder()}")
    return encoders, collapsed, defaults


def run_pretrain(cfg: RunConfig, out: Path, *, fresh: bool, compare: bool) -> dict[str, Any]:
    """Pretrain every objective (and compare) for every evaluation seed; write into ``out``.

    Runs on :data:`PRETRAIN_THREADS` torch threads (restored afterwards).
    """
    from selfdistill.nn.encoders import ENCODER_KINDS

    if cfg.model.kind not in ENCODER_KINDS:
        raise ConfigError(f"pretraining needs a window encoder: model.kind must be one of "
                          f"{', '.join(ENCODER_KINDS)}, got '{cfg.model.kind}'")
    import torch

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:
        return _run(cfg, out, fresh=fresh, compare=compare)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: RunConfig, out: Path, *, fresh: bool, compare: bool) -> dict[str, Any]:
    from selfdistill.evaluation.pretrain_compare import compare_arms, summarise

    data, cdata = _prepare(cfg)
    records: list[dict[str, Any]] = []
    collapsed: list[bool] = []
    defaults: set[str] = set()
    with ProgressCallback.make_progress() as progress:
        callbacks = [_PretrainProgress(progress)]
        for i in range(cfg.evaluation.seeds):
            seed = cfg.seed + i
            encoders, flags, defaults = _pretrain_variants(
                cfg, data, seed_dir=_seed_dir(out, i, seed), seed=seed, fresh=fresh,
                callbacks=callbacks)
            collapsed += flags
            if compare:
                finetune = None if cfg.ema_teacher.compare_encoders == "both" else defaults
                records += compare_arms(cdata, encoders, cfg, seed=seed,
                                        fractions=cfg.ema_teacher.label_fractions,
                                        callbacks=callbacks, finetune=finetune)
    summary: dict[str, Any] = {"collapsed": collapsed, "records": records,
                               "downstream": sorted(defaults)}
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
                                          f"{cfg.name}: does EMA-teacher pretraining help?",
                                          summary["downstream"]))
        if any(summary["collapsed"]):
            console.print("[red]warning:[/red] pretraining shows signs of collapse; "
                          f"see {out_dir / 'history.json'}")
        console.print(f"checkpoint: {out_dir}  ({time.perf_counter() - t0:.1f} s); start a run "
                      f"from it with --set ema_teacher.checkpoint={out_dir}")
