"""`raagr2 summary`: per-variant sizes and reductions, as a table and as JSON."""

import json
import subprocess
import sys

import pytest

from raagr2_monai.cli import summary


def test_summary_json_counts_and_reductions():
    rows = json.loads(summary(out_channels=5, size=32, format="json"))
    assert list(rows) == ["baseline", "depthwise", "paired", "encdec"]
    assert rows["baseline"]["params"] == 8_911_301
    assert rows["encdec"]["params_per_part"]["decoder blocks"] == 1_921_600
    assert rows["baseline"]["reduction_pct"]["params"] == 0.0
    assert rows["depthwise"]["reduction_pct"]["params"] == round(100 * (1 - 5_046_221 / 8_911_301), 2)
    assert rows["baseline"]["flops"] == 15_460_761_600 * 32 * 32 // (192 * 192)


def test_summary_table_from_the_console_script():
    out = subprocess.run(
        [sys.executable, "-m", "raagr2_monai.cli", "summary", "--size", "32"], capture_output=True, text=True, check=True
    ).stdout
    assert "FlopCounterMode" in out
    assert "8,911,301" in out and "5,051,061" in out


def test_summary_rejects_unknown_format():
    with pytest.raises(ValueError, match="table' or 'json"):
        summary(format="yaml")
