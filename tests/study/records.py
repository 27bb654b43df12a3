"""A logging handler that keeps what reaches it, for tests of what the study lets through."""

import logging


class Records(logging.Handler):
    """The records a logger's handlers get (what its filters let through), as messages."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())
