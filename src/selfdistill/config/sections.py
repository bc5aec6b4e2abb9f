"""The sections of the run config (``data``, ``features``, ``born_again``, ...).

Each section is a pydantic model that rejects unknown keys; :mod:`selfdistill.config.schema`
assembles them into :class:`~selfdistill.config.RunConfig`, and :mod:`selfdistill.config`
re-exports them. The value types and the base model are in :mod:`selfdistill.config.types`,
the ``ema_teacher`` section in :mod:`selfdistill.config.pretraining` (both re-exported here).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from selfdistill.config.intervals import INTERVALS
from selfdistill.config.pretraining import (
    EMA_TEACHER_RANGES,
    OBJECTIVES,
    AugmentConfig,
    EmaTeacherConfig,
    HyperparameterWarning,
)
from selfdistill.config.types import (
    DateText,
    Interval,
    PositiveFloat,
    PositiveInt,
    Probability,
    Section,
    Seed,
)

__all__ = [
    "EMA_TEACHER_RANGES",
    "INTERVALS",
    "OBJECTIVES",
    "AugmentConfig",
    "BacktestConfig",
    "BornAgainConfig",
    "BybitSourceConfig",
    "ByotConfig",
    "DataConfig",
    "DateText",
    "EmaTeacherConfig",
    "EvaluationConfig",
    "FeaturesConfig",
    "HMMConfig",
    "HyperparameterWarning",
    "Interval",
    "LabelNoiseConfig",
    "LabelSmoothingConfig",
    "LabelsConfig",
    "LightGBMConfig",
    "LogisticConfig",
    "ModelConfig",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "ReportConfig",
    "Section",
    "Seed",
    "SnapshotConfig",
    "SplitConfig",
    "SyntheticConfig",
    "TrainingConfig",
]


# --------------------------------------------------------------------------- data


class SyntheticConfig(Section):
    """Regime-switching synthetic market (see ``selfdistill.data.synthetic``)."""

    n_bars: Annotated[int, Field(ge=200)] = 20_000
    interval: Interval = "60"
    start: DateText = "2022-01-01"
    persistence: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.995
    start_price: PositiveFloat = 30_000.0
    seed: Seed | None = None  # None: use the run's seed


class BybitSourceConfig(Section):
    """Where ``data.source: bybit`` reads from (and fetches into)."""

    symbol: str = "BTCUSDT"
    interval: Interval = "60"
    category: Literal["spot", "linear", "inverse"] = "linear"
    start: DateText = "2024-01-01"
    end: DateText | None = None
    data_dir: str | None = None
    base_url: str = "https://api.bybit.com"
    offline: bool = False  # True: never fetch, fail if the store lacks the range


class DataConfig(Section):
    source: Literal["synthetic", "csv", "parquet", "bybit"] = "synthetic"
    path: str | None = None
    # Missing candles. mark: flag the bar after a gap (features / labels never span it);
    # error: refuse the data; sessions: the market closes regularly (stocks: nights,
    # weekends), consecutive rows are consecutive bars; auto: sessions when gaps follow
    # more than 2% of bars, else mark.
    gaps: Literal["auto", "mark", "error", "sessions"] = "auto"
    interval: Interval | None = None  # bar interval for CSV / Parquet (inferred when None)
    # How text dates are read: None infers it from the whole column (ISO, or the one
    # day/month order that reads every value in time order); "dayfirst" / "monthfirst",
    # or a strptime format such as "%d.%m.%Y %H:%M", forces it.
    time_format: str | None = None
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    bybit: BybitSourceConfig = Field(default_factory=BybitSourceConfig)

    @field_validator("time_format")
    @classmethod
    def _time_format(cls, v: str | None) -> str | None:
        if v is None or v in ("dayfirst", "monthfirst") or "%" in v:
            return v
        raise ValueError("must be 'dayfirst', 'monthfirst' or a strptime format such as "
                         "'%d/%m/%Y %H:%M'")

    @model_validator(mode="after")
    def _path_for_files(self) -> DataConfig:
        if self.source in ("csv", "parquet") and not self.path:
            raise ValueError(f"data.path is required when data.source is '{self.source}'")
        return self


# ---------------------------------------------------------------- features / labels


class FeaturesConfig(Section):
    return_windows: list[PositiveInt] = Field(default_factory=lambda: [1, 3, 6, 12, 24, 48])
    volatility_windows: list[PositiveInt] = Field(default_factory=lambda: [12, 24, 96])
    volume_window: PositiveInt = 48
    range_window: PositiveInt = 24
    ma_windows: list[PositiveInt] = Field(default_factory=lambda: [12, 48])
    skew_window: Annotated[int, Field(ge=3)] = 48
    scaler: Literal["standard", "robust", "none"] = "standard"
    # Volume features: auto drops them when volume is constant (FX / index exports often
    # carry volume 0); on keeps them (an error on constant volume); off drops them.
    volume: Literal["auto", "on", "off"] = "auto"


def _noise_rate(value: object) -> object:
    """``noise: 0.2`` is shorthand for ``noise: {rate: 0.2}`` (symmetric)."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return {"rate": value} if is_number else value


class LabelNoiseConfig(Section):
    """Controlled noise on the TRAINING labels (validation and test keep the clean ones).

    Each training row's label is changed with probability ``rate``: to one of the other
    classes at random (``symmetric``), or, for a class-conditional kind such as
    ``bull_sideways``, between the two named classes only (rows of the third class keep
    theirs). The draw is per row and seeded by the cell's seed (or ``seed``), so a bar
    keeps the same noisy label in every fold that trains on it (see
    :func:`selfdistill.labels.noisy_labels`).
    """

    rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    kind: Literal["symmetric", "bull_sideways", "bear_sideways", "bull_bear"] = "symmetric"
    seed: Seed | None = None  # None: each cell's seed


