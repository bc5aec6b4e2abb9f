"""The run config: defaults, field-path errors, --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfdistill.config import apply_overrides, dump_config, load_config, parse_config
from selfdistill.errors import ConfigError


def test_defaults_are_valid_and_round_trip(tmp_path: Path) -> None:
    cfg = parse_config({})
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"born_again": {"generation": 3}}, "born_again.generation: unknown key"),
        ({"trainng": {}}, "trainng: unknown key"),
        ({"training": {"epochs": "many"}}, "training.epochs"),
        ({"born_again": {"alpha": 1.5}}, "born_again.alpha"),
        ({"born_again": {"alpha": [0.2, -0.1]}}, "born_again.alpha"),
        ({"born_again": {"temperature": 0}}, "born_again.temperature"),
        ({"labels": {"horizon": 0}}, "labels.horizon"),
        ({"methods": ["baseline", "distill"]}, "unknown method 'distill'"),
        ({"methods": []}, "at least one method"),
        ({"data": {"source": "csv"}}, "data.path is required"),
        ({"data": {"source": "ftp"}}, "data.source"),
        ({"split": {"train": 0.5, "val": 0.2, "test": 0.2}}, "must be 1"),
        ({"device": "tpu"}, "device"),
        ({"seed": -1}, "seed: must be greater than or equal to 0"),
        ({"data": {"synthetic": {"seed": 2**64}}}, "data.synthetic.seed"),
        ({"data": {"synthetic": {"interval": "7"}}}, "data.synthetic.interval: must be one of"),
        ({"data": {"bybit": {"interval": 45}}}, "data.bybit.interval: must be one of"),
    ],
)
def test_invalid_configs_name_the_field(raw: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="'x.yaml'")
    assert fragment in str(info.value)
    assert "x.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # a union field (a number or a list of numbers) reads as one plain message
        ({"born_again": {"alpha": 2}},
         "born_again.alpha: must be less than or equal to 1 (got 2)"),
        ({"born_again": {"alpha": [0.1, 2]}},
         "born_again.alpha: item 1: must be less than or equal to 1 (got [0.1, 2])"),
        ({"born_again": {"alpha": "abc"}},
         "born_again.alpha: must be a number or a list of numbers (got 'abc')"),
        ({"born_again": {"alpha": []}}, "born_again.alpha: alpha list must not be empty"),
        ({"labels": {"horizon": 0}}, "labels.horizon: must be greater than or equal to 1 (got 0)"),
        ({"methods": ["foo"]}, "methods: unknown method 'foo'"),
    ],
)
def test_error_messages_read_plainly(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="'x.yaml'")
    message = str(info.value)
    assert message.startswith("invalid config 'x.yaml': ")
    assert expected in message
    for noise in ("constrained-float", "list[", "Input should", "Value error"):
        assert noise not in message


def test_overrides_reach_into_sections_and_parse_yaml() -> None:
    raw = apply_overrides({}, ["born_again.generations=8", "methods=[baseline,born_again]",
                               "training.lr=0.01", "name=x"])
    cfg = parse_config(raw)
    assert cfg.born_again.generations == 8
    assert cfg.methods == ["baseline", "born_again"]
    assert cfg.training.lr == pytest.approx(0.01)
    assert cfg.name == "x"


@pytest.mark.parametrize("bad", ["born_again.generations", "=3", "a..b=1", "x=[unclosed"])
def test_malformed_overrides_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        apply_overrides({}, [bad])


def test_override_into_a_scalar_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_unquoted_numeric_intervals_become_strings() -> None:
    cfg = apply_overrides({}, ["data.synthetic.interval=60", "data.bybit.interval=240",
                               "data.interval=D"])
    parsed = parse_config(cfg)
    assert parsed.data.synthetic.interval == "60"
    assert parsed.data.bybit.interval == "240"
    assert parsed.data.interval == "D"


def test_yaml_dates_are_kept_as_iso_text() -> None:
    cfg = parse_config(apply_overrides({}, ["data.bybit.start=2024-01-01",
                                            "data.bybit.end=2024-02-01T12:00:00",
                                            "data.synthetic.start=2021-05-01"]))
    assert cfg.data.bybit.start == "2024-01-01"
    assert cfg.data.bybit.end is not None
    assert cfg.data.bybit.end.startswith("2024-02-01T12:00")
    assert cfg.data.synthetic.start == "2021-05-01"
