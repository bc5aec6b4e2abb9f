"""A fuzz corpus for configs: generated attacks on the config file and on ``--set``.

Each property generates a config (a file's bytes, or ``--set`` values) from one attack
class of issue 13 — encodings, binary content, nesting, aliases, duplicate keys,
non-finite numbers, wrong types, path-like names — and runs ``selfdistill config show``
in-process (typer's CliRunner streams): it reads, overrides and validates a config
exactly as ``run`` does, without training. The contract:

- exit 0 with a config that is valid, and then stdout is the resolved config;
- otherwise exit 2 and one line on stderr naming the problem, no traceback;
- nothing is written anywhere (the working folder holds only the input file).

The default hypothesis profile draws the same examples every run (see conftest.py);
``pytest --hypothesis-profile=explore tests/test_config_fuzz.py`` searches new ones.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from selfdistill.cli import main
from selfdistill.config import parse_config
from selfdistill.config.intervals import INTERVAL_ALIASES, INTERVALS

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------- valid configs

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
POSITIVE = st.floats(1e-6, 1e3, allow_nan=False, allow_infinity=False)

VALID = st.fixed_dictionaries({}, optional={
    "name": NAMES,
    "seed": st.integers(0, 2**63 - 1),
    "device": st.sampled_from(["auto", "cpu"]),
    "training": st.fixed_dictionaries({}, optional={
        "epochs": st.integers(1, 500), "lr": POSITIVE, "batch_size": st.integers(1, 4096),
        "patience": st.integers(0, 50), "optimizer": st.sampled_from(["adam", "adamw"])}),
    "model": st.fixed_dictionaries({}, optional={
        "hidden": st.lists(st.integers(1, 512), min_size=2, max_size=4),
        "dropout": st.floats(0.0, 0.9)}),
    "born_again": st.fixed_dictionaries({}, optional={
        "generations": st.integers(1, 10), "temperature": POSITIVE,
        "alpha": st.floats(0.0, 1.0) | st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5)}),
    "data": st.fixed_dictionaries({}, optional={
        "synthetic": st.fixed_dictionaries({}, optional={
            "interval": st.sampled_from([*INTERVALS, *INTERVAL_ALIASES]),
            "n_bars": st.integers(200, 100_000)})}),
    "backtest": st.fixed_dictionaries({}, optional={
        "enabled": st.booleans(), "fee_bps": st.floats(0.0, 100.0)}),
})

#: Paths of fields that hold a number, for the non-finite and wrong-type attacks.
NUMBER_FIELDS = ["training.lr", "training.epochs", "born_again.temperature", "born_again.alpha",
                 "labels.k", "split.train", "backtest.fee_bps", "seed", "model.dropout",
                 "data.synthetic.persistence", "ema_teacher.tau_base", "byot.kd_weight"]


# ------------------------------------------------------------------ the contract


@contextmanager
def _folder() -> Iterator[Path]:
    """A fresh working folder per example (hypothesis forbids function-scoped fixtures)."""
    before = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(before)


def show(args: list[str]) -> tuple[int, str, str]:
    """``selfdistill config show ARGS`` in-process: (exit code, stdout, stderr)."""
    with CliRunner().isolation() as (out, err, _):
        code = main(["config", "show", *args])
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


def check_contract(args: list[str], folder: Path, *, expect_error: bool | None = None) -> str:
    """Run ``config show`` and assert the contract; return stderr's line ('' on success)."""
    inputs = sorted(p.name for p in folder.iterdir())
    code, out, err = show(args)
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err, err
    assert "error: unexpected" not in err, err
    assert sorted(p.name for p in folder.iterdir()) == inputs  # nothing written
    if code == 0:
        assert err == ""
        parse_config(yaml.safe_load(out))  # what it printed is a valid config
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("error: "), err
        assert len(lines[0]) < 1000
    if expect_error is not None:
        assert (code == 2) == expect_error, (args, err)
    return err.strip()


def write(folder: Path, data: bytes | str) -> list[str]:
    path = folder / "c.yaml"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return [str(path)]


def dump(raw: dict[str, Any]) -> str:
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


# -------------------------------------------------------------------- properties


@FUZZ
@given(raw=VALID)
def test_valid_configs_are_accepted(raw: dict[str, Any]) -> None:
    with _folder() as folder:
        check_contract(write(folder, dump(raw)), folder, expect_error=False)


@FUZZ
@given(raw=VALID, encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32",
                                            "latin-1", "cp1252", "shift_jis"]),
       text=st.text(alphabet=st.characters(min_codepoint=0xa0, max_codepoint=0x30ff,
                                           categories=["L"]), min_size=1, max_size=8))
def test_encodings(raw: dict[str, Any], encoding: str, text: str) -> None:
    raw = {**raw, "name": "x" + text}
    try:
        data = dump(raw).encode(encoding)
    except UnicodeEncodeError:
        data = dump(raw).encode(encoding, errors="replace")
    with _folder() as folder:
        err = check_contract(write(folder, data), folder)
    if encoding.startswith("utf-8"):
        assert err == "" or "name: must be a plain file name" in err


@FUZZ
@given(data=st.binary(min_size=1, max_size=4096))
def test_binary_content(data: bytes) -> None:
    with _folder() as folder:
        check_contract(write(folder, data), folder)


