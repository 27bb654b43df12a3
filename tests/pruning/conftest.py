import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small tensors on a shared 2-core machine: more intra-op threads only add contention (a prune took 8 s, not 1 s)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
