"""Compatibility alias of :mod:`selfdistill.serving.onnx`.

The module moved there in the package restructure (see CHANGELOG.md).
``from selfdistill.onnx_export import export_onnx`` keeps working; new code imports
from :mod:`selfdistill.serving.onnx`.
"""

from __future__ import annotations

from selfdistill.serving.onnx import OnnxModel, ProbabilityModel, export_onnx, probability_model

__all__ = ["OnnxModel", "ProbabilityModel", "export_onnx", "probability_model"]
