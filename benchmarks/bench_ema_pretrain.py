"""Where the time of `selfdistill pretrain` goes, and whether the shipped comparison meets 90 s.

Run:  .venv/bin/python benchmarks/bench_ema_pretrain.py [CONFIG] [--set key=value ...]
          [--threads 1] [--budget 90]

Runs what ``selfdistill pretrain CONFIG`` runs (data preparation, pretraining of every
objective, the comparison arms; no files written) and prints, per phase, the wall time
and the CPU time of this process. Inside pretraining it splits the time into the
augmentations, the teacher's targets (one forward of both views under no_grad, plus the
mask, Sinkhorn codes and keys), the student's forward + backward (all micro-batches),
the optimizer step, the EMA / queue / center updates and the collapse monitor; inside
the comparison, into the probes' embeddings, the probes' and classifiers' training,
and scoring.

With ``--threads 1`` the CPU seconds are what a quiet core would take as wall time, so
they are the number to hold against the budget on a shared, loaded machine (wall time
there measures the neighbours). The last line says whether the total meets ``--budget``.

Measured on the shared 2-core machine (load about 10), shipped
``configs/pretrain_synthetic.yaml`` with ``compare_encoders: downstream``: 45.0 CPU s in
all, of which pretraining 25.7 (student forward + backward 15.8, teacher targets 4.2,
augmentations 2.0, monitor / checkpoints / updates 1.6), the comparison 17.8 (training
of probes, fine-tunes and scratch 14.3, probe embeddings 2.3, scoring 1.0), per-bar tests
1.1, data 0.5. As shipped (``compare_encoders: both``) the whole ``selfdistill pretrain``
command took 65.5 CPU s (61.3 user + 4.3 system, ``/usr/bin/time``): under the 90 s
budget on one quiet core. Before (3 seeds, 10,000 bars, 10 epochs, BYOL only), one seed of
four objectives took 110.5 CPU s with per-fraction probe embeddings; with two torch
threads on the loaded machine, steps were 20-40x slower than with one.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from selfdistill.config import load_config

TIMES: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])


@contextmanager
def timed(name: str) -> Iterator[None]:
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        TIMES[name][0] += time.perf_counter() - w0
        TIMES[name][1] += time.process_time() - c0


def _wrap(module: Any, attr: str, name: str) -> None:
    """Time every call of ``module.attr`` under ``name`` (benchmark-only instrumentation)."""
    real: Callable[..., Any] = getattr(module, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with timed(name):
            return real(*args, **kwargs)

    setattr(module, attr, wrapper)


def _instrument() -> None:
    from selfdistill.evaluation import pretrain_compare as pc
    from selfdistill.methods.ema_teacher import pretraining as pt

    for attr, name in (("augment", "pretrain: augment views"),
                       ("teacher_targets", "pretrain: teacher targets (no_grad)"),
                       ("accumulate", "pretrain: student forward + backward"),
                       ("update_ema", "pretrain: EMA update"),
                       ("after_step", "pretrain: queue / center update"),
                       ("collapse_record", "pretrain: collapse monitor"),
                       ("save_checkpoint", "pretrain: checkpoint")):
        _wrap(pt, attr, name)
    for attr, name in (("_embed", "compare: probe embeddings"),
                       ("_fit", "compare: training (probes, fine-tunes, scratch)"),
                       ("_scores", "compare: scoring")):
        _wrap(pc, attr, name)


def run(cfg_path: str, overrides: list[str], threads: int) -> float:
    """Everything `selfdistill pretrain` computes, timed by phase; returns CPU seconds."""
    import tempfile
    from pathlib import Path

    from selfdistill.cli import pretrain as cli_pretrain
    from selfdistill.evaluation.pretrain_compare import compare_arms, summarise

    torch.set_num_threads(threads)
    cfg = load_config(cfg_path, overrides)
    _instrument()
    w0, c0 = time.perf_counter(), time.process_time()
    with timed("prepare: candles, features, labels, windows"):
        data, cdata = cli_pretrain._prepare(cfg)
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(cfg.evaluation.seeds):
            seed = cfg.seed + i
            with timed("pretrain (all objectives)"):
                encoders, _, defaults = cli_pretrain._pretrain_variants(
                    cfg, data, seed_dir=Path(tmp) / str(seed), seed=seed, fresh=True,
                    callbacks=[])
            finetune = None if cfg.ema_teacher.compare_encoders == "both" else defaults
            with timed("compare (all arms)"):
                records += compare_arms(cdata, encoders, cfg, seed=seed,
                                        fractions=cfg.ema_teacher.label_fractions,
                                        finetune=finetune)
    with timed("summarise (per-bar tests)"):
        summarise(records, adjust=cfg.evaluation.adjust)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(f"{'phase':58s} {'wall s':>8s} {'cpu s':>8s}")
    for name, (w, c) in TIMES.items():
        print(f"{name:58s} {w:8.1f} {c:8.1f}")
    print(f"{'total':58s} {wall:8.1f} {cpu:8.1f}")
    arms: dict[str, float] = defaultdict(float)
    for rec in records:
        arms[f"{rec['arm']} ({rec['fraction']:.0%} labels)"] += rec["seconds"]
    print("\ncomparison wall seconds by arm and label fraction:")
    for name, seconds in arms.items():
        print(f"  {name:40s} {seconds:6.1f}")
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/pretrain_synthetic.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=90.0)
    args = parser.parse_args()
    cpu = run(args.config, args.overrides, args.threads)
    verdict = "meets" if cpu <= args.budget else "misses"
    print(f"\n{cpu:.1f} CPU s with {args.threads} thread(s): {verdict} the {args.budget:.0f} s "
          "budget (one quiet core's wall time)")


if __name__ == "__main__":
    main()
