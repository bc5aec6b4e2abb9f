"""Build models from config sections or from the JSON spec stored with weights.

Model kinds register a builder here; a spec dict (``model.spec()``) always
carries ``kind`` plus the constructor arguments, so a saved model is rebuilt
without executing anything but these builders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from selfdistill.config import ModelConfig
from selfdistill.nn.booster import BoosterClassifier
from selfdistill.nn.classic.modules import HMMClassifier, LogisticClassifier
from selfdistill.nn.encoders import window_classifier_from_spec
from selfdistill.nn.mlp import MLP, ConstantClassifier
from selfdistill.nn.multi_exit import MultiExitMLP

__all__ = ["BUILDERS", "build_model", "model_from_spec", "register_builder"]

#: kind -> builder(spec_dict) -> module. ``spec`` holds n_features, n_classes and sizes.
BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}


def register_builder(kind: str, builder: Callable[[dict[str, Any]], nn.Module]) -> None:
    """Make ``kind`` buildable from a spec dict."""
    BUILDERS[kind] = builder


def _mlp(spec: dict[str, Any]) -> nn.Module:
    return MLP(spec["n_features"], spec["n_classes"], hidden=spec.get("hidden", (64, 64)),
               activation=spec.get("activation", "relu"), dropout=spec.get("dropout", 0.0))


def _constant(spec: dict[str, Any]) -> nn.Module:
    import torch

    n = int(spec["n_classes"])
    return ConstantClassifier(torch.zeros(n))


register_builder("mlp", _mlp)
register_builder("constant", _constant)
register_builder("cnn", window_classifier_from_spec)  # temporal encoders over windows
register_builder("gru", window_classifier_from_spec)


def _multi_exit(spec: dict[str, Any]) -> nn.Module:
    return MultiExitMLP(spec["n_features"], spec["n_classes"], hidden=spec.get("hidden", (64, 64)),
                        activation=spec.get("activation", "relu"),
                        dropout=spec.get("dropout", 0.0), bottleneck=spec.get("bottleneck", 32))


register_builder("multi_exit", _multi_exit)
# the booster module imports lightgbm only when a booster is built, so registering it costs nothing
register_builder("lightgbm", lambda spec: BoosterClassifier("", spec["n_classes"]))
# classic models: shells of the stored sizes, filled (and checked) by load_state_dict
register_builder("hmm", lambda spec: HMMClassifier(
    n_states=spec["n_states"], n_features=spec["n_features"], n_classes=spec["n_classes"]))
register_builder("logistic", lambda spec: LogisticClassifier(
    n_features=spec["n_features"], n_classes=spec["n_classes"], n_grid=spec["n_grid"]))


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild an (untrained) model from its spec dict."""
    kind = spec.get("kind")
    if kind not in BUILDERS:
        raise ValueError(f"model kind '{kind}' is not one of: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[kind](spec)


def build_model(model_cfg: ModelConfig, n_features: int, n_classes: int) -> nn.Module:
    """Build a fresh model from a ``model`` config section."""
    spec = model_cfg.model_dump()
    spec.update(n_features=n_features, n_classes=n_classes)
    return model_from_spec(spec)