@FUZZ
@given(text=st.text(max_size=2000))
def test_arbitrary_text(text: str) -> None:
    with _folder() as folder:
        check_contract(write(folder, text), folder)


@FUZZ
@given(depth=st.integers(1, 5_000), kind=st.sampled_from(["[", "{a: ", "- ", "a:\n "]),
       field=st.sampled_from(["", "training: ", "born_again:\n  alpha: "]))
def test_nesting(depth: int, kind: str, field: str) -> None:
    close = {"[": "]", "{a: ": "}"}.get(kind, "")
    body = (kind * depth + "1" + close * depth) if kind != "a:\n " else \
        "".join(" " * i + "a:\n" for i in range(min(depth, 2000))) + " " * min(depth, 2000) + "1"
    with _folder() as folder:
        check_contract(write(folder, field + body), folder, expect_error=depth > 40 or None)


@FUZZ
@given(levels=st.integers(1, 10), width=st.integers(1, 12),
       where=st.sampled_from(["top", "alpha", "hidden", "set"]))
def test_aliases(levels: int, width: int, where: str) -> None:
    rows = ["l0: &l0 [" + ", ".join(["0.5"] * width) + "]"]
    rows += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]"
             for i in range(1, levels)]
    with _folder() as folder:
        if where == "set":
            args = ["--set", "born_again.alpha={" + ", ".join(rows) + "}"]
        else:
            refs = {"top": "", "alpha": f"born_again:\n  alpha: *l{levels - 1}\n",
                    "hidden": f"model:\n  hidden: *l{levels - 1}\n"}[where]
            args = write(folder, "\n".join(rows) + "\n" + refs)
        # the anchors' keys are unknown, and alpha / hidden never take nested lists: every
        # case is an error; when the expansion is large, the expansion is what is named
        err = check_contract(args, folder, expect_error=True)
    if width ** levels > 10_000:
        assert "expands to more than" in err


@FUZZ
@given(raw=VALID, section=st.sampled_from(["", "training", "model", "data"]),
       value=st.sampled_from(["1", "x", "[1]", "{}", "null"]))
def test_duplicate_keys(raw: dict[str, Any], section: str, value: str) -> None:
    text = dump(raw) if raw else ""  # a section already in raw then appears twice too
    if section:
        text += f"{section}:\n  epochs: {value}\n  epochs: {value}\n"
    else:
        text += f"seed: {value}\nseed: {value}\n"
    with _folder() as folder:
        err = check_contract(write(folder, text), folder, expect_error=True)
    assert "appears twice" in err


@FUZZ
@given(field=st.sampled_from(NUMBER_FIELDS),
       value=st.sampled_from([".inf", "-.inf", ".nan", ".NaN", "1.0e999", "-1.0e999", "inf",
                              "nan", "Infinity", "[0.5, .inf]"]),
       via_set=st.booleans())
def test_non_finite_numbers(field: str, value: str, via_set: bool) -> None:
    with _folder() as folder:
        if via_set:
            args = ["--set", f"{field}={value}"]
        else:
            head, _, leaf = field.rpartition(".")
            text = "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(head.split(".")))
            text = (text + "  " * len(head.split(".")) + f"{leaf}: {value}\n") if head \
                else f"{leaf}: {value}\n"
            args = write(folder, text)
        check_contract(args, folder, expect_error=True)


WRONG = st.sampled_from(["true", "false", "'12'", "[1, 2]", "{a: 1}", "-1", "0", "1e300",
                         "'" + "x" * 5000 + "'", "2024-01-01", "!!binary aGVsbG8=", "~"])


@FUZZ
@given(field=st.sampled_from([*NUMBER_FIELDS, "name", "device", "methods", "data.source",
                              "data.synthetic.interval", "backtest.enabled", "model.hidden",
                              "data", "training"]),
       value=WRONG)
def test_wrong_types(field: str, value: str) -> None:
    with _folder() as folder:
        err = check_contract(["--set", f"{field}={value}"], folder)
    if value in ("true", "false") and field in ("training.lr", "training.epochs", "seed"):
        assert "must be a number" in err


@FUZZ
@given(name=st.text(alphabet=st.sampled_from(list("ab./\\:~ -_\x00é\n")), min_size=0,
                    max_size=12) | st.sampled_from(["..", "../../..", "/abs/dir/x", "a/b",
                                                    "C:\\x", "~/x", "./x", "x" * 101]),
       via_set=st.booleans())
def test_path_like_names(name: str, via_set: bool) -> None:
    with _folder() as folder:
        if via_set:
            args = ["--set", f"name={name}"]
        else:
            args = write(folder, "name: " + json.dumps(name) + "\n")
        err = check_contract(args, folder)
    plain = (name[:1].isalnum() or name[:1] == "_") and len(name) <= 100 and all(
        c.isalnum() or c in "_.-" for c in name)
    if not plain and name.strip() == name:
        assert err, name
    if any(c in name for c in "/\\") or name in ("", "..", "."):
        assert "plain file name" in err or "name:" in err or err.startswith("error: --set"), err


@FUZZ
@given(value=st.floats(allow_nan=True, allow_infinity=True),
       field=st.sampled_from(NUMBER_FIELDS))
def test_any_float_is_finite_or_refused(value: float, field: str) -> None:
    with _folder() as folder:
        err = check_contract(["--set", f"{field}={value!r}"], folder)
    if not math.isfinite(value):
        assert err
