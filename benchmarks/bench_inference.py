"""Inference latency per call: NumPy vs onnxruntime vs torch eager, side by side.

Builds the default model (the default feature set's F inputs, MLP 64-64 ReLU,
three classes) with a fitted scaler, saves it as a model directory, and times
raw features -> probabilities for one sample and for a batch of 1024 rows.
Every path runs single-threaded. Target (issue 7): NumPy single-sample median
<= 25 us.

Usage::

    .venv/bin/python benchmarks/bench_inference.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# one BLAS thread for every path, set before numpy / torch load their BLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch

from selfdistill.config import RunConfig
from selfdistill.features import Scaler, feature_names
from selfdistill.modelio.bundle import save_bundle
from selfdistill.nn.registry import build_model
from selfdistill.serving.numpy_runtime import NumpyModel, OnnxModel
from selfdistill.serving.onnx import export_onnx, probability_model

TARGET_US = 25.0


def _timings(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """(median, p99) microseconds per call after a warm-up."""
    for _ in range(min(calls // 10, 2000)):
        fn()
    out = np.empty(calls)
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return float(np.median(out)) / 1e3, float(np.percentile(out, 99)) / 1e3


def _make_model_dir(path: Path) -> int:
    cfg = RunConfig()
    names = feature_names(cfg.features)
    torch.manual_seed(0)
    model = build_model(cfg.model, len(names), 3).eval()
    rng = np.random.default_rng(0)
    scaler = Scaler(cfg.features.scaler).fit(rng.normal(size=(2000, len(names))))
    save_bundle(path, [model], member_keys=[{"generation": 0}],
                classes=["bull", "bear", "sideways"], feature_names=names, selected=0,
                scaler=scaler.to_dict(), feature_config=cfg.features.model_dump(mode="json"))
    return len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        n_features = _make_model_dir(model_dir)
        export_onnx(model_dir, Path(tmp) / "model.onnx")
        numpy_model = NumpyModel.from_dir(model_dir)
        onnx_model = OnnxModel(Path(tmp) / "model.onnx")
        torch_model, _ = probability_model(model_dir, None)
        rng = np.random.default_rng(1)
        one = rng.normal(size=n_features)
        batch = rng.normal(size=(1024, n_features))
        one32, batch32 = one.astype(np.float32), batch.astype(np.float32)
        one_t, batch_t = torch.from_numpy(one32[None]), torch.from_numpy(batch32)

        def torch_call(x: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                return torch_model(x).numpy()

        paths: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "numpy": (lambda: numpy_model.predict_proba_one(one),
                      lambda: numpy_model.predict_proba(batch)),
            "onnxruntime": (lambda: onnx_model.predict_proba(one32),
                            lambda: onnx_model.predict_proba(batch32)),
            "torch eager": (lambda: torch_call(one_t), lambda: torch_call(batch_t)),
        }
        rows = {name: (_timings(single, args.calls), _timings(many, max(args.calls // 20, 200)))
                for name, (single, many) in paths.items()}
    base = rows["numpy"][0][0]
    print(f"features F={n_features}, MLP 64-64 relu, 3 classes, 1 thread, "
          f"{args.calls} single calls")
    print(f"{'path':<12} {'1 median us':>12} {'1 p99 us':>10} {'1024 median us':>15} "
          f"{'1024 p99 us':>12} {'single vs numpy':>16}")
    for name, ((med, p99), (bmed, bp99)) in rows.items():
        print(f"{name:<12} {med:12.2f} {p99:10.2f} {bmed:15.1f} {bp99:12.1f} "
              f"{med / base:15.2f}x")
    verdict = "meets" if base <= TARGET_US else "MISSES"
    print(f"numpy single-sample median {base:.2f} us {verdict} the {TARGET_US:.0f} us target")


if __name__ == "__main__":
    main()
