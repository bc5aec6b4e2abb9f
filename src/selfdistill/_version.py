"""The library version, in a module of its own.

Modules that stamp files with the version import it from here rather than from
the package root, whose lazy ``SelfDistillClassifier`` export imports the
estimator: that would make every such module part of an import cycle.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
