"""Stand-in study steps for the tests of the worker processes: importable by a spawned worker, quick, and one of
them fails."""

import time


class FailingSteps:
    """Steps that make nothing: the training of ``fail`` raises at once, every other step takes ``seconds``."""

    def __init__(self, fail: str, seconds: float) -> None:
        self.fail = fail
        self.seconds = seconds

    def _done(self, spec):
        if spec.name == self.fail:
            raise RuntimeError(f"no luck with {spec.name}")
        time.sleep(self.seconds)
        return {"made": spec.name}

    train = prune = evaluate = evaluate_uncertainty = _done
