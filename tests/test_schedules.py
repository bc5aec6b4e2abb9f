"""Schedules: values at chosen indices match their closed forms."""

from __future__ import annotations

import math

import pytest

from selfdistill.training.schedules import (
    SCHEDULES,
    alpha_at,
    cosine_restart_lr,
    cosine_tau,
    scheduled_value,
    temperature_at,
)

T0, DECAY, T_MIN, TOTAL = 4.0, 0.8, 1.5, 8


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_exponential_temperature_is_both_issue_forms(k: int) -> None:
    i = k - 1  # the first student has index 0
    got = temperature_at(k, t0=T0, schedule="exponential", decay=DECAY, t_min=T_MIN)
    assert got == pytest.approx(max(T_MIN, T0 * DECAY**i))  # issue 4: T0 * decay^i
    assert got == pytest.approx(max(T_MIN, T0 * DECAY ** (k - 1)))  # foundation: k >= 1


def test_exponential_temperature_stops_at_t_min() -> None:
    values = [temperature_at(k, t0=T0, schedule="exponential", decay=0.5, t_min=T_MIN)
              for k in range(1, 6)]
    assert values == pytest.approx([4.0, 2.0, 1.5, 1.5, 1.5])


@pytest.mark.parametrize("k", [1, 4, 8])
def test_constant_temperature(k: int) -> None:
    assert temperature_at(k, t0=T0, schedule="constant", decay=DECAY, t_min=T_MIN) == T0


@pytest.mark.parametrize(("k", "expected"), [(1, 4.0), (8, 1.5), (4, 4.0 + (1.5 - 4.0) * 3 / 7)])
def test_linear_temperature_runs_from_t0_to_t_min(k: int, expected: float) -> None:
    got = temperature_at(k, t0=T0, schedule="linear", t_min=T_MIN, total=TOTAL)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7])
def test_step_temperature(k: int) -> None:
    got = temperature_at(k, t0=T0, schedule="step", decay=0.5, t_min=0.1, step=3)
    assert got == pytest.approx(T0 * 0.5 ** math.floor((k - 1) / 3))


def test_generation_zero_has_no_schedule() -> None:
    with pytest.raises(ValueError, match="hard-label start"):
        temperature_at(0, t0=T0)
    with pytest.raises(ValueError, match="hard-label start"):
        alpha_at(0, 0.3)


def test_unknown_schedule_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="constant, exponential, linear, step"):
        scheduled_value(0, start=1.0, schedule="cosine")
    assert SCHEDULES == ("constant", "exponential", "linear", "step")


def test_rising_exponential_is_capped_by_end() -> None:
    values = [scheduled_value(i, start=0.2, schedule="exponential", decay=2.0, end=0.9)
              for i in range(4)]
    assert values == pytest.approx([0.2, 0.4, 0.8, 0.9])


def test_constant_alpha_and_curriculum_list() -> None:
    assert [alpha_at(k, 0.3) for k in (1, 5)] == [0.3, 0.3]
    curriculum = [alpha_at(k, [0.2, 0.2, 1.0]) for k in range(1, 8)]
    assert curriculum == [0.2, 0.2, 1.0, 0.2, 0.2, 1.0, 0.2]  # back to hard labels every 3rd


def test_alpha_list_only_with_constant_schedule() -> None:
    with pytest.raises(ValueError, match="curriculum"):
        alpha_at(1, [0.2, 1.0], schedule="linear")
    with pytest.raises(ValueError, match="empty"):
        alpha_at(1, [])


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_alpha_schedules_closed_forms(k: int) -> None:
    i = k - 1
    exp = alpha_at(k, 0.8, schedule="exponential", decay=0.5, final=0.15)
    assert exp == pytest.approx(max(0.15, 0.8 * 0.5**i))
    lin = alpha_at(k, 0.1, schedule="linear", final=0.9, total=6)
    assert lin == pytest.approx(0.1 + 0.8 * i / 5)
    step = alpha_at(k, 0.8, schedule="step", decay=0.5, step=2)
    assert step == pytest.approx(0.8 * 0.5 ** (i // 2))


def test_alpha_is_clipped_to_unit_interval() -> None:
    assert alpha_at(5, 0.5, schedule="exponential", decay=3.0) == 1.0


@pytest.mark.parametrize("step", [0, 7, 25, 50, 99, 100, 175])
def test_cosine_restart_lr_closed_form(step: int) -> None:
    s, base, low = 100, 0.01, 0.001
    expected = low + (base - low) * (1 + math.cos(math.pi * (step % s) / s)) / 2
    assert cosine_restart_lr(step, base_lr=base, steps_per_cycle=s, min_lr=low) == pytest.approx(
        expected)


def test_cosine_restart_lr_restarts_each_cycle() -> None:
    lr = [cosine_restart_lr(t, base_lr=1.0, steps_per_cycle=10) for t in range(30)]
    assert lr[0] == lr[10] == lr[20] == 1.0
    assert lr[5] == pytest.approx(0.5)
    assert lr[9] < 0.03
    with pytest.raises(ValueError, match="steps_per_cycle"):
        cosine_restart_lr(0, base_lr=1.0, steps_per_cycle=0)


def test_cosine_tau_endpoints() -> None:
    assert cosine_tau(0, total_steps=100, tau_base=0.99) == pytest.approx(0.99)
    assert cosine_tau(50, total_steps=100, tau_base=0.99) == pytest.approx(0.995)
    assert cosine_tau(100, total_steps=100, tau_base=0.99) == pytest.approx(1.0)
