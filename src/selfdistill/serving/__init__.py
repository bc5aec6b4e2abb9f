"""Serving a saved model on new candles.

- :mod:`~selfdistill.serving.predict`: regime probabilities and uncertainty for new
  candles with the run's own torch forward (behind ``selfdistill predict``);
- :mod:`~selfdistill.serving.numpy_runtime`: the torch-free NumPy runtime
  (:class:`NumpyModel`, :class:`OnnxModel`) for latency-critical processes;
- :mod:`~selfdistill.serving.onnx`: export to ONNX, checked against torch.

Nothing is imported here, so ``selfdistill.serving.numpy_runtime`` stays torch-free.
``selfdistill.inference`` and ``selfdistill.onnx_export`` remain as compatibility aliases.
"""
