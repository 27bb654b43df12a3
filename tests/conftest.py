"""Settings shared by the whole suite."""

import os

import torch


def pytest_configure(config):
    # pytest-xdist starts one worker per core; torch's default of one intra-op thread per core in every worker would
    # put twice as many busy threads as cores on the machine, and every test would wait on the others
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
