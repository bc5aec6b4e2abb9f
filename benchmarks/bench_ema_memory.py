"""Peak memory and step time of EMA-teacher pretraining: batch B vs B/k x k, checkpointing.

Run:  .venv/bin/python benchmarks/bench_ema_memory.py [--batch 1024] [--window 64]
          [--hidden 64] [--steps 5] [--objective consistency]

Each setting runs in a fresh process (peak memory is a process-wide high-water mark, and
glibc is told to return every block over 64 kB, so resident memory follows what torch
holds): it builds the student, teacher and optimizer, notes its resident memory, then
takes ``1 + --steps`` optimizer steps of B windows and reports

- the peak resident memory above that baseline (CPU; on CUDA, the peak allocated by
  torch): the step's activations, gradients, optimizer state and temporaries, and
- the median time of one optimizer step (the first excluded).

Settings: k = 1 (the whole batch at once), 2, 4 and 8 micro-batches of B / k
(``ema_teacher.accumulation_steps``), and activation checkpointing of the encoder
(``ema_teacher.activation_checkpointing``) with k = 1 and k = 4. Every setting computes
the same update (to float rounding; tests/test_ema_memory.py checks it), so the table is a
pure memory / time trade. Parameters of the student and the teacher are the same in
every setting (two copies of the encoder and heads): accumulation and checkpointing
shrink the activations, not the parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SETTINGS = [(1, False), (2, False), (4, False), (8, False), (1, True), (4, True)]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _child(args: argparse.Namespace) -> None:
    import torch

    from selfdistill.config import parse_config
    from selfdistill.methods.ema_teacher.pretraining import build_state, train_step
    from selfdistill.training.augment import AugmentSpec

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    cfg = parse_config({
        "model": {"kind": "cnn", "hidden": [args.hidden, args.hidden], "window": args.window},
        "ema_teacher": {"batch_size": args.batch, "accumulation_steps": args.k,
                        "activation_checkpointing": args.checkpointing,
                        "objective": args.objective}})
    state = build_state(16, 100 * args.batch, cfg, seed=0, device=device)
    e, spec = cfg.ema_teacher, AugmentSpec()
    xb = torch.randn(args.batch, 16, args.window, device=device)
    base = _rss_mb()  # networks, optimizer (no state yet) and the batch
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    train_step(state, xb, e, spec)  # the first step also creates the optimizer's state
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        train_step(state, xb, e, spec)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"peak_mb": peak - base, "ms": 1000 * statistics.median(times),
                      "device": device}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--objective", default="consistency")
    parser.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    common = ["--batch", str(args.batch), "--window", str(args.window), "--hidden",
              str(args.hidden), "--steps", str(args.steps), "--objective", args.objective]
    print(f"B = {args.batch} windows of {args.window} bars, TCN [{args.hidden}, {args.hidden}], "
          f"objective {args.objective}; one thread; median of {args.steps} steps")
    print(f"{'setting':34s} {'peak MB':>9s} {'ms/step':>9s}")
    first: dict[str, float] = {}
    for k, ckpt in SETTINGS:
        cmd = [sys.executable, __file__, "--child", "--k", str(k), *common]
        if ckpt:
            cmd.append("--checkpointing")
        env = os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536"}  # big blocks go back at free
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                        env=env).stdout.strip().splitlines()[-1])
        first = first or res
        name = f"B/{k} x {k}" + (" + checkpointing" if ckpt else "")
        print(f"{name:34s} {res['peak_mb']:9.0f} {res['ms']:9.0f}   "
              f"({res['peak_mb'] / max(first['peak_mb'], 1e-9):.2f}x memory, "
              f"{res['ms'] / first['ms']:.2f}x time; {res['device']})")


if __name__ == "__main__":
    main()
