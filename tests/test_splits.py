"""Tests for selfdistill.splits: no label interval of one set touches another set."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfdistill.errors import ConfigError, DataError
from selfdistill.splits import Split, check_no_leak, purged_kfold, purged_split, walk_forward

PROPERTY = settings(suppress_health_check=[HealthCheck.too_slow])  # examples: conftest profile


@st.composite
def label_intervals(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Labelled bars with holes (dropped rows) and fixed or varying horizons."""
    n = draw(st.integers(40, 500))
    h = draw(st.integers(1, 25))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    start = np.sort(rng.choice(3 * n, size=n, replace=False)).astype(np.int64)
    varying = draw(st.booleans())  # triple-barrier-like ends
    end = start + (rng.integers(0, h + 1, n) if varying else h)
    return start, end


def overlaps(a: np.ndarray, b: np.ndarray, start: np.ndarray, end: np.ndarray) -> bool:
    """Brute force: does any interval of rows a share a bar with one of rows b?"""
    if len(a) == 0 or len(b) == 0:
        return False
    sa, ea = start[a][:, None], end[a][:, None]
    sb, eb = start[b][None, :], end[b][None, :]
    return bool(((sa <= eb) & (sb <= ea)).any())


def assert_well_formed(split: Split, n: int, start: np.ndarray, end: np.ndarray) -> None:
    sets = (split.train, split.val, split.test)
    for rows in sets:
        assert rows.dtype == np.int64
        assert np.all(np.diff(rows) > 0)
        assert rows.min() >= 0
        assert rows.max() < n
    for i, a in enumerate(sets):
        for b in sets[i + 1:]:
            assert not np.intersect1d(a, b).size
            assert not overlaps(a, b, start, end)
    check_no_leak(split, start, end)


# ------------------------------------------------------------------ purged_split


def test_docstring_example_and_exact_boundaries() -> None:
    s = purged_split(np.arange(20), np.arange(20) + 2, train=0.6, val=0.2, test=0.2)
    assert s.train.tolist() == list(range(10))
    assert s.val.tolist() == [12, 13]
    assert s.test.tolist() == [16, 17, 18, 19]


def test_a_label_ending_on_the_first_test_bar_is_purged() -> None:
    # regression for purging from the test label's *end*: row 7 ends at bar 8,
    # where test begins, so it must go even though its own start is well before
    start = np.arange(10)
    end = start.copy()
    end[7] = 8
    s = purged_split(start, end, train=0.6, val=0.2, test=0.2)
    assert 7 not in s.val
    assert s.val.tolist() == [6]
    assert s.train.tolist() == [0, 1, 2, 3, 4, 5]


@PROPERTY
@given(iv=label_intervals(), train=st.floats(0.3, 0.8), val_share=st.floats(0.2, 0.8),
       purge=st.integers(0, 10), embargo=st.integers(0, 10))
def test_purged_split_never_leaks_and_drops_only_what_it_must(
        iv: tuple[np.ndarray, np.ndarray], train: float, val_share: float, purge: int,
        embargo: int) -> None:
    start, end = iv
    n = len(start)
    val = (1 - train) * val_share
    test = 1 - train - val
    cut1, cut2 = round(train * n), round((train + val) * n)
    b1, b2 = start[cut1] if cut1 < n else None, start[cut2] if cut2 < n else None
    rows = np.arange(n)
    expected_train = [i for i in rows[:cut1] if b1 is not None and end[i] < b1 - purge]
    expected_val = [i for i in rows[cut1:cut2]
                    if b1 is not None and start[i] >= b1 + embargo
                    and b2 is not None and end[i] < b2 - purge]
    expected_test = [i for i in rows[cut2:] if b2 is not None and start[i] >= b2 + embargo]
    if not (expected_train and expected_val and expected_test):
        with pytest.raises(DataError, match="empty"):
            purged_split(start, end, train=train, val=val, test=test, purge=purge,
                         embargo=embargo)
        return
    s = purged_split(start, end, train=train, val=val, test=test, purge=purge, embargo=embargo)
    assert_well_formed(s, n, start, end)
    assert s.train.tolist() == expected_train
    assert s.val.tolist() == expected_val
    assert s.test.tolist() == expected_test
    assert end[s.train].max() < start[s.val].min() - purge
    assert end[s.val].max() < start[s.test].min() - purge


def test_empty_set_error_names_sizes_and_fix() -> None:
    with pytest.raises(DataError, match=r"val.*empty.*sizes before.*horizon"):
        purged_split(np.arange(20), np.arange(20) + 5, train=0.6, val=0.2, test=0.2)


@pytest.mark.parametrize(("train", "val", "test"), [(0.0, 0.5, 0.5), (0.6, 0.3, 0.3),
                                                    (1.2, -0.1, -0.1)])
def test_bad_fractions_raise_config_error(train: float, val: float, test: float) -> None:
    with pytest.raises(ConfigError):
        purged_split(np.arange(50), np.arange(50), train=train, val=val, test=test)


def test_malformed_intervals_raise_data_error() -> None:
    with pytest.raises(DataError, match="chronological"):
        purged_split(np.array([0, 2, 1]), np.array([1, 3, 2]), train=0.4, val=0.3, test=0.3)
    with pytest.raises(DataError, match="ends before"):
        purged_split(np.arange(3), np.array([0, 0, 2]), train=0.4, val=0.3, test=0.3)


# ------------------------------------------------------------------ walk_forward


@PROPERTY
@given(iv=label_intervals(), n_folds=st.integers(1, 5),
       window=st.sampled_from(["expanding", "rolling"]), purge=st.integers(0, 5),
       embargo=st.integers(0, 5))
