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
import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from selfdistill.errors import ConfigError

__all__ = [
    "METHOD_NAMES",
    "RunConfig",
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

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
PositiveInt = Annotated[int, Field(ge=1)]


def _interval_text(value: object) -> object:
    """Bar intervals are strings ("60", "D"); accept 60 written without quotes."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: Bybit spelling of a bar interval; an unquoted YAML number (60) is taken as "60".
Interval = Annotated[str, BeforeValidator(_interval_text)]


def _date_text(value: object) -> object:
    """YAML reads 2024-01-01 as a date: keep dates and times as ISO text."""
    return value.isoformat() if isinstance(value, dt.date) else value


#: A date or time as text (ISO); YAML dates are accepted as they are.
DateText = Annotated[str, BeforeValidator(_date_text)]


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


# --------------------------------------------------------------------------- data


class SyntheticConfig(_Section):
    """Regime-switching synthetic market (see ``selfdistill.data.synthetic``)."""

    n_bars: Annotated[int, Field(ge=200)] = 20_000
    interval: Interval = "60"
    start: DateText = "2022-01-01"
    persistence: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.995
    start_price: PositiveFloat = 30_000.0
    seed: int | None = None  # None: use the run's seed


class BybitSourceConfig(_Section):
    """Where ``data.source: bybit`` reads from (and fetches into)."""

    symbol: str = "BTCUSDT"
    interval: Interval = "60"
    category: Literal["spot", "linear", "inverse"] = "linear"
    start: DateText = "2024-01-01"
    end: DateText | None = None
    data_dir: str | None = None
    base_url: str = "https://api.bybit.com"
    offline: bool = False  # True: never fetch, fail if the store lacks the range


class DataConfig(_Section):
    source: Literal["synthetic", "csv", "parquet", "bybit"] = "synthetic"
    path: str | None = None
    # Missing candles. mark: flag the bar after a gap (features / labels never span it);
    # error: refuse the data; sessions: the market closes regularly (stocks: nights,
    # weekends), consecutive rows are consecutive bars; auto: sessions when gaps follow
    # more than 2% of bars, else mark.
    gaps: Literal["auto", "mark", "error", "sessions"] = "auto"
    interval: Interval | None = None  # bar interval for CSV / Parquet (inferred when None)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    bybit: BybitSourceConfig = Field(default_factory=BybitSourceConfig)

    @model_validator(mode="after")
    def _path_for_files(self) -> DataConfig:
        if self.source in ("csv", "parquet") and not self.path:
            raise ValueError(f"data.path is required when data.source is '{self.source}'")
        return self


# ---------------------------------------------------------------- features / labels


class FeaturesConfig(_Section):
    return_windows: list[PositiveInt] = Field(default_factory=lambda: [1, 3, 6, 12, 24, 48])
    volatility_windows: list[PositiveInt] = Field(default_factory=lambda: [12, 24, 96])
    volume_window: PositiveInt = 48
    range_window: PositiveInt = 24
    ma_windows: list[PositiveInt] = Field(default_factory=lambda: [12, 48])
    skew_window: Annotated[int, Field(ge=3)] = 48
    scaler: Literal["standard", "robust", "none"] = "standard"


class LabelsConfig(_Section):
    method: Literal["forward", "same_bar", "triple_barrier"] = "forward"
    horizon: PositiveInt = 12
    k: Annotated[float, Field(ge=0.0)] = 0.5
    vol_span: PositiveInt = 100


class SplitConfig(_Section):
    train: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.6
    val: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    test: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    purge: Annotated[int, Field(ge=0)] = 0  # extra bars beyond the label-overlap rule
    embargo: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split.train + split.val + split.test must be 1, got {total:g}")
        return self


# ------------------------------------------------------------------ model / training


class ModelConfig(_Section):
    kind: Literal["mlp", "cnn", "gru"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 64])
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    window: PositiveInt = 32  # bars per window for the temporal encoders (cnn / gru)


class TrainingConfig(_Section):
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 256
    lr: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    optimizer: Literal["adam", "adamw"] = "adamw"
    patience: Annotated[int, Field(ge=0)] = 5  # 0: no early stopping
    grad_clip: PositiveFloat | None = None


# ------------------------------------------------------------------------- methods


class LabelSmoothingConfig(_Section):
    epsilon: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1


class BornAgainConfig(_Section):
    generations: PositiveInt = 5  # distilled generations after generation 0
    temperature: PositiveFloat = 3.0
    temperature_schedule: Literal["constant", "exponential", "linear", "step"] = "exponential"
    temperature_decay: PositiveFloat = 0.85
    temperature_min: PositiveFloat = 1.0
    temperature_step: PositiveInt = 2  # generations per step for the "step" schedule
    alpha: Probability | list[Probability] = 0.3  # a list: per-generation curriculum (cyclic)
    alpha_schedule: Literal["constant", "exponential", "linear", "step"] = "constant"
    alpha_decay: PositiveFloat = 1.0  # per generation (exponential) or per step (step)
    alpha_final: Probability | None = None  # linear end point / bound of exponential and step
    alpha_step: PositiveInt = 2  # generations per step for the "step" alpha schedule
    # last | mean of all previous generations | snapshots: mean of the previous
    # generation's checkpoints over its last `teacher_snapshots` epochs up to its best one
    teacher: Literal["last", "mean", "snapshots"] = "last"
    teacher_snapshots: Annotated[int, Field(ge=2)] = 3
    target_noise: Annotated[float, Field(ge=0.0)] = 0.0
    patience: Annotated[int, Field(ge=0)] = 0  # 0: run every generation

    @field_validator("alpha")
    @classmethod
    def _alpha_list(cls, v: float | list[float]) -> float | list[float]:
        if isinstance(v, list) and not v:
            raise ValueError("alpha list must not be empty")
        return v

    @model_validator(mode="after")
    def _alpha_list_is_its_own_schedule(self) -> BornAgainConfig:
        if isinstance(self.alpha, list) and self.alpha_schedule != "constant":
            raise ValueError("born_again.alpha is a list (a per-generation curriculum), so "
                             "born_again.alpha_schedule must be 'constant', got "
                             f"'{self.alpha_schedule}'")
        return self


class ByotConfig(_Section):
    temperature: PositiveFloat = 3.0
    ce_weight: Annotated[float, Field(ge=0.0)] = 0.7
    kd_weight: Annotated[float, Field(ge=0.0)] = 0.3
    hint_weight: Annotated[float, Field(ge=0.0)] = 0.03
    bottleneck: PositiveInt = 32
    thresholds: list[Probability] = Field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9])
    latency_samples: Annotated[int, Field(ge=0)] = 200  # rows timed one by one (0: skip)


class SnapshotConfig(_Section):
    cycles: PositiveInt = 4
    epochs_per_cycle: PositiveInt = 8
    temperature: PositiveFloat = 3.0
    alpha: Probability = 0.3
    teacher: Literal["last", "average"] = "last"


class AugmentConfig(_Section):
    """Views of a window for ``ema_teacher`` pretraining; 0 (crop_min 1) turns one off."""

    jitter: Annotated[float, Field(ge=0.0)] = 0.05  # std of additive noise (scaled units)
    scaling: Annotated[float, Field(ge=0.0)] = 0.1  # std of a per-feature factor around 1
    magnitude_warp: Annotated[float, Field(ge=0.0)] = 0.1  # std of a smooth factor curve
    warp_knots: PositiveInt = 4
    time_mask: Probability = 0.1  # largest fraction of the window masked to 0
    crop_min: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8  # smallest crop, fraction of W


class EmaTeacherConfig(_Section):
    """Self-supervised EMA-teacher pretraining (BYOL / DINO forms) and its comparison."""

    form: Literal["byol", "dino"] = "byol"
    divergence: Literal["l2", "kl", "cosine"] = "cosine"
    tau_base: Annotated[float, Field(ge=0.9, lt=1.0)] = 0.996
    heads: PositiveInt = 1
    projection_dim: PositiveInt = 64
    prototypes: PositiveInt = 64
    student_temperature: PositiveFloat = 0.1
    teacher_temperature: PositiveFloat = 0.04
    teacher_temperature_final: PositiveFloat = 0.07
    teacher_temperature_warmup_epochs: Annotated[int, Field(ge=0)] = 5
    center_momentum: Probability = 0.9
    centering: bool = True
    epochs: PositiveInt = 20
    lr: PositiveFloat = 1e-3
    checkpoint: str | None = None  # start supervised methods from this pretrained encoder
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    batch_size: PositiveInt = 256
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    grad_clip: PositiveFloat | None = 3.0
    projection_hidden: PositiveInt = 128
    predictor_hidden: PositiveInt = 128
    bottleneck: PositiveInt = 32  # DINO head width before the prototypes
    head_norm: Literal["layer", "batch", "none"] = "layer"
    buffers: Literal["ema", "copy"] = "ema"  # teacher policy for normalisation buffers
    encoder: Literal["teacher", "student"] = "teacher"  # which encoder downstream uses
    monitor_rows: PositiveInt = 1024  # fixed training windows for the collapse metrics
    label_fractions: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=lambda: [0.05, 0.2, 1.0])  # labelled train rows in the comparison


class LightGBMConfig(_Section):
    """Gradient-boosted trees on the same features (the comparison most users would run)."""

    n_estimators: PositiveInt = 500  # upper bound; early stopping on validation picks fewer
    learning_rate: PositiveFloat = 0.05
    num_leaves: Annotated[int, Field(ge=2)] = 15
    min_child_samples: PositiveInt = 50
    subsample: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    colsample_bytree: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    reg_lambda: Annotated[float, Field(ge=0.0)] = 1.0
    early_stopping_rounds: Annotated[int, Field(ge=0)] = 30  # 0: use every tree


# ---------------------------------------------------------- evaluation / backtest


class EvaluationConfig(_Section):
    scheme: Literal["holdout", "walk_forward", "purged_kfold"] = "holdout"
    folds: PositiveInt = 1
    window: Literal["expanding", "rolling"] = "expanding"
    seeds: PositiveInt = 1
    workers: PositiveInt = 1
    bootstrap: PositiveInt = 2000
    calibrate: bool = True


class BacktestConfig(_Section):
    enabled: bool = True
    fee_bps: Annotated[float, Field(ge=0.0)] = 5.5
    slippage_bps: Annotated[float, Field(ge=0.0)] = 2.0
    allow_short: bool = True
    sizing: Literal["fixed", "confidence"] = "fixed"
    uncertainty_gate: Probability | None = None  # quantile of validation disagreement
    periods_per_year: PositiveFloat | None = None  # None: inferred from the bar interval


class ReportConfig(_Section):
    enabled: bool = True


# --------------------------------------------------------------------------- root


class RunConfig(_Section):
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
