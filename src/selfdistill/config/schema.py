"""The run config users write in YAML: :class:`RunConfig`, loading and validation.

The YAML file is untrusted input: every field is checked here once, with a
message that names the field path and what is allowed. Inside the library
code passes the typed :class:`RunConfig` (or plain arguments), never raw dicts.

Top-level sections: ``data``, ``features``, ``labels``, ``split``, ``model``,
``training``, ``methods`` (list), one section per method (``born_again``,
``label_smoothing``, ``byot``, ``snapshot``, ``ema_teacher``), ``evaluation``,
``backtest``, ``report``, ``seed``, ``device``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from selfdistill.config.overrides import apply_overrides
from selfdistill.config.sections import (
    BacktestConfig,
    BornAgainConfig,
    ByotConfig,
    DataConfig,
    EmaTeacherConfig,
    EvaluationConfig,
    FeaturesConfig,
    HMMConfig,
    LabelsConfig,
    LabelSmoothingConfig,
    LightGBMConfig,
    LogisticConfig,
    ModelConfig,
    ReportConfig,
    Section,
    Seed,
    SnapshotConfig,
    SplitConfig,
    TrainingConfig,
)
from selfdistill.errors import ConfigError

__all__ = [
    "METHOD_NAMES",
    "RunConfig",
    "dump_config",
    "load_config",
    "parse_config",
    "read_yaml",
    "validation_messages",
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
    "logistic",
    "hmm",
)

# --------------------------------------------------------------------------- root


class RunConfig(Section):
    """The whole run config. Field names are part of the public interface."""

    name: str = "run"
    seed: Seed = 0
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
    logistic: LogisticConfig = Field(default_factory=LogisticConfig)
    hmm: HMMConfig = Field(default_factory=HMMConfig)
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


#: pydantic's names for the branches of a union field, as a reader would say them
_BRANCH_NAMES = {"float": "a number", "constrained-float": "a number", "int": "an integer",
                 "constrained-int": "an integer", "str": "a text", "bool": "true or false",
                 "none": "null", "list": "a list", "dict": "a mapping"}


def _is_branch(part: object) -> bool:
    """True for the loc entries pydantic adds for union branches ('list[float]', 'int')."""
    return isinstance(part, str) and (not part.isidentifier() or part in _BRANCH_NAMES)


def _branch_name(tag: str) -> str:
    if tag in _BRANCH_NAMES:
        return _BRANCH_NAMES[tag]
    outer, _, inner = tag.partition("[")
    if outer == "list" and inner:
        item = _branch_name(inner.rstrip("]"))
        return "a list of " + (item.split(" ", 1)[1] + "s" if " " in item else item)
    if outer.startswith("literal"):
        return "one of " + inner.rstrip("]")
    return tag


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; see the config reference in README.md)"
    msg = str(err["msg"]).replace("Input should be", "must be")
    return msg.removeprefix("Value error, ")


def _wrong_type(err: Any) -> bool:
    """The value is not of a branch's type at all (rather than out of its range)."""
    return str(err["type"]).endswith(("_type", "_parsing")) or err["type"] == "none_required"


def _union_text(entries: list[tuple[str, Any]]) -> str:
    """One message for a union field: the branches that nearly fit, else what is allowed."""
    near = [(branch, err) for branch, err in entries if not _wrong_type(err)]
    if not near:
        kinds = list(dict.fromkeys(branch for branch, _ in entries))
        return "must be " + " or ".join(kinds)
    if len(near) == 1:
        return _message(near[0][1])
    return "; or ".join(f"as {branch}: {_message(err)}" for branch, err in near)


def validation_messages(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) per bad field; a union field's branches give one message."""
    groups: dict[str, list[tuple[str, Any]]] = {}  # field path -> [(branch, error)]
    got: dict[str, str] = {}
    for err in exc.errors():
        loc = list(err["loc"])
        cut = next((i for i, part in enumerate(loc) if _is_branch(part)), len(loc))
        path = ".".join(str(p) for p in loc[:cut]) or "(root)"
        branch = ""
        if cut < len(loc):
            branch = _branch_name(str(loc[cut]))
            rest = [str(p) for p in loc[cut + 1:] if not _is_branch(p)]
            if rest:  # an item of a list branch: name it in the path
                err = {**err, "msg": f"item {'.'.join(rest)}: {err['msg']}"}
        groups.setdefault(path, []).append((branch, err))
        value = err.get("input")
        if err["type"] != "missing" and not isinstance(value, dict) and path not in got:
            got[path] = f" (got {value!r})"
    out = []
    for path, entries in groups.items():
        if len(entries) == 1 and not entries[0][0]:
            text = _message(entries[0][1])
        else:
            text = _union_text(entries)
        out.append((path, f"{text}{got.get(path, '')}"))
    return out


def _format_validation_error(exc: ValidationError, source: str) -> str:
    return f"invalid config {source}: " + "; ".join(
        f"{path}: {text}" for path, text in validation_messages(exc))


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
