"""selfdistill: market-regime classifiers improved by self-distillation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selfdistill._version import __version__

__all__ = ["SelfDistillClassifier", "__version__"]

if TYPE_CHECKING:
    from selfdistill.estimator import SelfDistillClassifier


def __getattr__(name: str) -> Any:
    # lazy: `import selfdistill` stays light (no torch) until the estimator is used
    if name == "SelfDistillClassifier":
        from selfdistill.estimator import SelfDistillClassifier

        return SelfDistillClassifier
    raise AttributeError(f"module 'selfdistill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
