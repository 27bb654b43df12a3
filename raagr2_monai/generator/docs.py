"""A base bundle's ``docs/README.md`` (:func:`bundle_readme`): one text with the variant's own paragraph and figures,
built from the parts a pruned bundle's README shares (:mod:`raagr2_monai.bundle.readme`)."""

from __future__ import annotations

from pydoc import locate

from raagr2_monai.bundle.readme import limits_section, run_commands, use_section
from raagr2_monai.networks import Variant, count_flops, count_parameters

__all__ = ["bundle_readme"]


_BUNDLE_README = """# {title}

{summary_sentence}

Part of [raagr2_monai](../../README.md): RAAGR2-Net and its weight-shared variants, reproduced from a master's thesis
on compressing RAAGR2-Net, as MONAI bundles. All four bundles share every config but `network_def` (a test guards it).

| | |
|---|---|
| network | `{network}` |
| parameters | {params} (3 output channels) |
| FLOPs per 192x192 slice | {gflops} G (`torch.utils.flop_counter.FlopCounterMode`, convolutions, 2 FLOPs per multiply-add) |
| input | 4 channels in this order: T1ce, T1, T2, FLAIR; axial slices, H and W multiples of 16 |
| output | 3 logit channels: TC, WT, ET (a sigmoid each, in the inferer); written as one label map (NCR 1, ED 2, ET 4 in the BraTS 2021 convention) |

## Data

Discovered under `dataset_dir`, whatever the distribution (`raagr2_monai.data.layouts`): BraTS 2021
(`<case>/<case>_{{t1,t1ce,t2,flair,seg}}.nii.gz`), 2018-2020 (`{{HGG,LGG}}/<case>/...`), 2023 and later
(`<case>/<case>-{{t1c,t1n,t2w,t2f,seg}}.nii.gz`), the Medical Segmentation Decathlon's Task01_BrainTumour (`dataset.json`,
4D `imagesTr/*.nii.gz`, channel order read from `dataset.json`) and a folder of 4D studies (T1ce, T1, T2, FLAIR).
Labels are read in the dataset's convention (`label_convention`: `auto`, or `brats2021` with ET 4, `brats2023` with
ET 3, `msd` with 1 edema, 2 non-enhancing, 3 enhancing); a dataset mixing conventions, or a seg file with any other
value, is refused with the file named. Without a `dataset_dir`, the bundle uses the built-in synthetic BraTS-like set
(`raagr2_monai.data.synthetic`), generated on first use under `~/.cache/raagr2_monai/synthetic` (or
`$RAAGR2_SYNTHETIC_DIR`). The split is by patient (70/15/15, stratified by grade when grades are known, fixed by
`seed`); `raagr2 datalist --data_dir DIR --output datalist.json` writes it once, and `--datalist datalist.json` makes
every workflow use it.

Each study is preprocessed once into `cache_dir` (default `$RAAGR2_CACHE_DIR`, else the bundle's `cache/`), as a
float16 image and a uint8 label map (`compact: true`), keyed by its files (path, size, modification time) and the
preprocessing settings, and read from there by every later training, pruning and validation
(`raagr2_monai.data.StudyCacheDataset`): host memory does not grow with the number of studies, and a 240x240x155 study
takes about 60 MB of disk instead of about 190 MB of RAM. Training crops its slices from the compact study and
expands only those to float32 and TC/WT/ET; evaluation caches its test studies in float32 (`compact: false`), so its
label maps are those `run inferring` writes. Delete the folder to reclaim the space.

Preprocessing is spelt out transform by transform in each config (`preprocessing#transforms`, the model zoo's style):
the four modalities stacked as channels, RAS orientation, 1 mm spacing, the in-plane box of the brain, z-score per
channel over brain voxels, padding (never cropping) to at least `roi_size` and to a multiple of 16. `roi_size` is the
training crop, not a field of view: training samples `roi_size` patches of axial slices (a `tumour_fraction` share
through tumour) with flips and intensity scale/shift; validation, evaluation and inference give the network whole
slices, `sw_batch_size` slices per call (`whole_slice: true`, the default; the networks are fully convolutional), so
nothing of the brain is cut; slices without brain get the network's output for zeros, computed once
(`skip_empty`). `whole_slice: false` slides `roi_size` windows over the slices instead (`SliceInferer`, `overlap`
0.25, Gaussian blending): about four overlapping windows per BraTS slice at 192, several times the time, for label
maps that agree with the whole-slice ones on all but a few voxels. The three outputs are thresholded at `threshold` (probability >= 0.5), nested (ET inside TC inside WT),
inverted to the input's own grid and written as one label map in the input's convention (`output_labels: "input"`;
or `brats2021`, `brats2023`, `msd`).

Any argument of any transform can be set from the command line by its config id, e.g. 1.5 mm voxels for inference:

```bash
python -m monai.bundle run inferring --config_file bundles/{name}/configs/inference.json \\
    --dataset_dir /data/new_cases --preprocessing#transforms#2#pixdim "[1.5,1.5,1.5]"
```

{use}
Settings to override: `dataset_dir`, `datalist`, `output_dir`, `epochs`, `batch_size`, `learning_rate`,
`lr_schedule`, `roi_size`, `val_interval`, `val_cases` (validate on the first so many validation studies; null: all,
the thesis's setting), `whole_slice`, `sw_batch_size`, `device`, `amp` (CUDA only), `seed`, `resume`. Every run writes `run.json`
(settings, seed, command line, versions, git commit) and a copy of its configs into its output folder.

`device` is `auto` by default (CUDA when available, else the CPU; a torchrun process takes the GPU of its
`LOCAL_RANK`), or `cpu`, `cuda`, `cuda:<index>`; a device the machine lacks stops the run at `initialize` in one line.
With `amp` (the default) the network runs in autocast on CUDA, in training, validation, evaluation and inference
alike: bfloat16 where the GPU has it (compute capability 8.0 or later), else float16 (`amp_precision: "auto"`; or
`bf16`, `fp16`, `fp32`); `raagr2 segment` uses the same setting, so it writes the label map `run inferring` writes.
Behind OpenVINO (`backend: "openvino"`) the same setting is what the CPU computes in: `auto` is bfloat16 on CPUs with
a bfloat16 unit (AVX512-BF16 or AMX, as OpenVINO detects them), else fp32; `fp32` forces full precision, and `bf16`
on a CPU without such a unit is refused. `raagr2 segment` prints which was used.
Training on a GPU also sets up for throughput: channels-last activations (`channels_last`, null: where faster, also
x86 CPUs), cuDNN autotuning (`deterministic: false`; evaluation runs deterministic), fused Adam, pinned and
non-blocking batch copies, no loss scaling in bfloat16, and the loss logged every `log_every` iterations (20 on CUDA),
so that a step does not wait for the host.
Predictions are taken to the CPU in float32 before they are inverted onto the input's grid, and every metric is
computed on the CPU.

Loss: 0.5 BCE + 0.5 soft Dice, on the logits (`raagr2_monai.losses.RAAGR2Loss`); Adam; ReduceLROnPlateau on
the validation mean Dice (`lr_schedule: "plateau"`, the thesis's; `"cosine"` anneals to zero over the epochs, for
short runs); early stopping after 10 validations without a gain of 1e-4; AMP on CUDA.

### MLflow

Add `--tracking mlflow` to a training run: parameters, per-iteration and per-epoch train loss, validation Dice and the
model go to a SQLite store, `runs/train/mlruns.db` (MLflow 3 no longer accepts a file store). Open it with

```bash
mlflow ui --backend-store-uri sqlite:///bundles/{name}/runs/train/mlruns.db
```

### MONAI Label

The bundle runs in MONAI Label 0.8.5's `monaibundle` app: `/info` names the labels by the values written (NCR 1, ED 2,
ET 4), `/infer` returns the same label map as `monai.bundle run inferring` on the same file and weights, `/train` with
a few labelled studies writes `models/model.pt` (the last weights when no validation case is left). MONAI Label's
datastore holds one file per study: store each study as one 4D NIfTI (T1ce, T1, T2, FLAIR), labels under
`labels/final/`. The inference config's `displayable_configs` (roi size, overlap, threshold) appear in MONAI Label's
client. MONAI Label needs packages of its own (numpy < 2, jsonschema < 4), so `make monailabel` installs it with this
package in `.venv-monailabel`, apart from `.venv`. On one machine, CPU only (the bundle needs `models/model.pt`):

```bash
make monailabel && . .venv-monailabel/bin/activate
monailabel apps --download --name monaibundle --output apps
mkdir -p apps/monaibundle/model && cp -r bundles/{name} apps/monaibundle/model/{name}
CUDA_VISIBLE_DEVICES="" monailabel start_server --app apps/monaibundle --studies /data/studies \\
    --conf models {name} --conf zoo_source ngc --conf sam2 false --host 127.0.0.1 --port 8000
curl http://127.0.0.1:8000/info/
curl -X POST "http://127.0.0.1:8000/infer/{name}?image=<study id>&output=image" \\
    -F 'params={{"device":"cpu"}}' -o <study id>_pred.nii.gz
curl -X POST "http://127.0.0.1:8000/train/{name}?run_sync=true" -H 'Content-Type: application/json' \\
    -d '{{"max_epochs":1,"device":"cpu"}}'
```

`--conf models` names the folder copied into `model/`, so nothing is downloaded; MONAI Label reads `train.json` when
the server starts (restart it after editing the config). Its `/info` shows the network's `dimension` as 2: the network
runs on axial slices, the label map is 3D.

Active learning: with `--conf epistemic_model {name}` the app scores every unlabelled study by Monte-Carlo dropout
(`epistemic_simulation_size` samples, default 5; `epistemic_dropout`, default 0.2, the probability of every dropout
layer). The bundle takes MONAI Label's `dropout` argument (`network_def`; the Encoder-Decoder Shared variant drops
after each decoder block), keeps BatchNorm on its trained running statistics while the network runs in training mode,
and returns each sample as the three region probabilities and their complements, so the `epistemic_entropy` MONAI
Label stores is the voxel mean of the three regions' binary entropies of the mean prediction: in nats, between 0 and
3 ln 2. A pruned bundle is scored the same way (its pruning keeps the dropout layers).

```bash
CUDA_VISIBLE_DEVICES="" monailabel start_server --app apps/monaibundle --studies /data/studies \\
    --conf models {name} --conf epistemic_model {name} --conf epistemic_simulation_size 5 \\
    --conf zoo_source ngc --conf sam2 false --host 127.0.0.1 --port 8000
curl -X POST "http://127.0.0.1:8000/scoring/{name}?run_sync=true" -H 'Content-Type: application/json' \\
    -d '{{"device":"cpu","max_workers":1}}'
curl "http://127.0.0.1:8000/datastore/image/info?image=<study id>"   # its epistemic_entropy
```

`max_workers` 1 scores one study at a time: with more, MONAI Label 0.8.5 re-parses the bundle's one config in
several threads at once, which fails now and then inside MONAI Label. The `monaibundle` app offers the `random` and
`first` strategies only; read the scores from the datastore and label the highest first. The score is an average
over the whole volume, mostly certain background, so it grows with the size of the predicted tumour; whether it
points at the studies a model gets wrong is measured in the project's README (Uncertainty).

## Uncertainty

Inference and evaluation can predict each slice several times and average (`uncertainty`, default `none`):
`tta` predicts the slice and its in-plane flips (`uncertainty_samples` of the 4: the slice, left-right, up-down, both),
`mc_dropout` runs the network with its dropout layers on and BatchNorm on its running statistics
(`uncertainty_samples` >= 2; the torch backend only: an exported network has no dropout). The label map then comes
from the mean probabilities, and each study also gets `<case>_uncertainty.nii.gz` beside its label map, on the same
grid (float32, the voxel-wise sum of the three regions' binary entropies of the mean probability, in nats, 0 to
3 ln 2), and a row of `uncertainty.csv` (`case`, `mode`, `samples`, `score`: the map's mean over the voxels where
some region's probability reaches 0.1, 0 for a confidently empty study). An unknown mode, fewer than 2 samples, more
than 4 for `tta`, or `mc_dropout` on a network without dropout stops the run at `initialize`, in one line.

```bash
python -m monai.bundle run inferring --config_file bundles/{name}/configs/inference.json \\
    --dataset_dir /data/new_cases --uncertainty tta --uncertainty_samples 4
raagr2 segment bundles/{name} out/ --dataset_dir /data/new_cases --uncertainty mc_dropout --uncertainty_samples 8
python -m monai.bundle run evaluating \\
    --config_file "['bundles/{name}/configs/train.json','bundles/{name}/configs/evaluate.json']" --uncertainty tta
```

With an uncertainty, evaluation adds an `uncertainty` column to `metrics_per_subject.csv` and measures whether the
score predicts failure (a subject whose mean Dice over TC, WT and ET is below `failure_dice`, 0.8): Spearman's
correlation of score and mean Dice (negative is useful), the AUROC of the score for finding the failures, and voxel
calibration (expected calibration error over all voxels and over the voxels near tumour), in
`failure_prediction.json`, in rows of `metrics_summary.csv`, and as a reliability diagram, `reliability.png`.

## Pruning

`configs/prune.json`, merged after train.json, prunes `models/model.pt` (magnitude, SNIP or DepGraph), fine-tunes it
with the pruning kept in force (20 epochs, Adam lr 1e-4, ReduceLROnPlateau by default) and writes a self-contained
bundle of the pruned model to `pruned/<method>-<percent>/` (configs, metadata with the requested ratio, the achieved
sparsity or parameter reduction, parameters and FLOPs before/after, `models/model.pt`; the pruning history for
DepGraph, the masks and a compressed `model_sparse.pt` for magnitude/SNIP):

```bash
python -m monai.bundle run pruning \\
    --config_file "['bundles/{name}/configs/train.json','bundles/{name}/configs/prune.json']" \\
    --method depgraph --ratio 0.2 --finetune_epochs 20
# the pruned bundle runs like this one
python -m monai.bundle run inferring --config_file bundles/{name}/pruned/depgraph-20/configs/inference.json
```

Settings: `method` (`magnitude`, `snip`, `depgraph`), `ratio` (in (0, 1)), `scope` (`global` or `uniform`),
`finetune_epochs` (0: no fine-tuning; the pruned model is validated once and saved, after re-estimating BatchNorm
statistics on `bn_recalibration_batches` batches if that is > 0), `from_scratch` (prune the untrained network, e.g.
SNIP at initialisation as published, then train for `finetune_epochs` at lr 1e-3), `snip_batches`, `snip_size`
(SNIP's batches are padded with background to this in-plane size, 240 x 240 by default: on smaller training crops the
deepest dilated taps of the baseline only see padding, get a zero score and would be removed first whatever their
worth), `round_to` (DepGraph only: every pruned layer keeps a multiple of this many channels, e.g. 8 for a model
deployed behind OpenVINO or ONNX Runtime on a CPU, whose kernels work on blocks of 8 or 16 channels; null: any count),
`teacher_bundle` and `distill_weight` (fine-tune with knowledge distillation from another trained bundle,
e.g. `bundles/baseline`: the loss becomes `(1 - w) * loss(pred, label) + w * loss(pred, teacher's prediction)`),
`source_ckpt`, `output_dir`, `overwrite`.

## Metrics

Evaluation scores what inference writes: the label map, on the input's own grid, against the original seg file, with
the file's voxel spacing (HD95 in mm), following the official BraTS evaluation (`metric_convention: "brats"`): per
subject and region (TC, WT, ET and the sub-regions NCR, ED), Dice and HD95 as the 95th percentile of the pooled
symmetric surface distances; 373 mm when exactly one side is empty or the two do not overlap; a region empty in both
is NaN and left out of the means (the summary counts the subjects in each mean). Lesion-wise Dice and HD95 with lesion
counts, precision, recall and F1 follow BraTS 2023 (`lesionwise: "brats2023-gli"`: 26-connectivity, ground-truth
lesions dilated by 3 voxels for matching, lesions of 50 mm³ or less ignored). The thesis's conventions (both empty:
Dice 1, HD95 0) remain available as `metric_convention: "thesis"`, and the thesis's headline "Dice 0.985", pooled over
every output channel on soft predictions, is kept as a separately named column for comparison only.

No weights ship with this bundle, so its metadata has no `eval_metrics`: a number here would describe a run, not the
bundle. `raagr2 study` trains, evaluates and compares every variant and writes the figures to its report.

## Differences from the thesis

- Channel order T1ce, T1, T2, FLAIR and outputs TC/WT/ET (the thesis mislabelled its output channels as NCR, ET, ED).
- The loss takes (prediction, target); the thesis's scripts swapped them.
- Split by patient (70/15/15), never by slice; the thesis split slices 80/20.
- Encoder-Decoder Shared really ties decoder and encoder kernels and carries no unused parameters
  (6,606,701 parameters at 5 outputs, not the thesis's 6,621,141).
- FLOPs come from PyTorch's FlopCounterMode, which counts functional convolutions; the thesis's ptflops figure did not.

{limits} 2D slice-wise segmentation ignores
through-plane context. `--resume true` restores the network, optimizer, LR scheduler and epoch, but restarts the
early-stopping patience count.
"""


