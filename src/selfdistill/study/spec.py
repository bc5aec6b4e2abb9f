"""The study file: a base run config and the grid of points to run it at.

::

    name: noise
    base: ../configs/walk_forward.yaml     # a run config (relative to this file) or inline
    set: {evaluation.seeds: 2}             # dotted keys applied to every point
    methods: [baseline, born_again, logistic]
    datasets:                              # optional; default: the base config's data
      synthetic: {set: {data.source: synthetic}}
      eurusd_1h: {package_file: "backtesting:test/EURUSD.csv"}
    variants:                              # optional named bundles, not crossed with each other
      constant_t3: {born_again.temperature_schedule: constant}
    grid:                                  # crossed: every combination is a point
      labels.noise.rate: [0.0, 0.2]
      data.synthetic.n_bars: [2000, 8000]

A point is one dataset x one variant x one combination of the grid's values, and one
ordinary run config. Methods are not crossed: every point runs all of ``methods`` on the
same folds and seeds, so each method is compared with ``baseline`` and the simple
alternatives on the same bars (a grid key ``methods`` with lists of methods still works).
A point's config is the base, then ``set`` and ``methods``, the dataset, the variant and
the grid values, in that order. Every point's config is validated like a run config
(:func:`selfdistill.config.parse_config`) before anything runs, and every dotted key is
checked against the run-config schema with a did-you-mean, so a typo fails in a second,
not an hour into the study. ``package_file`` names candles shipped inside an installed
package (``package:path/inside/it``); the package is located, never imported, and nothing
is downloaded.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator

from selfdistill.config import RunConfig, parse_config, read_yaml, validation_messages
from selfdistill.config.checks import raw_problems, section_at, suggest_key
from selfdistill.config.overrides import set_key
from selfdistill.config.sections import Section
from selfdistill.errors import ConfigError

__all__ = ["MAX_POINTS", "DatasetSpec", "Point", "Study", "StudyConfig", "load_study",
           "parse_study"]

#: More points than this is a typo in the grid, not a study.
MAX_POINTS = 1000
_NAME = re.compile(r"\w[\w.\-]{0,59}")
_KEY = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_0-9][a-z0-9_]*)*")


def _plain_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"'{value}' must be a plain name: letters, digits, '_', '.', '-', "
                         "starting with a letter or digit, at most 60 characters")
    return value


PlainName = Annotated[str, Field(min_length=1)]
Settings = dict[str, Any]


class DatasetSpec(Section):
    """One market of a study: config keys for it, or candles shipped in a package."""

    #: ``package:path/inside/it``: a CSV or Parquet file inside an installed package
    package_file: str | None = None
    #: dotted config keys for this dataset (e.g. ``backtest.periods_per_year: 252``)
    set: Settings = Field(default_factory=dict)

    @field_validator("package_file")
    @classmethod
    def _package_file(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[\w./\-]+", v):
            raise ValueError("must look like 'package:path/inside/it.csv', e.g. "
                             "'backtesting:test/EURUSD.csv'")
        return v


class StudyConfig(Section):
    """The study file (see the module docstring)."""

    name: PlainName = "study"
    base: str | dict[str, Any] | None = None
    set: Settings = Field(default_factory=dict)
    methods: list[str] | None = None
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    variants: dict[str, Settings] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _plain_name(v)

    @field_validator("datasets", "variants")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            _plain_name(str(name))
        return v

    @field_validator("grid")
    @classmethod
    def _distinct(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"{key} has no values; give at least one")
            texts = [json.dumps(x, sort_keys=True, default=str) for x in values]
            if len(set(texts)) != len(texts):
                raise ValueError(f"{key} lists a value twice: {values}")
        return v


@dataclass(frozen=True)
class Point:
    """One run of the study: where it sits in the grid, and its validated config."""

    name: str
    dataset: str
    variant: str | None
    settings: dict[str, Any]  # grid key -> value
    config: RunConfig


@dataclass(frozen=True)
class Study:
    """A validated study: its file, its settings and its points in run order."""

    spec: StudyConfig
    points: tuple[Point, ...]
    text: str = ""  # the study file as written (kept in the study directory)
    source: str = ""

    @property
    def axes(self) -> list[str]:
        """The grid keys, in the file's order."""
        return list(self.spec.grid)


# ------------------------------------------------------------------ key checks


def _key_problem(key: str) -> str | None:
    """Why a dotted key names no run-config field (with a did-you-mean), or None."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return "must be a dotted config key such as labels.noise.rate"
    parts = key.split(".")
    for i, part in enumerate(parts):
        section = section_at(RunConfig, parts[:i])
        if section is None:  # below a mapping or list field: the point's validation checks
            return None
        if part not in section.model_fields:
            guess = suggest_key(RunConfig, parts[: i + 1])
            if guess is None:
                return f"'{key}' is not a run-config key (see the config reference in README.md)"
            fixed = ".".join([*parts[:i], guess, *parts[i + 1:]])  # the rest may be right
            shown = fixed if _key_problem(fixed) is None else ".".join([*parts[:i], guess])
            return f"'{key}' is not a run-config key; did you mean '{shown}'?"
    return None


def _settings_problems(spec: StudyConfig) -> Iterator[tuple[str, str]]:
    named = [("set", spec.set), ("grid", spec.grid)]
    named += [(f"datasets.{n}.set", d.set) for n, d in spec.datasets.items()]
    named += [(f"variants.{n}", v) for n, v in spec.variants.items()]
    for where, settings in named:
        for key in settings:
            problem = _key_problem(key)
            if problem:
                yield f"{where}.{key}", problem
    if spec.methods is not None and "methods" in spec.set:
        yield "methods", "give either methods or set.methods, not both"


def _problems_text(problems: list[tuple[str, str]], source: str) -> str:
    shown = "; ".join(f"{path}: {text}" if path else text for path, text in problems[:4])
    more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
    return f"invalid study {source}: {shown}{more}"


def parse_study(raw: dict[str, Any] | None, *, source: str = "", folder: Path | None = None,
                text: str = "") -> Study:
    """Validate a study mapping and every point's run config; raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"study {source} must be a mapping (name, base, grid, ...), got "
                          f"{type(raw).__name__}")
    problems = raw_problems(raw, StudyConfig)
    if problems:
        raise ConfigError(_problems_text(problems, source))
    try:
        spec = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems_text(validation_messages(exc, StudyConfig), source)
                          ) from None
    problems = list(_settings_problems(spec))
    if problems:
        raise ConfigError(_problems_text(problems, source))
    base = _base_config(spec, folder or Path.cwd(), source)
    return Study(spec, tuple(_points(spec, base, source)), text, source)


