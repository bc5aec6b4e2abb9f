"""Compatibility alias of :mod:`selfdistill.serving.numpy_runtime`.

The module moved there in the package restructure (see CHANGELOG.md).
``from selfdistill.inference import NumpyModel, OnnxModel, latest_features`` keeps
working; new code imports from :mod:`selfdistill.serving.numpy_runtime`. Like the
runtime itself, importing this module does not import torch.
"""

from __future__ import annotations

from selfdistill.serving.numpy_runtime import NumpyModel, OnnxModel, latest_features

__all__ = ["NumpyModel", "OnnxModel", "latest_features"]
