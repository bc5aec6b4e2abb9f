"""Strided window views: values, causality, memory and batch materialisation."""

from __future__ import annotations

import pytest
import torch

from selfdistill.nn.windows import make_windows, window_rows_within, windows_nbytes


def _bars(n: int, f: int = 3) -> torch.Tensor:
    # x[i, j] = 10 * i + j: every value names its bar
    return (torch.arange(n)[:, None] * 10 + torch.arange(f)[None, :]).float()


def test_window_holds_the_last_w_bars_oldest_first() -> None:
    x = _bars(20)
    w = make_windows(x, 5)
    assert w.shape == (20, 3, 5)
    for i in range(4, 20):
        expected = x[i - 4:i + 1].T  # (F, W)
        assert torch.equal(w[i], expected)


def test_rows_before_first_full_window_repeat_bar_zero() -> None:
    x = _bars(10)
    w = make_windows(x, 4)
    assert torch.equal(w[0], x[0][:, None].expand(3, 4))
    assert torch.equal(w[2, :, 0], x[0])
    assert torch.equal(w[2, :, 1], x[0])
    assert torch.equal(w[2, :, 2], x[1])
    assert torch.equal(w[2, :, 3], x[2])


def test_windows_are_causal_future_bars_never_change_a_row() -> None:
    x = torch.randn(50, 4)
    before = make_windows(x, 8)[:30].clone()
    x2 = x.clone()
    x2[30:] = 1e6  # change the future
    after = make_windows(x2, 8)[:30]
    assert torch.equal(before, after)


def test_memory_is_o_of_bars_not_bars_times_window() -> None:
    n, f, win = 10_000, 6, 64
    x = torch.randn(n, f)
    w = make_windows(x, win)
    assert windows_nbytes(w) == (n + win - 1) * f * 4
    assert windows_nbytes(w) < n * f * win * 4 / 50
    # every window shares one storage: neighbours are one row apart in memory
    assert w[1].data_ptr() - w[0].data_ptr() == f * 4


def test_indexing_a_batch_materialises_only_the_batch() -> None:
    w = make_windows(torch.randn(5_000, 4), 32)
    rows = torch.tensor([7, 100, 4_999])
    batch = w[rows]
    assert batch.shape == (3, 4, 32)
    assert windows_nbytes(batch) == 3 * 4 * 32 * 4
    assert batch.untyped_storage().data_ptr() != w.untyped_storage().data_ptr()


def test_window_of_one_is_the_row_itself() -> None:
    x = torch.randn(6, 2)
    assert torch.equal(make_windows(x, 1)[:, :, 0], x)


@pytest.mark.parametrize(("shape", "window"), [((10,), 3), ((4, 2), 0)])
def test_bad_input_names_the_problem(shape: tuple[int, ...], window: int) -> None:
    with pytest.raises(ValueError, match=r"make_windows|window"):
        make_windows(torch.zeros(shape), window)


def test_rows_within_drops_windows_reaching_outside_allowed() -> None:
    allowed = torch.cat([torch.arange(0, 10), torch.arange(20, 40)])
    rows = torch.arange(0, 40)
    kept = window_rows_within(rows, allowed, 4)
    # rows 0..9 (padding repeats bar 0, inside) and 23..39 (window 20..23 onward)
    assert kept.tolist() == list(range(10)) + list(range(23, 40))


def test_rows_within_window_one_keeps_allowed_rows() -> None:
    allowed = torch.tensor([1, 3, 5])
    assert window_rows_within(torch.arange(6), allowed, 1).tolist() == [1, 3, 5]
