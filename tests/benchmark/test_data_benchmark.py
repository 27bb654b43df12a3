"""The data-path benchmark: before (CacheDataset, float32 in RAM) against after (StudyCacheDataset, compact on disk)."""

import os

import pytest

from raagr2_monai.benchmark.data import benchmark_data, format_data_benchmark
from raagr2_monai.data import find_cases, generate

SIDE_KEYS = {
    "study_mb",
    "disk_mb_per_study",
    "rss_mb_per_study",
    "build_s_per_study",
    "build_studies_per_s",
    "epoch_slices",
    "epoch_s",
    "train_slices_per_s",
    "epoch_peak_rss_mb",
    "peak_since_start",
}


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("synth") / "set")
    generate(folder, cases=2, seed=0, shape=(48, 48, 24))
    return folder


def test_figures_side_by_side(studies, tmp_path):
    figures = benchmark_data(studies, roi_size=(32, 32), num_samples=2, batch_size=4, cache_dir=str(tmp_path))
    assert (figures["studies"], figures["train_studies"], figures["validation_studies"]) == (2, 1, 1)
    before, after = figures["before"], figures["after"]
    assert set(before) == set(after) == SIDE_KEYS
    # float32 image + 3 float32 regions against float16 image + one uint8 map: 28 against 9 bytes per voxel
    assert 0 < after["study_mb"] < before["study_mb"] / 2.5
    assert before["disk_mb_per_study"] is None and 0 < after["disk_mb_per_study"] < before["study_mb"] / 2
    for side in (before, after):
        assert side["epoch_slices"] == 2  # one training study, two slices
        assert side["train_slices_per_s"] > 0 and side["build_s_per_study"] > 0 and side["build_studies_per_s"] > 0
        assert side["epoch_peak_rss_mb"] > 50  # the whole process: interpreter, torch, MONAI
    assert os.listdir(tmp_path) == []  # the cache went with the run

    table = format_data_benchmark(figures)
    for text in ("VmRSS", "VmHWM", "perf_counter", "before: CacheDataset", "after: StudyCacheDataset",
                 "cache on disk, MB per study"):
        assert text in table


def test_datalist_entries_and_bad_settings(studies):
    with pytest.raises(ValueError, match="divisible by 16"):
        benchmark_data(find_cases(studies), roi_size=(30, 32))
    with pytest.raises(ValueError, match="at least one study"):
        benchmark_data([], roi_size=(32, 32))
    with pytest.raises(ValueError, match="num_samples and batch_size"):
        benchmark_data(studies, roi_size=(32, 32), batch_size=0)


def test_validation_pass_with_windows_and_with_whole_slices(studies, tmp_path):
    from raagr2_monai.benchmark.validation_time import format_validation, time_validation
    from raagr2_monai.utils import atomic_write_json

    entries = find_cases(studies)
    datalist = str(tmp_path / "datalist.json")
    atomic_write_json(datalist, {"training": entries, "validation": entries})
    summary = time_validation(datalist, "depthwise", roi_size=32, cache_dir=str(tmp_path / "cache"))
    assert summary["studies"] == 2
    for mode in ("windows", "whole_slices"):
        assert summary[mode]["studies"] == 2 and summary[mode]["seconds"] > 0
        assert 0.0 <= summary[mode]["mean_dice"] <= 1.0
    # the same weights on the same studies: the masks differ only where the windows' context does
    assert 0.5 < summary["agreement"] <= 1.0
    assert summary["speedup"] == pytest.approx(summary["windows"]["seconds"] / summary["whole_slices"]["seconds"])
    assert "whole slices take 1/" in format_validation(summary)
    assert list((tmp_path / "cache").glob("*.pt")), "the validation studies were read through the study cache"
    with pytest.raises(ValueError, match="cases must be a positive number"):
        time_validation(datalist, cases=0)
