"""``raagr2 benchmark --device ...`` of the bundle trained on the test device: every figure is measured there (on CUDA
the peak memory is the GPU's, synchronised timings) and the output names the device it ran on."""

import json

import torch

from .conftest import is_cuda, raagr2


def test_benchmark_measures_on_the_device_and_names_it(trained, device, tmp_path, workdir):
    out = tmp_path / "benchmark.json"
    raagr2("benchmark", "--bundles", trained, "--size", "32", "--batch", "1,2", "--repeats", "2", "--warmup", "1",
           "--device", device, "--format", "json", "--output", out, cwd=workdir)
    result = json.loads(out.read_text())
    environment = result.pop("_meta")["environment"]
    assert torch.device(environment["device"]).type == torch.device(device).type
    if is_cuda(device):
        assert environment["device_name"] == torch.cuda.get_device_name(torch.device(device))
        assert environment["cuda"] == torch.version.cuda
    assert sorted(result) == ["baseline", "depthwise"]  # the baseline is added as the reference
    assert result["depthwise"]["weights"] == str(trained / "models" / "model.pt")
    for row in result.values():
        assert all(row["latency_ms"][batch]["median"] > 0 for batch in ("1", "2"))
        assert row["peak_mem_mb"] > 0 and row["train_step_ms"] > 0
