"""selfdistill: market-regime classifiers improved by self-distillation.

``import selfdistill`` is light (no torch): the estimator is imported when first used.
"""

from __future__ import annotations

import types as _types
import typing as _typing

from selfdistill._version import __version__

__all__ = ["SelfDistillClassifier", "__version__"]

if _typing.TYPE_CHECKING:
    from selfdistill.estimator import SelfDistillClassifier


def __getattr__(name: str) -> _typing.Any:
    # lazy: `import selfdistill` stays light (no torch) until the estimator is used
    if name == "SelfDistillClassifier":
        from selfdistill.estimator import SelfDistillClassifier

        return SelfDistillClassifier
    raise AttributeError(f"module 'selfdistill' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, and the subpackages already imported (``selfdistill.config``)."""
    loaded = [name for name, value in globals().items()
              if not name.startswith("_") and isinstance(value, _types.ModuleType)]
    return sorted({*__all__, *loaded})


del annotations  # the __future__ flag is set; the name need not stay in the namespace
