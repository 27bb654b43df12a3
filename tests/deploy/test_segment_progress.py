"""``raagr2 segment`` over several studies: a progress bar on a terminal, the study lines above it."""

import io
import shutil
import sys

import torch

from raagr2_monai.data.synthetic import generate
from raagr2_monai.deploy.segment import SegmentSettings, segment_command
from raagr2_monai.networks import get_network
from raagr2_monai.utils import atomic_save

from .conftest import REPO


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_segment_counts_studies_in_a_bar_on_a_terminal(tmp_path, monkeypatch):
    cases = generate(str(tmp_path / "studies"), cases=2, seed=0, shape=(48, 48, 16))
    bundle = tmp_path / "depthwise"
    shutil.copytree(REPO / "bundles" / "depthwise", bundle)
    torch.manual_seed(0)
    atomic_save(get_network("depthwise", in_channels=4, out_channels=3).state_dict(), bundle / "models" / "model.pt")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    lines = []
    summary = segment_command(bundle, tmp_path / "out", dataset_dir=str(tmp_path / "studies"),
                              settings=SegmentSettings(device="cpu", roi_size=32), echo=lines.append)
    assert sorted(line.split(":")[0] for line in lines) == sorted(cases)
    assert summary.startswith("segmented 2 studies")
    drawn = terminal.getvalue()
    assert "segment:" in drawn and "0/2 [" in drawn and "/3" not in drawn
