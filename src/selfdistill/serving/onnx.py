"""ONNX export of a model directory, checked against the torch probabilities.

The exported graph takes raw (unscaled) features and returns probabilities, so
a consumer needs nothing but onnxruntime::

    features (N, F) float32 -> clip((x - center) / scale) -> network -> / T -> softmax
      -> probabilities (N, C) float32

The batch axis is dynamic. Export uses the TorchScript-based exporter
(``dynamo=False``), which needs no extra package (the dynamo exporter needs
``onnxscript``). Needs the ``onnx`` extra: ``pip install 'selfdistill[onnx]'``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from selfdistill.errors import ModelFileError
from selfdistill.modelio.bundle import ModelBundle, load_bundle_models
from selfdistill.nn.multi_exit import ExitSelect
from selfdistill.serving.numpy_runtime import OnnxModel

__all__ = ["OnnxModel", "ProbabilityModel", "export_onnx", "probability_model"]

log = logging.getLogger(__name__)

#: max |p_onnx - p_torch| accepted by the export check (float32 arithmetic)
EXPORT_ATOL = 1e-5


class ProbabilityModel(nn.Module):
    """Raw features -> probabilities: the stored scaler, a network, temperature, softmax.

    Shapes: (B, F) float32 -> (B, C) float32.
    """

    center: Tensor
    scale: Tensor

    def __init__(self, network: nn.Module, bundle: ModelBundle) -> None:
        super().__init__()
        self.network = network
        n = len(bundle.feature_names)
        sc = bundle.scaler or {"kind": "none", "center": [0.0] * n, "scale": [1.0] * n,
                               "clip": 0.0}
        self.register_buffer("center", torch.tensor(sc["center"], dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(sc["scale"], dtype=torch.float32))
        self.clip = None if sc["kind"] == "none" else float(sc["clip"])
        self.temperature = float(bundle.temperature)

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.center) / self.scale  # (B, F)
        if self.clip is not None:
            z = torch.clamp(z, -self.clip, self.clip)
        return torch.softmax(self.network(z) / self.temperature, dim=-1)  # (B, C)


#: model kinds whose graph maps (B, F) features to (B, C) logits, so they export
EXPORTABLE_KINDS = ("mlp", "constant", "multi_exit")


def probability_model(model_dir: str | Path, member: int | None
                      ) -> tuple[ProbabilityModel, ModelBundle]:
    models, bundle = load_bundle_models(model_dir)
    index = bundle.selected if member is None else member
    if not 0 <= index < len(models):
        raise ModelFileError(f"member {index} is not in 0..{len(models) - 1} of '{model_dir}'")
    meta = bundle.member_meta[index]
    kind = meta["spec"].get("kind")
    if kind not in EXPORTABLE_KINDS:
        raise ModelFileError(f"model kind '{kind}' of '{model_dir}' cannot be exported to ONNX "
                             f"(supported: {', '.join(EXPORTABLE_KINDS)}); serve it with "
                             "SelfDistillClassifier.load() or `selfdistill predict`")
    network = models[index]
    if meta.get("output") is not None:
        network = ExitSelect(network, int(meta["output"]))
    return ProbabilityModel(network, bundle).eval(), bundle


def export_onnx(model_dir: str | Path, out: str | Path, *, member: int | None = None,
                opset: int = 17, check_rows: int = 256, seed: int = 0) -> dict[str, Any]:
    """Export one member of a model directory to ONNX and check it against torch.

    Args:
        model_dir: a model directory (see :mod:`selfdistill.modelio.bundle`).
        out: the ``.onnx`` file to write.
        member: member index; None exports the selected member.
        opset: ONNX opset version.
        check_rows: random rows used to compare onnxruntime with torch eager.
        seed: seed of those rows.

    Returns:
        ``{"path", "max_abs_diff", "member", "n_features", "n_classes"}``.

    Raises:
        ModelFileError: the model cannot be read, or the exported graph disagrees
            with torch by more than ``EXPORT_ATOL``.
    """
    prob_model, bundle = probability_model(model_dir, member)
    n_features = len(bundle.feature_names)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, n_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(prob_model, (example,), str(out), input_names=["features"],
                          output_names=["probabilities"], opset_version=opset,
                          dynamic_axes={"features": {0: "batch"}, "probabilities": {0: "batch"}},
                          dynamo=False)
    diff = _check_against_torch(prob_model, out, bundle, check_rows, seed)
    if not diff <= EXPORT_ATOL:  # NaN fails too
        out.unlink(missing_ok=True)
        raise ModelFileError(f"ONNX export of '{model_dir}' differs from torch by {diff:.3g} "
                             f"(> {EXPORT_ATOL:g}); not written")
    log.info("exported %s to %s (max |diff| %.2g)", model_dir, out, diff)
    return {"path": str(out), "max_abs_diff": diff, "n_features": n_features,
            "member": bundle.selected if member is None else member,
            "n_classes": len(bundle.classes)}


def _check_against_torch(prob_model: ProbabilityModel, path: Path, bundle: ModelBundle,
                         rows: int, seed: int) -> float:
    center = prob_model.center.numpy()
    scale = prob_model.scale.numpy()
    rng = np.random.default_rng(seed)
    # raw features around the training distribution, with outliers beyond the clip
    x = (center + scale * rng.standard_t(3, size=(rows, len(center)))).astype(np.float32)
    with torch.no_grad():
        expected = prob_model(torch.from_numpy(x)).numpy()
    got = OnnxModel(path, bundle=bundle).predict_proba(x)
    return float(np.max(np.abs(got - expected)))
