"""The run-config schema users write in YAML, validated at the boundary.

The YAML file is untrusted input: every field is checked here once, with a
message that names the field path and what is allowed. Inside the library
code passes the typed :class:`RunConfig` (or plain arguments), never raw dicts.

Top-level sections: ``data``, ``features``, ``labels``, ``split``, ``model``,
``training``, ``methods`` (list), one section per method (``born_again``,
``label_smoothing``, ``byot``, ``snapshot``, ``ema_teacher``), ``evaluation``,
``backtest``, ``report``, ``seed``, ``device``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from selfdistill.config_sections import (
    AugmentConfig,
    BacktestConfig,
    BornAgainConfig,
    BybitSourceConfig,
    ByotConfig,
    DataConfig,
    EmaTeacherConfig,
    EvaluationConfig,
    FeaturesConfig,
    LabelsConfig,
    LabelSmoothingConfig,
    LightGBMConfig,
    ModelConfig,
    ReportConfig,
    Section,
    SnapshotConfig,
    SplitConfig,
    SyntheticConfig,
    TrainingConfig,
)
from selfdistill.errors import ConfigError

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
    "LabelSmoothingConfig",
    "LabelsConfig",
    "LightGBMConfig",
    "ModelConfig",
    "ReportConfig",
    "RunConfig",
    "SnapshotConfig",
    "SplitConfig",
    "SyntheticConfig",
    "TrainingConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]

#: Methods a run can train, in the order the table shows them.
METHOD_NAMES = (
    "majority",
    "baseline",
    "label_smoothing",
    "born_again",
    "byot",
    "snapshot",
    "ema_teacher",
    "lightgbm",
)

# --------------------------------------------------------------------------- root


class RunConfig(Section):
    """The whole run config. Field names are part of the public interface."""

    name: str = "run"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    methods: list[str] = Field(
        default_factory=lambda: ["majority", "baseline", "label_smoothing", "born_again"]
    )
    label_smoothing: LabelSmoothingConfig = Field(default_factory=LabelSmoothingConfig)
    born_again: BornAgainConfig = Field(default_factory=BornAgainConfig)
    byot: ByotConfig = Field(default_factory=ByotConfig)
    snapshot: SnapshotConfig = Field(default_factory=SnapshotConfig)
    ema_teacher: EmaTeacherConfig = Field(default_factory=EmaTeacherConfig)
    lightgbm: LightGBMConfig = Field(default_factory=LightGBMConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="before")
    @classmethod
    def _single_method(cls, raw: Any) -> Any:
        """``method: byot`` is shorthand for ``methods: [byot]``."""
        if not isinstance(raw, dict) or "method" not in raw:
            return raw
        if "methods" in raw:
            raise ValueError("give either 'method' (one method) or 'methods' (a list), not "
                             "both; e.g. --set methods=[byot] replaces the config's list")
        raw = dict(raw)
        raw["methods"] = [raw.pop("method")]
        return raw

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("methods must name at least one method")
        for name in v:
            if name not in METHOD_NAMES:
                raise ValueError(
                    f"unknown method '{name}'; valid methods: {', '.join(METHOD_NAMES)}"
                )
        if len(set(v)) != len(v):
            raise ValueError(f"methods lists a method twice: {v}")
        return v


# ------------------------------------------------------------------------ loading


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the config reference in README.md)"
        elif err["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be")
        value = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{path}: {msg}{shown}")
    return f"invalid config {source}: " + "; ".join(lines)


def parse_config(raw: dict[str, Any] | None, *, source: str = "") -> RunConfig:
    """Validate a config mapping; raise :class:`ConfigError` naming every bad field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config {source} must be a mapping of sections, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set '{item}' must look like key=value, e.g. born_again.generations=8")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set '{item}' has an empty key; use dotted keys like training.lr=0.01")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set '{item}': value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config dict."""
    out = copy.deepcopy(raw)
    for item in overrides:
        path, value = _parse_override(item)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set '{item}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{p}' is not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of sections")
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load, override and validate a run config. ``path=None`` means all defaults."""
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    return parse_config(raw, source=f"'{path}'" if path else "(defaults)")


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (every default written out)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