def test_walk_forward_folds_never_leak(iv: tuple[np.ndarray, np.ndarray], n_folds: int,
                                       window: str, purge: int, embargo: int) -> None:
    start, end = iv
    n = len(start)
    try:
        folds = walk_forward(start, end, n_folds=n_folds, window=window,  # type: ignore[arg-type]
                             val=0.1, test=0.1, purge=purge, embargo=embargo)
    except DataError:
        return  # too little data for this draw: allowed, it says so
    assert len(folds) == n_folds
    n_test = int(0.1 * n)
    for k, fold in enumerate(folds):
        assert_well_formed(fold, n, start, end)
        block_lo = n - (n_folds - k) * n_test
        assert fold.test.max() == block_lo + n_test - 1  # test blocks tile the end
        assert fold.val.max() < block_lo
        assert fold.train.max() < fold.val.min()
        if window == "expanding":
            assert fold.train.min() <= folds[0].train.min()
    assert folds[-1].test.max() == n - 1


def test_rolling_windows_keep_their_length_and_expanding_windows_grow() -> None:
    start = np.arange(1000)
    end = start + 5
    rolling = walk_forward(start, end, n_folds=4, window="rolling", val=0.1, test=0.1,
                           min_train=300)
    expanding = walk_forward(start, end, n_folds=4, window="expanding", val=0.1, test=0.1)
    assert {len(f.train) for f in rolling} == {300 - 5}
    assert [f.train.min() for f in rolling] == [200, 300, 400, 500]
    assert [len(f.train) for f in expanding] == [495, 595, 695, 795]
    assert [f.test.min() for f in expanding] == [600, 700, 800, 900]


def test_walk_forward_with_too_many_folds_raises() -> None:
    with pytest.raises(DataError, match="folds"):
        walk_forward(np.arange(100), np.arange(100) + 2, n_folds=9, val=0.1, test=0.1)
    with pytest.raises(DataError, match="min_train"):
        walk_forward(np.arange(100), np.arange(100), n_folds=2, val=0.1, test=0.1,
                     min_train=80)


# ------------------------------------------------------------------ purged_kfold


@PROPERTY
@given(iv=label_intervals(), n_folds=st.integers(2, 6), embargo=st.integers(0, 8),
       purge=st.integers(0, 4))
def test_purged_kfold_never_leaks_and_honours_the_embargo(
        iv: tuple[np.ndarray, np.ndarray], n_folds: int, embargo: int, purge: int) -> None:
    start, end = iv
    n = len(start)
    try:
        folds = purged_kfold(start, end, n_folds=n_folds, embargo=embargo, val=0.1,
                             purge=purge)
    except DataError:
        return
    tested = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(n))  # each row tested once
    for fold in folds:
        assert_well_formed(fold, n, start, end)
        hi = end[fold.test].max()
        for rows in (fold.train, fold.val):
            after = start[rows] > start[fold.test].min()
            assert not np.any(start[rows][after] <= hi + embargo)  # embargo after test
            assert not np.any(end[rows][~after] >= start[fold.test].min() - purge)


def test_purged_kfold_keeps_every_row_it_may_keep() -> None:
    start = np.arange(100)
    end = start + 3
    folds = purged_kfold(start, end, n_folds=5, embargo=2, val=0.1)
    middle = folds[2]  # test rows 40..59
    assert middle.test.tolist() == list(range(40, 60))
    kept = np.sort(np.concatenate([middle.train, middle.val]))
    # before the test block: rows ending before bar 40; after: starting after 62 + 2
    expected_pool = [*range(37), *range(65, 100)]
    # val = the last 10 rows of the pool less its 2-bar embargo; train is purged before it
    assert middle.val.tolist() == list(range(92, 100))
    assert kept.tolist() == [i for i in expected_pool if i < 87 or i >= 92]


# ----------------------------------------------------------------- check_no_leak


def test_check_no_leak_catches_overlap_and_shared_rows() -> None:
    start = np.arange(30)
    end = start + 4
    clean = Split(train=np.arange(0, 10), val=np.arange(15, 20), test=np.arange(25, 30))
    check_no_leak(clean, start, end)
    leaky = Split(train=np.arange(0, 12), val=np.arange(15, 20), test=np.arange(25, 30))
    with pytest.raises(DataError, match=r"train row 11 .*\[11, 15\].*val row 15"):
        check_no_leak(leaky, start, end)
    shared = Split(train=np.arange(0, 10), val=np.arange(9, 12), test=np.arange(25, 30))
    with pytest.raises(DataError, match="row 9 is in both train and val"):
        check_no_leak(shared, start, end)
    val_into_test = Split(train=np.arange(0, 5), val=np.arange(10, 22), test=np.arange(25, 30))
    with pytest.raises(DataError, match="val row 21"):
        check_no_leak(val_into_test, start, end)


def test_check_no_leak_sees_training_rows_after_the_test_block() -> None:
    start = np.arange(30)
    end = start + 4
    after = Split(train=np.arange(22, 30), val=np.arange(0, 5), test=np.arange(10, 20))
    with pytest.raises(DataError, match="train row 22"):
        check_no_leak(after, start, end)  # test row 19 looks at bars up to 23


def test_check_no_leak_names_the_first_shared_row_and_rows_out_of_range() -> None:
    start = np.arange(30)
    end = start
    shared = Split(train=np.array([3, 8, 1, 12]), val=np.array([20, 12, 8]),
                   test=np.arange(25, 30))  # unsorted sets: still the smallest shared row
    with pytest.raises(DataError, match="row 8 is in both train and val"):
        check_no_leak(shared, start, end)
    outside = Split(train=np.arange(0, 10), val=np.arange(15, 20), test=np.arange(25, 31))
    with pytest.raises(DataError, match=r"test rows must be positions in 0\.\.29.*25\.\.30"):
        check_no_leak(outside, start, end)
