"""Training-loop speed: our loop vs a minimal hand-written PyTorch loop, and the
cost of distillation vs plain hard-label training.

Measured in one process on the same data, model, batch size and optimizer;
runs alternate (A B A B ...) and each ratio is the median of ratios taken pair
by pair, so machine drift cancels. Three figures:

1. our loop vs a hand-written loop, one epoch (target >= 0.9x samples/s);
2. a distillation epoch vs a plain epoch, the bare training steps (the packing
   of the teacher's targets is counted in every distillation epoch);
3. a Born-Again generation vs a plain one, as the pipeline runs them on the demo
   market: generation 1 (computing and packing the teacher's soft targets, then
   training) against generation 0 (hard labels), same epochs, validation after
   each epoch (target <= 1.15x, issue 2).

Usage: python benchmarks/bench_training.py [--rows 12000] [--repeats 25]
       [--generation-repeats 9] [--epochs 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from selfdistill.config import load_config
from selfdistill.losses import DistillationTargets, soft_targets
from selfdistill.methods.born_again import fit_born_again
from selfdistill.methods.common import hard_ce_loss
from selfdistill.nn import MLP
from selfdistill.pipeline import build_dataset, holdout_split, load_candles, make_train_data
from selfdistill.training.loop import fit, make_optimizer

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _data(rows: int, features: int = 17) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, features, generator=g)
    y = (x[:, :3] + torch.randn(rows, 3, generator=g)).argmax(1)
    return x, y


def _model(features: int) -> MLP:
    torch.manual_seed(0)
    return MLP(features, 3, hidden=(64, 64), dropout=0.1)


def hand_written_epoch(x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    model = _model(x.shape[1])
    opt = make_optimizer(model, kind="adamw", lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    perm = torch.randperm(len(x), generator=g)
    for i in range(0, len(x), batch):
        idx = perm[i:i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def our_epoch(x: torch.Tensor, y: torch.Tensor, batch: int,
              loss_fn: Callable | None = None) -> float:
    model = _model(x.shape[1])
    opt = make_optimizer(model, kind="adamw", lr=1e-3, weight_decay=1e-4)
    rows = torch.arange(len(x))
    loss_fn = loss_fn or hard_ce_loss(y)  # the pipeline's plain loss
    result = fit(model, x=x, y=y, train_rows=rows, val_rows=rows[:0], loss_fn=loss_fn,
                 epochs=1, batch_size=batch, optimizer=opt,
                 generator=torch.Generator().manual_seed(0))
    return result.seconds


def distill_epoch(x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    teacher = _model(x.shape[1]).eval()
    with torch.no_grad():
        q = soft_targets(teacher(x), temperature=3.0)
    t0 = time.perf_counter()  # packed once per generation, as Born-Again does; counted
    targets = DistillationTargets.build(y, q, alpha=0.3, temperature=3.0)
    pack = time.perf_counter() - t0
    return pack + our_epoch(x, y, batch, lambda m, xb, r: targets.loss(m(xb), r))


def generation_ratios(repeats: int, epochs: int) -> list[float]:
    """Born-Again generation 1 / generation 0 seconds, one lineage per repeat."""
    cfg = load_config(DEMO, [f"training.epochs={epochs}", "training.patience=0",
                             "born_again.generations=1"])
    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    data, _, _ = make_train_data(ds, holdout_split(ds, cfg), cfg, torch.device("cpu"))
    print(f"generations: demo market, {len(data.train_rows)} training rows, "
          f"{len(data.val_rows)} validation rows, {epochs} epochs each")
    ratios = []
    for i in range(repeats + 1):  # the first lineage warms up
        gen0, gen1 = fit_born_again(data, cfg, seed=cfg.seed).members
        if i:
            ratios.append(gen1.info["seconds"] / gen0.info["seconds"])
    return ratios


def _summary(label: str, values: list[float], target: str) -> None:
    q = statistics.quantiles(values, n=4)
    print(f"{label}: median {statistics.median(values):.3f} "
          f"(quartiles {q[0]:.3f}-{q[2]:.3f}; {target})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--generation-repeats", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per generation")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (experiment cells use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = _data(args.rows)
    fns = {"hand": hand_written_epoch, "ours": our_epoch, "distill": distill_epoch}
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn(x, y, args.batch)
    for _ in range(args.repeats):  # interleaved, so drift hits all three alike
        for name, fn in fns.items():
            runs[name].append(fn(x, y, args.batch))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"rows={args.rows} batch={args.batch} repeats={args.repeats} "
          f"threads={torch.get_num_threads()}")
    for name in fns:
        print(f"{name:>8}: median epoch {med[name] * 1e3:8.2f} ms  "
              f"{args.rows / med[name]:10.0f} samples/s")
    # ratios pair by pair (same repeat), then their median and spread
    speed = [h / o for h, o in zip(runs["hand"], runs["ours"], strict=True)]
    cost = [d / o for d, o in zip(runs["distill"], runs["ours"], strict=True)]
    _summary("our loop vs hand-written (samples/s ratio)", speed, "target >= 0.90")
    _summary("distillation epoch vs plain epoch (time ratio)", cost, "training steps only")
    _summary("Born-Again generation vs plain generation (time ratio)",
             generation_ratios(args.generation_repeats, args.epochs), "target <= 1.15")

if __name__ == "__main__":
    main()
