"""Cost of one EMA-teacher step vs one supervised step, and window-view memory.

Run:  .venv/bin/python benchmarks/bench_ema_step.py [--batch 256] [--repeats 30]

Prints, measured in this run on one thread:

1. the median time of a plain supervised step (forward + CE + backward + AdamW)
   on a batch of B windows, and of a supervised step on 2B windows;
2. the median time of one EMA-teacher step on B windows (two augmented views,
   so the student and the teacher each see 2B windows), split into its parts:
   augmentation, student forward, teacher forward under no_grad, backward,
   optimizer step and EMA update; and the ratios. Expected: about "2 forwards + 1
   backward" of the 2B batch (a supervised step on 2B is 1 forward + 1 backward);
3. the memory of strided windows over 1,000,000 bars x W = 64 (storage of the
   view vs what materialising every window would take, and the RSS growth).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from selfdistill.config import parse_config
from selfdistill.methods.ema_teacher.pretraining import build_state, pretrain_loss, train_step
from selfdistill.methods.ema_teacher.state import PretrainState
from selfdistill.nn.encoders import WindowClassifier
from selfdistill.nn.windows import make_windows, windows_nbytes
from selfdistill.training.augment import AugmentSpec, augment
from selfdistill.training.ema import update_ema
from selfdistill.training.loop import make_optimizer

N_FEATURES, WINDOW = 16, 32


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):  # warm-up
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _supervised_step(batch: int) -> Callable[[], object]:
    torch.manual_seed(0)
    model = WindowClassifier(N_FEATURES, 3, kind="cnn", window=WINDOW, hidden=[32, 32])
    opt = make_optimizer(model, kind="adamw", lr=1e-3, weight_decay=1e-4)
    xb, yb = torch.randn(batch, N_FEATURES, WINDOW), torch.randint(0, 3, (batch,))

    def step() -> object:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def _parts(state: PretrainState, views: Tensor, e: Any, repeats: int) -> dict[str, float]:
    """Median ms of each part of a step on the stacked views (2B windows)."""
    def loss_only() -> Tensor:
        return pretrain_loss(state, views, e)

    def loss_and_backward() -> None:
        state.optimizer.zero_grad(set_to_none=True)
        pretrain_loss(state, views, e).backward()

    with torch.no_grad():
        student_nograd = _median_ms(lambda: state.student(views), repeats)
        teacher = _median_ms(lambda: state.teacher(views), repeats)
    student = _median_ms(lambda: state.student(views), repeats)  # builds the graph
    forward = _median_ms(loss_only, repeats)
    backward = _median_ms(loss_and_backward, repeats) - forward
    step = _median_ms(state.optimizer.step, repeats)
    ema = _median_ms(lambda: update_ema(state.teacher, state.student, 0.996), repeats)
    return {"student_nograd": student_nograd, "teacher": teacher, "student": student,
            "forward": forward, "backward": backward, "step": step, "ema": ema}


def bench_steps(batch: int, repeats: int) -> None:
    cfg = parse_config({"model": {"kind": "cnn", "hidden": [32, 32], "window": WINDOW,
                                  "dropout": 0.0}})
    e = cfg.ema_teacher
    state = build_state(N_FEATURES, 100 * batch, cfg, seed=0)
    spec = AugmentSpec(**e.augment.model_dump())
    xb = torch.randn(batch, N_FEATURES, WINDOW)
    sup_b = _median_ms(_supervised_step(batch), repeats)
    sup_2b = _median_ms(_supervised_step(2 * batch), repeats)
    full = _median_ms(lambda: train_step(state, xb, e, spec), repeats)
    aug = _median_ms(lambda: (augment(xb, spec, generator=state.generator),
                              augment(xb, spec, generator=state.generator)), repeats)
    p = _parts(state, torch.cat([xb, xb]), e, repeats)
    unit = p["student"]
    print(f"batch B = {batch} windows of ({N_FEATURES} features x {WINDOW} bars), "
          f"TCN [32, 32] + BYOL heads, 1 thread, median of {repeats}")
    print(f"  supervised step on B           {sup_b:8.2f} ms")
    print(f"  supervised step on 2B          {sup_2b:8.2f} ms")
    print(f"  EMA-teacher step on B (2 views){full:8.2f} ms = {full / sup_b:.2f} x supervised(B)"
          f" = {full / sup_2b:.2f} x supervised(2B)")
    print(f"    two augmented views          {aug:8.2f} ms")
    print(f"    student forward, 2B          {p['student']:8.2f} ms  (no_grad: "
          f"{p['student_nograd']:.2f} ms)")
    print(f"    teacher forward, 2B, no_grad {p['teacher']:8.2f} ms")
    print(f"    loss forward (both + loss)   {p['forward']:8.2f} ms")
    print(f"    backward                     {p['backward']:8.2f} ms")
    print(f"    optimizer step               {p['step']:8.2f} ms")
    print(f"    EMA update                   {p['ema']:8.2f} ms")
    print(f"  in student forwards of 2B: student 1.00 + teacher {p['teacher'] / unit:.2f} "
          f"+ backward {p['backward'] / unit:.2f} (+ step {p['step'] / unit:.2f}, "
          f"EMA {p['ema'] / unit:.2f})")
    print(f"  supervised step on 2B in the same unit: {sup_2b / unit:.2f}; "
          f"EMA-teacher step: {full / unit:.2f}")


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_windows(n_bars: int = 1_000_000, window: int = 64) -> None:
    x = torch.randn(n_bars, N_FEATURES)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    w = make_windows(x, window)
    seconds = time.perf_counter() - t0
    rss1 = _rss_mb()
    view_mb = windows_nbytes(w) / 2**20
    full_mb = n_bars * N_FEATURES * window * 4 / 2**20
    batch = w[torch.randint(0, n_bars, (256,))]
    print(f"windows over {n_bars:,} bars x {N_FEATURES} features, W = {window}:")
    print(f"  features                  {x.numel() * 4 / 2**20:10.1f} MB")
    print(f"  window view storage       {view_mb:10.1f} MB   (built in {seconds * 1000:.0f} ms)")
    print(f"  every window materialised {full_mb:10.1f} MB   (never allocated)")
    print(f"  ratio view / materialised {view_mb / full_mb:10.4f}   (= 1 / W: O(bars))")
    print(f"  RSS growth                {rss1 - rss0:10.1f} MB")
    print(f"  one batch of 256 windows  {windows_nbytes(batch) / 2**20:10.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_steps(args.batch, args.repeats)
    bench_windows()


if __name__ == "__main__":
    main()
