"""Learning-rate schedules a bundle can name (``"lr_schedule"`` in ``train.json``), built by
:func:`make_lr_scheduler`.

- ``plateau`` (the thesis's): halve the rate when the validation mean Dice has not improved for ``patience``
  validations; stepped by the validator with that metric.
- ``cosine``: anneal from the set rate to zero over the run's epochs (``CosineAnnealingLR``), stepped by the trainer
  after every epoch. On a short schedule a constant rate leaves the weights where the last noisy steps took them;
  annealing lets the last epochs settle, which is what the study's CPU profile needs.
"""

from __future__ import annotations

from typing import Union

import torch

__all__ = ["LR_SCHEDULES", "make_lr_scheduler"]

#: The schedules :func:`make_lr_scheduler` builds.
LR_SCHEDULES = ("plateau", "cosine")


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, epochs: int, factor: float = 0.5, patience: int = 3
) -> Union[torch.optim.lr_scheduler.ReduceLROnPlateau, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """The learning-rate scheduler of a training run.

    Args:
        optimizer: the optimizer whose rate is scheduled.
        schedule: ``plateau`` or ``cosine`` (see the module).
        epochs: the run's epochs (``cosine`` reaches zero after them).
        factor, patience: ``plateau``'s reduction factor and its patience in validations.

    Returns:
        A ``ReduceLROnPlateau`` (mode ``max``, stepped with the validation metric) or a ``CosineAnnealingLR``.

    Raises:
        ValueError: an unknown schedule, or ``epochs < 1``.

    Example::

        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
        >>> scheduler = make_lr_scheduler(optimizer, "cosine", epochs=2)
        >>> optimizer.step(); scheduler.step(); round(scheduler.get_last_lr()[0], 6)
        0.5
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {schedule!r}.")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}.")
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=factor, patience=patience)
