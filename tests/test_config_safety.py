"""The config is untrusted input: hostile YAML, non-finite numbers, lax types, paths as names.

One test (or more) per defect of issue 13's config part; each failed before the fix.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from selfdistill.config import apply_overrides, load_config, parse_config
from selfdistill.config.checks import MAX_PARAMETERS, estimated_parameters
from selfdistill.config.intervals import INTERVAL_ALIASES, canonical_interval
from selfdistill.config.yamlsafe import MAX_DEPTH, MAX_VALUES, load_yaml
from selfdistill.errors import ConfigError

#: The old parser hung for minutes on these inputs; speed is measured in
#: benchmarks/bench_startup.py, so this bound only catches a hang, on any machine load.
HANG_SECONDS = 30.0

def laughs(levels: int = 9, *, inline: bool = False) -> str:
    """The 'billion laughs': each level repeats the previous one 9 times (9**levels)."""
    rows = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, name in zip("abcdefghij"[: levels - 1], "bcdefghijk"[: levels - 1], strict=True):
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "{" + ", ".join(rows) + "}" if inline else "\n".join(rows) + "\n"


def config_error(path: Path | None, overrides: list[str] | None = None) -> str:
    """The ConfigError message of loading ``path``; fails the test if it loads."""
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ----------------------------------------------------------- 2: billion laughs


def test_billion_laughs_file_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs())
    assert len(path.read_bytes()) < 400
    start = time.perf_counter()
    message = config_error(path)
    assert time.perf_counter() - start < HANG_SECONDS  # a hang detector, not a speed target
    assert f"more than {MAX_VALUES:,} values" in message


def test_laughs_inside_a_real_field_and_through_set(tmp_path: Path) -> None:
    path = tmp_path / "field.yaml"
    path.write_text(laughs() + "born_again:\n  alpha: *i\n")
    start = time.perf_counter()
    assert "expands to more than" in config_error(path)
    assert "expands to more than" in config_error(
        None, [f"born_again.alpha={laughs(inline=True)}"])
    assert time.perf_counter() - start < HANG_SECONDS  # a hang detector, not a speed target


def test_moderate_expansion_is_refused_with_a_short_message(tmp_path: Path) -> None:
    # 9**6 = 531,441 strings: the old code validated them all and printed their repr
    path = tmp_path / "six.yaml"
    path.write_text(laughs(6))
    message = config_error(path)
    assert len(message) < 300


def test_aliases_within_the_limits_still_work() -> None:
    text = "base: &base {lr: 0.01}\ntraining:\n  <<: *base\n  epochs: 3\n"
    raw = load_yaml(text, source="x")
    assert raw["training"] == {"lr": 0.01, "epochs": 3}


def test_an_alias_that_contains_itself_is_refused() -> None:
    with pytest.raises(ConfigError, match="refers to the mapping or list that contains it"):
        load_yaml("a: &a [1, *a]", source="x")


def test_a_long_value_in_an_error_is_cut_short() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"training": {"epochs": ["x" * 1000] * 1000}})
    assert len(str(info.value)) < 400


# ------------------------------------------------------- 3: the name is a path


@pytest.mark.parametrize("name", ["/abs/dir/x", "../../..", "a/b", "..", ".hidden", "a\\b",
                                  "", "x" * 101, "a b", "c:x", "nul\x00"])
def test_names_that_are_not_one_plain_path_component_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="name: must be a plain file name"):
        parse_config({"name": name})


@pytest.mark.parametrize("name", ["run", "btc-1h", "exp_3.v2", "régime", "9"])
def test_plain_names_are_accepted(name: str) -> None:
    assert parse_config({"name": name}).name == name


# --------------------------------------- 7: encodings, binary files, deep nesting


def test_non_utf8_config_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: régime\n".encode("latin-1"))
    assert "is not UTF-8 text (byte 0xe9 on line 1)" in config_error(path)


def test_utf8_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("name: régime\n".encode("utf-8-sig"))
    assert load_config(path).name == "régime"


@pytest.mark.parametrize(("data", "fragment"), [
    (bytes(range(256)) * 4, "is a binary file"),
    ("name: x\n".encode("utf-16"), "is UTF-16 text"),
    (b"PK\x03\x04" + bytes(200), "is a binary file"),
    (b"a" * 200_000, "larger than 100,000 bytes"),
    (b"name: \x07", "is not allowed"),
])
def test_binary_and_oversized_files_are_config_errors(tmp_path: Path, data: bytes,
                                                      fragment: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    assert fragment in config_error(path)


@pytest.mark.parametrize("text", ["[" * 10_000 + "]" * 10_000, "{a: " * 10_000 + "1" + "}" * 10_000,
                                  "- " * 10_000 + "1"])
def test_deep_nesting_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    start = time.perf_counter()
    assert f"nests deeper than {MAX_DEPTH} levels" in config_error(path)
    assert time.perf_counter() - start < HANG_SECONDS  # a hang detector, not a speed target


def test_deep_nesting_from_python_is_a_config_error() -> None:
    raw: dict = {}
    node = raw
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ConfigError, match="nests deeper than"):
        parse_config(raw)


@pytest.mark.parametrize(("text", "fragment"), [
    ("data:\n  synthetic:\n    start: 2024-02-30\n", "cannot read the value '2024-02-30'"),
    ("seed: " + "9" * 5000 + "\n", "too many digits"),
    ("seed: !!python/object:os.system ls\n", "could not determine a constructor"),
    ("training: [\n", "not valid YAML"),
    ("training:\n\tepochs: 3\n", "not valid YAML"),
    ("- 1\n- 2\n", "must hold a mapping of sections"),
])
def test_yaml_that_cannot_be_read_is_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert fragment in config_error(path)


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    assert "is a directory" in config_error(tmp_path)


# --------------------------------------------------- 9: non-finite numbers


@pytest.mark.parametrize("override", [
    "born_again.temperature=.inf", "born_again.temperature=-.inf", "training.lr=.nan",
    "training.lr=1.0e999", "training.lr=inf", "training.lr=NaN", "born_again.alpha=[0.1, .nan]",
    "backtest.fee_bps=.inf", "data.synthetic.start_price=1e999",
])
def test_every_non_finite_number_is_refused(override: str) -> None:
    with pytest.raises(ConfigError, match="must be a finite number"):
        parse_config(apply_overrides({}, [override]))


def test_non_finite_numbers_are_refused_in_fields_added_later() -> None:
    from pydantic import Field

    from selfdistill.config.sections import Section

    class Later(Section):  # any section: the base class refuses inf / nan
        gain: float = Field(default=1.0)

    with pytest.raises(ValueError, match="finite number"):
        Later.model_validate({"gain": "inf"})
    # and the raw walk refuses them wherever they are, known field or not
    with pytest.raises(ConfigError, match=r"features\.new_thing: must be a finite number"):
        parse_config({"features": {"new_thing": float("inf")}})


# --------------------------------------------- 10: duplicate keys, lax types


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("training:\n  epochs: 3\n  lr: 0.01\n  epochs: 50\n")
    message = config_error(path)
    assert "key 'epochs' appears twice in one mapping (lines 2 and 4)" in message


def test_duplicate_sections_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("training: {epochs: 3}\nmodel: {}\ntraining: {lr: 0.1}\n")
    assert "key 'training' appears twice" in config_error(path)


@pytest.mark.parametrize(("override", "fragment"), [
    ("training.epochs=true", "training.epochs: must be a number, not true"),
    ("training.lr=false", "training.lr: must be a number, not false"),
    ("seed=true", "seed: must be a number, not true"),
    ("born_again.alpha=[0.2, true]", "born_again.alpha.1: must be a number, not true"),
    ("model.hidden=[64, true]", "model.hidden.1: must be a number, not true"),
    ("backtest.enabled=1", "backtest.enabled: must be true or false (got 1)"),
    ("report.enabled='yes'", "report.enabled: must be true or false (got 'yes')"),
])
def test_true_is_not_a_number_and_1_is_not_true(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(apply_overrides({}, [override]))
    assert fragment in str(info.value)


def test_plain_numbers_and_booleans_still_work() -> None:
    cfg = parse_config(apply_overrides({}, [
        "training.epochs=3", "training.lr=1e-3", "training.lr=0.5", "backtest.enabled=false",
        "born_again.alpha=[0.1, 1]", "model.hidden=[8]"]))
    assert cfg.training.lr == 0.5
    assert cfg.backtest.enabled is False
    assert cfg.born_again.alpha == [0.1, 1.0]


# ------------------------------------------------------------- 11: sizes


def test_a_model_too_large_to_allocate_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(apply_overrides({}, ["model.hidden=[60000,60000]"]))
    message = str(info.value)
    assert "model.hidden: [60000, 60000]" in message
    assert "14.4 GB" in message
    assert f"{MAX_PARAMETERS:,}" in message


@pytest.mark.parametrize("kind", ["mlp", "cnn", "gru"])
def test_the_size_bound_applies_to_every_kind(kind: str) -> None:
    extra = ["methods=[baseline]"]
    with pytest.raises(ConfigError, match="parameters"):
        parse_config(apply_overrides({}, [f"model.kind={kind}", "model.hidden=[20000, 20000]",
                                          *extra]))
    assert parse_config(apply_overrides({}, [f"model.kind={kind}", "model.hidden=[256, 256]",
                                             *extra])).model.hidden == [256, 256]


@pytest.mark.parametrize("kind", ["mlp", "cnn", "gru"])
def test_parameter_estimate_is_a_lower_bound_close_to_the_network(kind: str) -> None:
    pytest.importorskip("torch")
    from selfdistill.nn.registry import build_model

    cfg = parse_config({"model": {"kind": kind, "hidden": [32, 16]}, "methods": ["baseline"]})
    model = build_model(cfg.model, n_features=10, n_classes=3)
    exact = sum(p.numel() for p in model.parameters())
    estimate = estimated_parameters(kind, [32, 16], n_inputs=10)
    assert 0.8 * exact <= estimate <= exact


@pytest.mark.parametrize(("overrides", "fragment"), [
    (["evaluation.folds=3"], "evaluation.folds: is 3 but scheme 'holdout' has one fold"),
    (["evaluation.scheme=purged_kfold"], "purged_kfold needs at least 2 folds"),
    (["methods=[byot]", "model.hidden=[32]"], "byot needs model.kind mlp with at least 2"),
    (["methods=[ema_teacher]"], "ema_teacher pretrains a window encoder"),
])
def test_settings_that_cannot_run_together_fail_at_parse_time(overrides: list[str],
                                                              fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(apply_overrides({}, overrides))
    assert fragment in str(info.value)
    assert "(root)" not in str(info.value)


# ------------------------------------------------ did-you-mean, interval spellings


@pytest.mark.parametrize(("override", "fragment"), [
    ("training.epoch=3", "training.epoch: unknown key; did you mean 'epochs'?"),
    ("trainig.epochs=3", "trainig: unknown key; did you mean 'training'?"),
    ("born_again.temprature=2", "did you mean 'temperature'?"),
    ("data.synthetic.nbars=500", "did you mean 'n_bars'?"),
])
def test_unknown_keys_suggest_the_closest_one(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(apply_overrides({}, [override]))
    assert fragment in str(info.value)


def test_a_key_far_from_every_field_gets_no_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"training": {"zzzzzz": 1}})
    assert "did you mean" not in str(info.value)
    assert "unknown key" in str(info.value)


@pytest.mark.parametrize(("alias", "bybit"), list(INTERVAL_ALIASES.items()))
def test_common_interval_spellings_are_aliases(alias: str, bybit: str) -> None:
    cfg = parse_config(apply_overrides({}, [f"data.synthetic.interval={alias}",
                                            f"data.bybit.interval={alias}",
                                            f"data.interval={alias}"]))
    assert cfg.data.synthetic.interval == cfg.data.bybit.interval == cfg.data.interval == bybit


@pytest.mark.parametrize(("text", "guess"), [
    ("1H", "60"), ("60m", "60"), ("4hr", "240"), ("24h", "D"), ("1M", "M"), ("d", "D"),
    ("7d", "W"), ("240min", "240"),
])
def test_unknown_intervals_suggest_a_valid_spelling(text: str, guess: str) -> None:
    with pytest.raises(ValueError, match=f"did you mean '{guess}'"):
        canonical_interval(text)
    with pytest.raises(ConfigError, match=f"data.bybit.interval: .*did you mean '{guess}'"):
        parse_config({"data": {"bybit": {"interval": text}}})


@pytest.mark.parametrize("text", ["7", "45", "banana", ""])
def test_intervals_with_no_close_spelling_list_the_valid_ones(text: str) -> None:
    with pytest.raises(ValueError, match="must be one of 1, 3, 5") as info:
        canonical_interval(text)
    assert "did you mean" not in str(info.value)
