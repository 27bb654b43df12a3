"""The learning-rate schedules a bundle names by ``lr_schedule``."""

import math

import pytest
import torch

from raagr2_monai.schedules import LR_SCHEDULES, make_lr_scheduler


def _optimizer(lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.Adam(torch.nn.Linear(2, 1).parameters(), lr=lr)


def test_cosine_anneals_to_zero_over_the_epochs():
    optimizer = _optimizer()
    scheduler = make_lr_scheduler(optimizer, "cosine", epochs=4)
    rates = []
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    expected = [1e-3 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(1, 5)]
    assert rates == pytest.approx(expected, abs=1e-12)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_plateau_halves_the_rate_after_patience_validations_without_gain():
    optimizer = _optimizer()
    scheduler = make_lr_scheduler(optimizer, "plateau", epochs=10, patience=1)
    for dice in (0.5, 0.5, 0.5):
        optimizer.step()
        scheduler.step(dice)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)


@pytest.mark.parametrize("schedule, epochs, message", [("step", 4, "lr_schedule must be one of"),
                                                      ("cosine", 0, "epochs must be a positive integer")])
def test_bad_settings_are_refused(schedule, epochs, message):
    with pytest.raises(ValueError, match=message):
        make_lr_scheduler(_optimizer(), schedule, epochs)


def test_the_schedules_are_the_documented_ones():
    assert LR_SCHEDULES == ("plateau", "cosine")
