"""A training run's progress bar (iterations of the epoch, loss, time left), drawn only on a terminal."""

from __future__ import annotations

import sys
from typing import Any, Optional, TextIO

from ignite.engine import Engine, Events
from tqdm.auto import tqdm

from raagr2_monai.utils import is_terminal

from .history import LossReader, output_loss

__all__ = ["TrainingProgressBar", "attach_progress_bar"]


class TrainingProgressBar:
    """A tqdm bar per epoch: ``<desc> epoch e/E: percent|bar| i/n [elapsed<left, rate, loss=...]``.

    The bar is closed (and cleared) as the epoch's last iteration completes, before the handlers of the epoch's end
    run, so that the validation's lines print on lines of their own rather than after the bar. Ignite's
    ``ProgressBar`` closes at the epoch's end instead, after the handlers attached before it (the validation).

    The loss shown is the latest one the device has finished (:class:`~raagr2_monai.handlers.history.LossReader`): on
    a GPU it lags the step under way by the steps queued behind it, and the bar never makes the GPU wait for the host.

    Args:
        desc: the bar's label (e.g. the study step).
        stream: where the bar is drawn.
        position: the terminal line the bar takes, counted from the cursor's (tqdm's ``position``), so that the bars
            of trainings running at once in several processes each keep a line of their own.
    """

    def __init__(self, desc: str, stream: TextIO, position: int = 0) -> None:
        self.desc = desc
        self.stream = stream
        self.position = position
        self.bar: Optional[Any] = None
        self.loss = LossReader()

    def attach(self, trainer: Engine) -> None:
        """Draw a bar over every epoch of ``trainer``."""
        trainer.add_event_handler(Events.EPOCH_STARTED, self._open)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._advance)
        for event in (Events.COMPLETED, Events.TERMINATE, Events.EXCEPTION_RAISED):
            trainer.add_event_handler(event, self._close)

    def _open(self, engine: Engine) -> None:
        self._close()
        label = f"{self.desc} epoch {engine.state.epoch}/{engine.state.max_epochs}".strip()
        self.bar = tqdm(total=engine.state.epoch_length, desc=label, unit="it", file=self.stream, leave=False,
                        dynamic_ncols=True, position=self.position)

    def _advance(self, engine: Engine) -> None:
        if self.bar is None:
            return
        loss = self.loss.push(output_loss(engine.state.output))
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.update(1)
        if self.bar.n >= self.bar.total:
            self._close()

    def _close(self, *_: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def attach_progress_bar(trainer: Engine, desc: str = "", stream: Optional[TextIO] = None, position: int = 0
                        ) -> Optional[TrainingProgressBar]:
    """Attach a :class:`TrainingProgressBar` to ``trainer`` when ``stream`` is a terminal; on anything else (a log
    file, CI) nothing is attached, so nothing is written.

    Args:
        trainer: the training engine (its iteration output carries ``loss``).
        desc: the bar's label (e.g. the study step).
        stream: where the bar is drawn (default ``sys.stdout``, where the training's own lines go).
        position: the bar's line (:class:`TrainingProgressBar`).

    Returns:
        The attached bar, or ``None`` when ``stream`` is not a terminal.

    Example::

        >>> import io
        >>> attach_progress_bar(Engine(lambda engine, batch: None), stream=io.StringIO()) is None
        True
    """
    stream = sys.stdout if stream is None else stream
    if not is_terminal(stream):
        return None
    bar = TrainingProgressBar(desc, stream, position)
    bar.attach(trainer)
    return bar
