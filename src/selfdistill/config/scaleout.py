"""Config sections for many experiments: the search space (``tune``) and ``tracking``.

``tune.space`` maps a dotted config key to what the search may try there::

    tune:
      space:
        born_again.temperature: {low: 1, high: 10, log: true}   # a range
        born_again.generations: {low: 1, high: 5}               # an int field: ints
        model.hidden: [[32], [64, 64]]                          # a list: categorical
      metric: nll

Whether each key and value makes a valid run config is checked by
:func:`selfdistill.tuning.space.space_problems` (it needs the whole schema); the
structure of each entry is checked here. ``tracking.mlflow`` says where MLflow runs go.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from selfdistill.config.sections import Section, Seed

__all__ = ["DEFAULT_MLFLOW_URI", "MlflowConfig", "ParamRange", "TrackingConfig",
           "TuneConfig"]

#: MLflow 3's file store refuses new runs unless MLFLOW_ALLOW_FILE_STORE is set (it is in
#: "maintenance mode"), so the default is a SQLite database next to a local artifact folder.
DEFAULT_MLFLOW_URI = "sqlite:///mlruns.db"
_KEY = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+")


class ParamRange(Section):
    """A numeric range: ints when ``low`` and ``high`` are both whole numbers in the YAML."""

    low: float | int
    high: float | int
    log: bool = False
    step: Annotated[float, Field(gt=0.0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("give either log: true or a step, not both")
        return self


class TuneConfig(Section):
    """``selfdistill tune``: what to search, and the validation score it minimises."""

    #: dotted config key -> a range ({low, high, log, step}) or a list of choices
    space: dict[str, ParamRange | list[Any]] = Field(default_factory=dict)
    #: the method whose validation-chosen member is scored (default: the last of
    #: ``methods`` that is not a simple alternative, e.g. born_again)
    method: str | None = None
    #: the validation metric: mean over folds of NLL (default), Brier or accuracy
    metric: Literal["nll", "brier", "accuracy"] = "nll"
    #: stop a trial whose running fold mean is worse than the median of earlier trials
    pruning: bool = True
    #: trials that are never pruned (the median needs some history)
    startup_trials: Annotated[int, Field(ge=0)] = 3
    #: seed of the sampler (default: the run seed)
    seed: Seed | None = None

    @field_validator("space", mode="before")
    @classmethod
    def _entries(cls, v: Any) -> Any:
        """Each entry checked on its own, so a message names its key."""
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for key, choice in v.items():
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise ValueError(f"'{key}' must be a dotted config key such as "
                                 "born_again.temperature or training.lr")
            if isinstance(choice, list) and not choice:
                raise ValueError(f"'{key}': give a list of at least one choice")
            if isinstance(choice, dict):
                try:
                    choice = ParamRange.model_validate(choice)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"])
                    text = str(first["msg"]).removeprefix("Value error, ")
                    raise ValueError(f"'{key}'{' ' + where if where else ''}: {text}"
                                     ) from None
            elif not isinstance(choice, list):
                raise ValueError(f"'{key}' must be a range {{low: 1, high: 10, log: true}} "
                                 "or a list of choices")
            out[key] = choice
        return out


class MlflowConfig(Section):
    """Where ``--track mlflow`` logs (any MLflow tracking URI)."""

    enabled: bool = False
    #: a database (``sqlite:///mlruns.db``), a server (``http://host:5000``) or a folder
    #: (``./mlruns``, MLflow's file store, which MLflow 3 keeps only in maintenance mode)
    uri: str = DEFAULT_MLFLOW_URI
    #: where artifacts of a new experiment go when the URI is a database (default
    #: ``mlartifacts`` next to the database file)
    artifact_root: str | None = None
    #: the MLflow experiment (default: the run's name)
    experiment: str | None = None


class TrackingConfig(Section):
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
