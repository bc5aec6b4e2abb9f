"""The value types and the base model every config section is built from.

:class:`Section` rejects unknown keys and non-finite numbers; the ``Annotated`` types
say what a field accepts (intervals in Bybit's spelling or a common alias, seeds,
ISO dates). :mod:`selfdistill.config.sections` and :mod:`selfdistill.config.pretraining`
build the sections from them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from selfdistill.config.intervals import canonical_interval

__all__ = ["DateText", "Interval", "PositiveFloat", "PositiveInt", "Probability", "Section",
           "Seed"]


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
PositiveInt = Annotated[int, Field(ge=1)]


def _interval_text(value: object) -> object:
    """Bar intervals are strings ("60", "D"); accept 60 written without quotes."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _known_interval(value: str) -> str:
    return canonical_interval(value)  # "1h" -> "60"; the error suggests a valid spelling


#: Bybit spelling of a bar interval; an unquoted YAML number (60) is taken as "60", and the
#: common spellings (1m 5m 15m 1h 4h 1d 1w) as Bybit's (see selfdistill.config.intervals).
Interval = Annotated[str, BeforeValidator(_interval_text), AfterValidator(_known_interval)]

#: Seeds feed NumPy and torch generators: whole numbers from 0 to 2**63 - 1.
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]


def _date_text(value: object) -> object:
    """YAML reads 2024-01-01 as a date: keep dates and times as ISO text."""
    return value.isoformat() if isinstance(value, dt.date) else value


#: A date or time as text (ISO); YAML dates are accepted as they are.
DateText = Annotated[str, BeforeValidator(_date_text)]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently dropped.

    Checks every section needs (non-finite numbers, true / false where a number goes,
    sizes) run over the raw mapping before validation, in :mod:`selfdistill.config.checks`,
    so fields added later get them too.
    """

    # allow_inf_nan=False: .inf / .nan (and "inf" as text) are errors in every float field
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True,
                              allow_inf_nan=False)