class LabelsConfig(Section):
    method: Literal["forward", "same_bar", "triple_barrier"] = "forward"
    horizon: PositiveInt = 12
    k: Annotated[float, Field(ge=0.0)] = 0.5
    vol_span: PositiveInt = 100
    noise: Annotated[LabelNoiseConfig, BeforeValidator(_noise_rate)] = Field(
        default_factory=LabelNoiseConfig)


class SplitConfig(Section):
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


class ModelConfig(Section):
    kind: Literal["mlp", "cnn", "gru"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 64])
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    window: PositiveInt = 32  # bars per window for the temporal encoders (cnn / gru)


class TrainingConfig(Section):
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 256
    lr: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    optimizer: Literal["adam", "adamw"] = "adamw"
    patience: Annotated[int, Field(ge=0)] = 5  # 0: no early stopping
    grad_clip: PositiveFloat | None = None


# ------------------------------------------------------------------------- methods


class LabelSmoothingConfig(Section):
    epsilon: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1


class BornAgainConfig(Section):
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


class ByotConfig(Section):
    temperature: PositiveFloat = 3.0
    ce_weight: Annotated[float, Field(ge=0.0)] = 0.7
    kd_weight: Annotated[float, Field(ge=0.0)] = 0.3
    hint_weight: Annotated[float, Field(ge=0.0)] = 0.03
    bottleneck: PositiveInt = 32
    thresholds: list[Probability] = Field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9])
    latency_samples: Annotated[int, Field(ge=0)] = 200  # rows timed one by one (0: skip)


class SnapshotConfig(Section):
    cycles: PositiveInt = 4
    epochs_per_cycle: PositiveInt = 8
    temperature: PositiveFloat = 3.0
    alpha: Probability = 0.3
    teacher: Literal["last", "average"] = "last"


class LightGBMConfig(Section):
    """Gradient-boosted trees on the same features (the comparison most users would run)."""

    n_estimators: PositiveInt = 500  # upper bound; early stopping on validation picks fewer
    learning_rate: PositiveFloat = 0.05
    num_leaves: Annotated[int, Field(ge=2)] = 15
    min_child_samples: PositiveInt = 50
    subsample: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    colsample_bytree: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    reg_lambda: Annotated[float, Field(ge=0.0)] = 1.0
    early_stopping_rounds: Annotated[int, Field(ge=0)] = 30  # 0: use every tree


class LogisticConfig(Section):
    """Multinomial logistic regression on the same scaled features (method ``logistic``)."""

    #: inverse L2 strengths C to try; the lowest validation NLL wins (ties: the smaller C)
    grid: Annotated[list[PositiveFloat], Field(min_length=1)] = Field(
        default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    max_iter: PositiveInt = 1000  # lbfgs iterations per fit


class HMMConfig(Section):
    """A Gaussian HMM on the same features, forward-filtered (method ``hmm``)."""

    n_states: Annotated[int, Field(ge=2, le=50)] = 3  # hidden states, mapped to classes
    n_init: PositiveInt = 3  # EM restarts; the highest training log-likelihood wins
    n_iter: PositiveInt = 100  # EM iterations per restart at most
    covariance: Literal["diag"] = "diag"  # diagonal Gaussian emissions


# ---------------------------------------------------------- evaluation / backtest


#: a Ray cluster address: ray://host:port (Ray Client) or host:port (the GCS)
_RAY_ADDRESS = re.compile(r"(ray://)?[\w.\-]+:\d{1,5}")


class EvaluationConfig(Section):
    scheme: Literal["holdout", "walk_forward", "purged_kfold"] = "holdout"
    folds: PositiveInt = 1
    window: Literal["expanding", "rolling"] = "expanding"
    seeds: PositiveInt = 1
    workers: PositiveInt = 1
    calibrate: bool = True
    #: How the p-values of a run's many comparisons (the results table) are adjusted as
    #: one family: ``bh`` (Benjamini-Hochberg false discovery rate) or ``holm``
    #: (family-wise error). The findings' few tests are always Holm-adjusted.
    adjust: Literal["holm", "bh"] = "bh"
    #: The metric the findings answer "does it beat ..." on.
    primary_metric: Literal["accuracy", "nll", "brier"] = "accuracy"
    #: Where the cells run: ``local`` (this machine's process pool) or ``ray`` (a Ray
    #: cluster; ``pip install selfdistill[ray]``). Results are the same either way.
    backend: Literal["local", "ray"] = "local"
    #: The Ray cluster to join: ``auto`` or ``ray://host:port``; None starts Ray here.
    ray_address: str | None = None

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, v: str | None) -> str | None:
        if v is None or v == "auto" or _RAY_ADDRESS.fullmatch(v):
            return v
        raise ValueError("must be 'auto' (a cluster started on this machine with `ray start`) "
                         "or an address like 'ray://head-node:10001'")


class BacktestConfig(Section):
    enabled: bool = True
    fee_bps: Annotated[float, Field(ge=0.0)] = 5.5
    slippage_bps: Annotated[float, Field(ge=0.0)] = 2.0
    allow_short: bool = True
    sizing: Literal["fixed", "confidence"] = "fixed"
    uncertainty_gate: Probability | None = None  # quantile of validation disagreement
    periods_per_year: PositiveFloat | None = None  # None: inferred from the bar interval


class ReportConfig(Section):
    enabled: bool = True
