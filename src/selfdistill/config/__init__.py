"""The run-config schema users write in YAML, validated at the boundary.

The YAML file is untrusted input: every field is checked once, with a message that
names the field path and what is allowed. Inside the library code passes the typed
:class:`RunConfig` (or plain arguments), never raw dicts.

- :mod:`selfdistill.config.schema`: :class:`RunConfig`, :func:`load_config`,
  :func:`parse_config`, the field-path error messages;
- :mod:`selfdistill.config.sections`: one pydantic model per section (``data``,
  ``features``, ``born_again``, ...);
- :mod:`selfdistill.config.overrides`: ``--set key.sub=value`` overrides.

Everything users need is re-exported here: ``from selfdistill.config import load_config``.
"""

from __future__ import annotations

from selfdistill.config.overrides import apply_overrides
from selfdistill.config.schema import (
    METHOD_NAMES,
    RunConfig,
    dump_config,
    load_config,
    parse_config,
    read_yaml,
    validation_messages,
)
from selfdistill.config.sections import (
    AugmentConfig,
    BacktestConfig,
    BornAgainConfig,
    BybitSourceConfig,
    ByotConfig,
    DataConfig,
    EmaTeacherConfig,
    EvaluationConfig,
    FeaturesConfig,
    HMMConfig,
    LabelNoiseConfig,
    LabelsConfig,
    LabelSmoothingConfig,
    LightGBMConfig,
    LogisticConfig,
    ModelConfig,
    ReportConfig,
    SnapshotConfig,
    SplitConfig,
    SyntheticConfig,
    TrainingConfig,
)

__all__ = [
    "METHOD_NAMES",
    "AugmentConfig",
    "BacktestConfig",
    "BornAgainConfig",
    "BybitSourceConfig",
    "ByotConfig",
    "DataConfig",
    "EmaTeacherConfig",
    "EvaluationConfig",
    "FeaturesConfig",
    "HMMConfig",
    "LabelNoiseConfig",
    "LabelSmoothingConfig",
    "LabelsConfig",
    "LightGBMConfig",
    "LogisticConfig",
    "ModelConfig",
    "ReportConfig",
    "RunConfig",
    "SnapshotConfig",
    "SplitConfig",
    "SyntheticConfig",
    "TrainingConfig",
    "apply_overrides",
    "dump_config",
    "load_config",
    "parse_config",
    "read_yaml",
    "validation_messages",
]
