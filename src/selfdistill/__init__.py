"""selfdistill: market-regime classifiers improved by self-distillation."""

from __future__ import annotations

__version__ = "0.1.0"
