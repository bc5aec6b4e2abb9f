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

import re
import reprlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from selfdistill.config.checks import (
    MAX_PARAMETERS,
    estimated_parameters,
    raw_problems,
    suggest_key,
)
from selfdistill.config.overrides import apply_overrides
from selfdistill.config.scaleout import TrackingConfig, TuneConfig
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
from selfdistill.config.yamlsafe import MAX_BYTES, decode_config, load_yaml
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

#: A run name becomes a folder name (runs/<name>-<time>): one plain path component.
_NAME = re.compile(r"\w[\w.\-]{0,99}")

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
    tune: TuneConfig = Field(default_factory=TuneConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

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

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("must be a plain file name: letters, digits, '_', '.', '-', "
                             "starting with a letter or digit, at most 100 characters, no "
                             "'/' (choose the folder with --out)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        """Checks across sections: what would otherwise fail minutes into a run."""
        problems = _cross_section_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

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


def _cross_section_problems(cfg: RunConfig) -> list[str]:
    """Messages, each starting with the field path, for settings that cannot run together."""
    out = []
    m, ev = cfg.model, cfg.evaluation
    n = estimated_parameters(m.kind, m.hidden)
    if n > MAX_PARAMETERS:
        out.append(f"model.hidden: {m.hidden} makes a {m.kind} of about {n:,} parameters "
                   f"({n * 4 / 1e9:,.1f} GB of weights); the most is {MAX_PARAMETERS:,} "
                   f"({MAX_PARAMETERS * 4 / 1e9:g} GB): use narrower or fewer layers")
    if ev.scheme == "holdout" and ev.folds != 1:
        out.append(f"evaluation.folds: is {ev.folds} but scheme 'holdout' has one fold; "
                   "use evaluation.scheme walk_forward or purged_kfold")
    if ev.scheme == "purged_kfold" and ev.folds < 2:
        out.append("evaluation.folds: purged_kfold needs at least 2 folds")
    if "byot" in cfg.methods and (m.kind != "mlp" or len(m.hidden) < 2):
        out.append(f"model: byot needs model.kind mlp with at least 2 layers in model.hidden "
                   f"(an exit after each), got kind '{m.kind}', hidden {m.hidden}")
    if "ema_teacher" in cfg.methods and m.kind == "mlp":
        out.append("model.kind: ema_teacher pretrains a window encoder: set model.kind to "
                   "cnn or gru")
    return out


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


#: Values in messages stay short, however large the value (a list of a million items).
_SHORT = reprlib.Repr()  # keyword arguments need Python 3.12
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 6, 4
_SHORT.maxstring = _SHORT.maxother = 60


def _message(err: Any, root: type[BaseModel]) -> str:
    if err["type"] == "extra_forbidden":
        guess = suggest_key(root, err["loc"])
        if guess:
            return f"unknown key; did you mean '{guess}'?"
        return "unknown key (check the spelling; see the config reference in README.md)"
    msg = str(err["msg"]).replace("Input should be", "must be")
    return msg.removeprefix("Value error, ")


def _wrong_type(err: Any) -> bool:
    """The value is not of a branch's type at all (rather than out of its range)."""
    return str(err["type"]).endswith(("_type", "_parsing")) or err["type"] == "none_required"


def _union_text(entries: list[tuple[str, Any]], root: type[BaseModel]) -> str:
    """One message for a union field: the branches that nearly fit, else what is allowed."""
    near = [(branch, err) for branch, err in entries if not _wrong_type(err)]
    if not near:
        kinds = list(dict.fromkeys(branch for branch, _ in entries))
        return "must be " + " or ".join(kinds)
    if len(near) == 1:
        return _message(near[0][1], root)
    return "; or ".join(f"as {branch}: {_message(err, root)}" for branch, err in near)


def _short(value: object) -> str:
    text = _SHORT.repr(value)
    return text if len(text) <= 100 else text[:96] + " ..."


def _part(part: object) -> str:
    return part if isinstance(part, str) and len(part) <= 60 else _short(part)


def validation_messages(exc: ValidationError, root: type[BaseModel] | None = None
                        ) -> list[tuple[str, str]]:
    """(field path, message) per bad field; a union field's branches give one message.

    ``root`` is the model validated (default :class:`RunConfig`): unknown keys are
    matched against its fields for a did-you-mean. Cross-section messages start with
    their own field path and come with the path ``""``.
    """
    root = RunConfig if root is None else root
    groups: dict[str, list[tuple[str, Any]]] = {}  # field path -> [(branch, error)]
    got: dict[str, str] = {}
    for err in exc.errors():
        loc = list(err["loc"])
        cut = next((i for i, part in enumerate(loc) if _is_branch(part)), len(loc))
        path = ".".join(_part(p) for p in loc[:cut])
        branch = ""
        if cut < len(loc):
            branch = _branch_name(str(loc[cut]))
            rest = [str(p) for p in loc[cut + 1:] if not _is_branch(p)]
            if rest:  # an item of a list branch: name it in the path
                err = {**err, "msg": f"item {'.'.join(rest)}: {err['msg']}"}
        groups.setdefault(path, []).append((branch, err))
        value = err.get("input")
        if err["type"] != "missing" and not isinstance(value, dict) and path not in got:
            got[path] = f" (got {_short(value)})"
    out = []
    for path, entries in groups.items():
        if len(entries) == 1 and not entries[0][0]:
            text = _message(entries[0][1], root)
        else:
            text = _union_text(entries, root)
        out.append((path, f"{text}{got.get(path, '')}"))
    return out


#: Problems named in one message; the rest are counted ("and 7 more").
_SHOWN_PROBLEMS = 4


def _format_problems(problems: list[tuple[str, str]], source: str) -> str:
    shown = [f"{path}: {text}" if path else text for path, text in problems[:_SHOWN_PROBLEMS]]
    more = len(problems) - len(shown)
    return (f"invalid config{' ' + source if source else ''}: " + "; ".join(shown)
            + (f"; and {more} more" if more > 0 else ""))


def parse_config(raw: dict[str, Any] | None, *, source: str = "") -> RunConfig:
    """Validate a config mapping; raise :class:`ConfigError` naming every bad field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config {source} must be a mapping of sections, got {type(raw).__name__}")
    problems = raw_problems(raw, RunConfig)
    if problems:
        raise ConfigError(_format_problems(problems, source))
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_problems(validation_messages(exc), source)) from None


def _read_bytes(p: Path) -> bytes:
    if p.is_dir():
        raise ConfigError(f"config file '{p}' is a directory; give a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{p}': {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise ConfigError(f"config file '{p}' is larger than {MAX_BYTES:,} bytes; a config "
                          "is a few kB (is it the right file?)")
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing, malformed or hostile file.

    Limits and refusals (size, encoding, nesting, aliases, duplicate keys) are those of
    :func:`selfdistill.config.yamlsafe.load_yaml`.
    """
    p = Path(path)
    source = f"config file '{p}'"
    raw = load_yaml(decode_config(_read_bytes(p), source=source), source=source)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must hold a mapping of sections (section: value), "
                          f"got {type(raw).__name__}")
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load, override and validate a run config. ``path=None`` means all defaults."""
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    return parse_config(raw, source=f"'{path}'" if path else "(defaults)")


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (every default written out)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
