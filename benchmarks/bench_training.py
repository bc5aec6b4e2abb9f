"""Training-loop speed: our loop vs a minimal hand-written PyTorch loop, and the
cost of distillation vs plain hard-label training.

Measured in one process on the same data, model, batch size and optimizer;
runs alternate (A B A B ...) and each ratio is the median of ratios taken pair
by pair, so machine drift cancels. Three figures:

1. our loop vs a hand-written loop, one epoch (target >= 0.9x samples/s);
2. a distillation epoch vs a plain epoch, the bare training steps;
3. a Born-Again generation vs a plain one on the demo market, as the pipeline
   trains them: a distilled generation (computing and packing the teacher's
   soft targets, then training) against a hard-label one, same epochs,
   validation after each epoch, epochs interleaved (target <= 1.15x, issue 2).

Usage: python benchmarks/bench_training.py [--rows 12000] [--repeats 25]
       [--generation-repeats 15] [--epochs 8] [--clock cpu|wall]
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
from selfdistill.evaluation.fold import build_dataset, holdout_split, load_candles, make_train_data
from selfdistill.losses import soft_targets
from selfdistill.methods.born_again import distill_loss, teacher_targets
from selfdistill.methods.common import freeze, fresh_model, hard_ce_loss
from selfdistill.nn import MLP
from selfdistill.training.loop import FitSettings, fit, make_optimizer

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _data(rows: int, features: int = 17) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, features, generator=g)
    y = (x[:, :3] + torch.randn(rows, 3, generator=g)).argmax(1)
    return x, y


def _model(features: int) -> MLP:
    torch.manual_seed(0)
    return MLP(features, 3, hidden=(64, 64), dropout=0.1)


#: the clock every figure uses; ``--clock`` sets it (process CPU time by default: a
#: shared machine's stolen time then does not count, and one torch thread does the work)
CLOCK: Callable[[], float] = time.process_time


def hand_written_epoch(x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    model = _model(x.shape[1])
    opt = make_optimizer(model, kind="adamw", lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    t0 = CLOCK()
    perm = torch.randperm(len(x), generator=g)
    for i in range(0, len(x), batch):
        idx = perm[i:i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return CLOCK() - t0


def our_epoch(x: torch.Tensor, y: torch.Tensor, batch: int,
              loss_fn: Callable | None = None) -> float:
    model = _model(x.shape[1])
    opt = make_optimizer(model, kind="adamw", lr=1e-3, weight_decay=1e-4)
    rows = torch.arange(len(x))
    loss_fn = loss_fn or hard_ce_loss(y)  # the pipeline's plain loss
    t0 = CLOCK()
    fit(model, x=x, y=y, train_rows=rows, val_rows=rows[:0], loss_fn=loss_fn, optimizer=opt,
        generator=torch.Generator().manual_seed(0),
        settings=FitSettings(epochs=1, batch_size=batch))
    return CLOCK() - t0


def distill_epoch(x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    teacher = _model(x.shape[1]).eval()
    with torch.no_grad():
        q = soft_targets(teacher(x), temperature=3.0)
    # packed once per generation: figure 3 counts it, this one times the steps only
    return our_epoch(x, y, batch, distill_loss(y, q, alpha=0.3, temperature=3.0))


def generation_ratios(repeats: int, epochs: int) -> list[float]:
    """Born-Again generation 1 / generation 0 cost on the demo market, per repeat.

    Each repeat trains a plain generation (hard labels) and a distilled one
    (the demo's generation-1 temperature and alpha) from fresh weights, as
    ``train_model`` does: the pipeline's optimizer, batch size and losses, the
    validation loss after every epoch. Their epochs alternate (plain, distilled,
    distilled, plain, ...) so the machine's drift hits both alike; the distilled
    side also pays for its teacher's soft targets and their packing.
    """
    cfg = load_config(DEMO, ["training.patience=0"])
    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    data, _, _ = make_train_data(ds, holdout_split(ds, cfg), cfg, torch.device("cpu"))
    tr, ba = cfg.training, cfg.born_again
    print(f"generations: demo market, {len(data.train_rows)} training rows, "
          f"{len(data.val_rows)} validation rows, {epochs} epochs each, "
          f"T={ba.temperature}, alpha={ba.alpha}")
    teacher = freeze(fresh_model(data, cfg, 99))  # its weights do not change the cost

    def side(loss_fn: Callable) -> Callable[[], None]:
        model = fresh_model(data, cfg, cfg.seed)
        opt = make_optimizer(model, kind=tr.optimizer, lr=tr.lr, weight_decay=tr.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        return lambda: fit(model, x=data.x, y=data.y, train_rows=data.train_rows,
                           val_rows=data.val_rows, loss_fn=loss_fn, optimizer=opt,
                           generator=gen,
                           settings=FitSettings(epochs=1, batch_size=tr.batch_size))

    ratios = []
    for i in range(repeats + 1):  # the first pair warms up
        plain = side(hard_ce_loss(data.y))
        t0 = CLOCK()
        q = teacher_targets([teacher], data.x, data.train_rows, temperature=ba.temperature,
                            n_rows=data.x.shape[0])
        distilled = side(distill_loss(data.y, q, alpha=float(ba.alpha),
                                      temperature=ba.temperature))
        cost = {"plain": 0.0, "distilled": CLOCK() - t0}
        for epoch in range(epochs):
            order = (("plain", plain), ("distilled", distilled))
            for name, run_epoch in order if epoch % 2 == 0 else order[::-1]:
                t0 = CLOCK()
                run_epoch()
                cost[name] += CLOCK() - t0
        if i:
            ratios.append(cost["distilled"] / cost["plain"])
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
    parser.add_argument("--generation-repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per generation")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="process CPU time (default) or wall time")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (experiment cells use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
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
          f"threads={torch.get_num_threads()} clock={args.clock}")
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