def bundle_readme(variant: Variant) -> str:
    """A base bundle's ``docs/README.md``: what the variant is, its size and cost, how to use and prune it, what the
    quick study measured, and how it differs from the thesis."""
    root = f"bundles/{variant.name}"
    use = use_section(
        [
            "# train (CPU defaults: 96x96 crops, 2 epochs, minutes); best model by validation mean Dice "
            "-> models/model.pt",
            f"python -m monai.bundle run training --config_file {root}/configs/train.json",
            "# on a GPU with real data, the thesis's settings",
            f"python -m monai.bundle run training --config_file {root}/configs/train.json \\",
            '    --dataset_dir /data/BraTS2021 --roi_size "[192,192]" --batch_size 16 --epochs 35',
            "# resume an interrupted run from runs/train/last.pt",
            f"python -m monai.bundle run training --config_file {root}/configs/train.json --resume true",
            "# several GPUs",
            "torchrun --nproc_per_node=2 -m monai.bundle run training \\",
            f"    --config_file \"['{root}/configs/train.json','{root}/configs/multi_gpu_train.json']\"",
            *run_commands(root),
        ],
        intro="From the repository root, after `make install` (`. .venv/bin/activate`):",
    )
    limits = limits_section("The weights in `models/` are only as good as the run that\nwrote them")
    net = locate(variant.network)(in_channels=4, out_channels=3)
    return _BUNDLE_README.format(
        title=variant.title,
        summary_sentence=f"{variant.title} is {variant.summary}.",
        network=variant.network,
        params=f"{count_parameters(net):,}",
        gflops=f"{count_flops(net, (1, 4, 192, 192)) / 1e9:.2f}",
        name=variant.name,
        use=use,
        limits=limits,
    )
