"""The notices a study silences: only those, only inside the block, counted; MONAI's loggers keep their output."""

import logging
import warnings

from raagr2_monai.study.noise import ITERATION_LINES, STUDY_NOTICES, Notice, Silenced

from .records import Records


def _say_everything(workflows, iterations):
    """What a study's workflow says, once each, plus a line that is not a notice on each logger."""
    workflows.info("No workflow type and property file specified, default to 'meta' properties.")
    workflows.warning("Logging file is set to False, skipping logging.")
    workflows.warning("Loaded bundle does not contain the following required properties: ['x']")
    iterations.info("Epoch: 1/2, Iter: 3/12 -- train_loss: 0.8601 ")
    iterations.info("Epoch[1] Metrics -- val_mean_dice: 0.0053 ")
    warnings.warn("'min_delta' is deprecated and will be removed in a future version.", DeprecationWarning)
    warnings.warn("'cumulative_delta' is deprecated and will be removed in a future version.", DeprecationWarning)
    warnings.warn("something else is deprecated", DeprecationWarning)


def test_only_the_notices_are_dropped_inside_the_block_and_counted():
    from monai.apps.utils import get_logger

    # the loggers as MONAI sets them up (level INFO, a handler to stdout)
    workflows = get_logger("monai.bundle.workflows")
    iterations = get_logger("monai.handlers.StatsHandler")
    records = Records()
    for logger in (workflows, iterations):
        logger.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            with Silenced(STUDY_NOTICES + (ITERATION_LINES,)) as silenced:
                _say_everything(workflows, iterations)
            inside = (list(records.messages), [str(w.message) for w in shown])
            _say_everything(workflows, iterations)
    finally:
        for logger in (workflows, iterations):
            logger.removeHandler(records)
    assert inside == (
        ["Loaded bundle does not contain the following required properties: ['x']",
         "Epoch[1] Metrics -- val_mean_dice: 0.0053 "],
        ["something else is deprecated"],
    )
    # after the block, everything passes again
    assert len(records.messages) == 2 + 5 and len(shown) == 1 + 3
    assert workflows.filters == [] and iterations.filters == []
    assert silenced.summary() == (
        "Silenced: MONAI 'No workflow type ... specified' x1, MONAI 'Logging file is set to False' x1, Ignite "
        "EarlyStopping deprecation warnings x2, training iteration lines (shown by the progress bar) x1."
    )


def test_a_warning_the_filters_ignore_is_not_counted_and_nothing_silenced_says_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with Silenced(STUDY_NOTICES) as silenced:
            warnings.warn("'min_delta' is deprecated and will be removed in a future version.", DeprecationWarning)
    assert silenced.counts == {} and silenced.summary() is None


def test_a_monai_logger_filtered_before_monai_makes_it_keeps_its_output_to_stdout():
    from monai.apps.utils import get_logger

    name = "monai.test_noise.made_later"
    assert name not in logging.root.manager.loggerDict
    with Silenced([Notice("a notice", "^notice$", name)]):
        logger = get_logger(name)  # what a MONAI handler does when it is built, inside the study
    assert [type(h) for h in logger.handlers] == [logging.StreamHandler] and not logger.propagate
