"""Progress bars of long commands: drawn on a terminal only, with the right count and total."""

import io

from raagr2_monai.utils import is_terminal, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_counts_items_on_a_terminal():
    terminal = Terminal()
    seen = []
    with progress_bar(iter(["a", "b", "c", "d"]), "benchmark", unit="model", total=4, stream=terminal) as bar:
        for item in bar:
            seen.append(item)
        assert bar.n == 4 and bar.total == 4
    assert seen == ["a", "b", "c", "d"]
    assert "benchmark:" in terminal.getvalue() and "/4 [" in terminal.getvalue()


def test_progress_bar_draws_nothing_off_a_terminal_or_for_one_item():
    log = io.StringIO()
    assert list(progress_bar(range(5), "segment", stream=log)) == list(range(5))
    assert log.getvalue() == ""
    terminal = Terminal()
    assert list(progress_bar(["only"], "segment", stream=terminal)) == ["only"]
    assert terminal.getvalue() == ""
    assert is_terminal(terminal) and not is_terminal(log) and not is_terminal(object())
    closed = io.StringIO()
    closed.close()  # its isatty raises ValueError
    assert not is_terminal(closed)
