"""Freed memory kept for reuse: after :func:`retain_freed_memory`, the forward passes after the first ones reuse their
activation blocks instead of faulting them in afresh (each measured in a process of its own, so that no
other test runs with the setting)."""

import json
import subprocess
import sys

import pytest

SCRIPT = """
import json, resource, sys
import torch
from raagr2_monai.utils import environment, retain_freed_memory, retained_memory_settings

settings = retain_freed_memory() if sys.argv[1] == "retain" else None
torch.set_num_threads(1)
net = torch.nn.Sequential(*[torch.nn.Conv2d(16, 16, 3, padding=1) for _ in range(4)]).eval()
x = torch.randn(8, 16, 192, 192)  # every activation a 19 MB block

def faults_of_a_pass():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.no_grad():
        net(x)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

passes = [faults_of_a_pass() for _ in range(11)]
print(json.dumps({"passes": passes, "settings": settings, "again": retain_freed_memory() if settings else None,
                  "recorded": environment("cpu")["malloc_settings"], "read": retained_memory_settings()}))
"""


def _run(mode):
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_later_forward_passes_reuse_the_first_ones_memory():
    expected = {"M_MMAP_THRESHOLD": 1 << 30, "M_TRIM_THRESHOLD": (1 << 31) - 1}
    retained = _run("retain")
    assert retained["settings"] == retained["again"] == retained["recorded"] == retained["read"] == expected
    # the first pass faults its blocks in (4,608 pages of 4 KiB each; the second, now and then, one or two more):
    # from then on every block is found in the heap
    assert retained["passes"][0] > 10_000
    assert sum(retained["passes"][-5:]) < 1_000
    default = _run("default")
    assert default["settings"] is None and default["recorded"] is None
    # glibc's defaults hand freed blocks back to the system: passes go on faulting whole blocks in again (18,400-27,584
    # pages a pass here; fewer beside a busy process, so the bound asks for one block over the last 5 passes)
    assert sum(default["passes"][-5:]) > 4_608
