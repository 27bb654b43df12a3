"""What each model costs: parameters, size on disk, FLOPs, inference latency, peak memory, training step (issue 6).

:func:`~.measure.benchmark_models` measures any set of networks in one run and states every figure also as a ratio
against the baseline measured in that same run (:mod:`.memory` measures the peak memory); :mod:`.scoring_time` times
the scoring of one subject, global against lesion-wise metrics (``raagr2 benchmark_metrics``);
:func:`~.benchmark_cli.run_benchmark` builds the networks from variant names and bundle folders and measures them
as a :class:`~.benchmark_settings.BenchmarkSettings` says (``raagr2 benchmark``,
:func:`~.benchmark_cli.benchmark_command`); :func:`~.render.render` writes the result as a table, CSV or JSON;
:mod:`.training` measures the training throughput on a device (slices per second, achieved FLOP/s and its share of
the GPU's peak, peak memory of a step; ``raagr2 benchmark --throughput``).

How each figure is obtained (also recorded under the result's ``"_meta"`` key):

- ``params``: ``sum(p.numel() for p in model.parameters())``, each tensor once; ``nonzero_params``: the same count
  without the zero entries of the weight tensors (two dimensions or more; 1-D biases and norm parameters all count),
  so it is below ``params`` exactly for a mask-pruned model (and equals its ``PruneResult.params_after``).
- ``size_mb``: the state_dict as ``torch.save`` writes it, in MB (10^6 bytes). ``size_sparse_mb``: the compressed
  form of :func:`raagr2_monai.pruning.to_sparse_state_dict` (the size of a bundle's ``models/model_sparse.pt`` where
  there is one), of the weight tensors with more than 1/32 zeros (where the packed form is smaller); ``None`` for
  a model without such tensors.
- ``flops``: ``torch.utils.flop_counter.FlopCounterMode`` at batch 1 (convolutions, a multiply-add counts 2).
- ``latency_ms``: per batch size, wall time of one forward pass (``time.perf_counter``; eval mode, ``torch.no_grad``;
  ``torch.cuda.synchronize`` around each run on CUDA): median, 25th and 75th percentile over the timed runs, the
  warm-up runs excluded.
- ``peak_mem_mb``: on CUDA, ``torch.cuda.max_memory_allocated`` over one forward pass at the largest batch (weights,
  input, activations). On CPU, the peak resident set (``VmHWM``) of a separate process while it runs that one forward
  pass (:class:`~raagr2_monai.benchmark.memory.CpuMemoryProbe`: one process measures the models in turn, its peak
  reset and the memory the previous model freed released before each): it includes the Python interpreter, the torch
  libraries, the weights, the input and the activations; nothing is subtracted. ``mem_before_forward_mb`` is the same
  process's resident set just before the forward pass; ``peak_since_start`` is true where the kernel's peak could not
  be reset then (no ``/proc/self/clear_refs``; each model then gets a process of its own).
- ``train_step_ms``: forward + :class:`~raagr2_monai.losses.RAAGR2Loss` + backward + Adam step at the largest batch
  (or a given ``train_shape``: the study times its own batch and crop), median over the timed steps, on a copy of the
  model; ``train_images_per_s`` is the batch over that median.
- ``timed_as``: with ``share_structure`` (the study's setting), models of the same structure (:func:`structure_groups`:
  same modules, parameter and buffer shapes) are timed once, as the first of them: dense kernels do the same work
  whatever the weights' values, so a mask-pruned or fine-tuned copy costs what its source costs.
- ``vs_baseline``: each figure divided by the baseline's (the compressed size by the baseline's dense size); for
  latency, the medians per batch size.

The JSON result is an object keyed by model name; the key ``"_meta"`` (model names may not start with ``_``) holds the
environment (device, CPU model, torch threads, versions), the settings and the descriptions above.
"""

from .benchmark_cli import benchmark_command, run_benchmark
from .scoring_time import lesion_study, render_scoring, scoring_command, time_scoring
from .backend_latency import add_backend_latencies, backend_latencies
from .benchmark_settings import BenchmarkSettings, check_backends, check_runnable, runnable_backends
from .measure import BASELINE, FLOP_COUNTER, META_KEY, TIMER, benchmark_models, check_settings, structure_groups
from .render import FORMATS, check_format, model_rows, render
from .training import PEAK_TFLOPS, render_throughput, throughput_grid, training_throughput

__all__ = [
    "BASELINE",
    "BenchmarkSettings",
    "FLOP_COUNTER",
    "FORMATS",
    "PEAK_TFLOPS",
    "META_KEY",
    "TIMER",
    "add_backend_latencies",
    "backend_latencies",
    "benchmark_command",
    "benchmark_models",
    "lesion_study",
    "render_scoring",
    "scoring_command",
    "time_scoring",
    "check_backends",
    "check_runnable",
    "runnable_backends",
    "check_format",
    "check_settings",
    "model_rows",
    "render",
    "render_throughput",
    "run_benchmark",
    "structure_groups",
    "throughput_grid",
    "training_throughput",
]
