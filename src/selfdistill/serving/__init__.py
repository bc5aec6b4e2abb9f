"""Serving a saved model: predict (torch), numpy_runtime (no torch), onnx (export)."""