def load_study(path: str | Path) -> Study:
    """Read and validate a study file (the same limits as a run config's YAML)."""
    p = Path(path)
    raw = read_yaml(p)
    text = p.read_text(encoding="utf-8", errors="replace")
    return parse_study(raw, source=f"'{p}'", folder=p.parent, text=text)


# ------------------------------------------------------------------ points


def _base_config(spec: StudyConfig, folder: Path, source: str) -> dict[str, Any]:
    if spec.base is None:
        return {}
    if isinstance(spec.base, dict):
        return copy.deepcopy(spec.base)
    path = Path(spec.base).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise ConfigError(f"invalid study {source}: base: run config '{path}' does not exist "
                          "(a relative path is read from the study file's folder)")
    return read_yaml(path)


def package_file(spec: str, *, where: str = "package_file") -> Path:
    """The file ``package:path`` names inside an installed package (never imported)."""
    package, _, inner = spec.partition(":")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    folders = list(found.submodule_search_locations or []) if found is not None else []
    if not folders:
        raise ConfigError(f"{where}: package '{package}' is not installed; install it "
                          f"(pip install {package}, or pip install 'selfdistill[studies]' "
                          "for the shipped studies' data)")
    path = Path(folders[0]) / inner
    if not path.is_file():
        raise ConfigError(f"{where}: '{inner}' is not a file of package '{package}' "
                          f"(looked in {folders[0]})")
    return path


def _dataset_settings(name: str, dataset: DatasetSpec) -> Settings:
    settings: Settings = {}
    if dataset.package_file is not None:
        path = package_file(dataset.package_file, where=f"datasets.{name}.package_file")
        source = "parquet" if path.suffix in (".parquet", ".pq") else "csv"
        settings.update({"data.source": source, "data.path": str(path)})
    return {**settings, **dataset.set}


def _base_dataset(base: dict[str, Any]) -> str:
    """The dataset name of a study without ``datasets``: the file's stem, or the source."""
    data: dict[str, Any] = base["data"] if isinstance(base.get("data"), dict) else {}
    path, source = data.get("path"), data.get("source", "synthetic")
    name = re.sub(r"[^\w.\-]", "_", Path(str(path)).stem)[:40] if path else str(source)
    return name if _NAME.fullmatch(name) else "data"


def _value_text(key: str, value: Any, index: int) -> str:
    """A grid value as a name part: 0.1 -> '0.1', 2000 -> '2000', [..] -> its index."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str) and re.fullmatch(r"[\w.\-]{1,24}", value):
        return value
    return str(index)


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each grid key's last part, or the whole key where two last parts collide."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def _combinations(spec: StudyConfig) -> list[dict[str, tuple[int, Any]]]:
    keys = list(spec.grid)
    choices = [list(enumerate(spec.grid[k])) for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def _point_name(dataset: str, variant: str | None, combo: dict[str, tuple[int, Any]],
                short: dict[str, str]) -> str:
    parts = [dataset] + ([variant] if variant else [])
    parts += [f"{short[k]}{_value_text(k, v, i)}" for k, (i, v) in combo.items()]
    return "-".join(parts)


def _apply(raw: dict[str, Any], settings: Settings) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for key, value in settings.items():
        set_key(out, key.split("."), copy.deepcopy(value), source=f"study key '{key}'")
    return out


def _points(spec: StudyConfig, base: dict[str, Any], source: str) -> Iterator[Point]:
    common = dict(spec.set) | ({"methods": spec.methods} if spec.methods is not None else {})
    start = _apply(base, common)
    datasets = {n: _dataset_settings(n, d) for n, d in spec.datasets.items()} or \
        {_base_dataset(start): {}}
    variants: dict[str | None, Settings] = {None: {}}
    if spec.variants:
        variants = {name: settings for name, settings in spec.variants.items()}
    combos = _combinations(spec)
    total = len(datasets) * len(variants) * len(combos)
    if total > MAX_POINTS:
        raise ConfigError(f"invalid study {source}: {total:,} points; the most is "
                          f"{MAX_POINTS:,} (shorten the grid)")
    short = _short_keys(list(spec.grid))
    seen: set[str] = set()
    for (dataset, data_settings), (variant, variant_settings), combo in itertools.product(
            datasets.items(), variants.items(), combos):
        name = _point_name(dataset, variant, combo, short)
        if len(name) > 100 or name in seen:
            raise ConfigError(f"invalid study {source}: point name '{name[:60]}' is too "
                              "long or not unique; use shorter dataset / variant names")
        seen.add(name)
        settings = {k: v for k, (_, v) in combo.items()}
        raw = _apply(start, {**data_settings, **variant_settings, **settings, "name": name})
        yield Point(name, dataset, variant, settings,
                    parse_config(raw, source=f"(study {source}, point '{name}')"))
