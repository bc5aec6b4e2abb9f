"""Training-loop speed: our loop vs a minimal hand-written PyTorch loop, and the
cost of a Born-Again (distillation) epoch vs a plain hard-label epoch.

Measured in one process on the same data, model, batch size and optimizer;
runs alternate (A B A B ...) and the ratios are of medians, so machine drift
cancels. Targets (issue 2): our loop >= 0.9x the hand-written one's samples/s;
a distillation epoch <= 1.15x a plain one (soft targets precomputed).

Usage: python benchmarks/bench_training.py [--rows 12000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from selfdistill.losses import fused_distillation_loss, soft_targets
from selfdistill.nn import MLP
from selfdistill.training.loop import fit, make_optimizer


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
    loss_fn = loss_fn or (lambda m, xb, r: F.cross_entropy(m(xb), y[r]))
    result = fit(model, x=x, y=y, train_rows=rows, val_rows=rows[:0], loss_fn=loss_fn,
                 epochs=1, batch_size=batch, optimizer=opt,
                 generator=torch.Generator().manual_seed(0))
    return result.seconds


def distill_epoch(x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    teacher = _model(x.shape[1]).eval()
    with torch.no_grad():
        q = soft_targets(teacher(x), temperature=3.0)  # cached once per generation
    return our_epoch(x, y, batch, lambda m, xb, r: fused_distillation_loss(
        m(xb), y[r], q[r], alpha=0.3, temperature=3.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=25)
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
    for label, values, target in (
            ("our loop vs hand-written (samples/s ratio)", speed, ">= 0.90"),
            ("distillation epoch vs plain epoch (time ratio)", cost, "<= 1.15")):
        q = statistics.quantiles(values, n=4)
        print(f"{label}: median {statistics.median(values):.3f} "
              f"(quartiles {q[0]:.3f}-{q[2]:.3f}; target {target})")


if __name__ == "__main__":
    main()
