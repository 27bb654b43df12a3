"""``docs/README.md`` of each bundle: one text, with the variant's own paragraph and figures."""

from __future__ import annotations

from .configs import Variant

__all__ = ["bundle_readme"]

#: Measured by ``raagr2 study --profile quick`` on 2026-11-27 (CPU, 2 cores; synthetic set of 24 cases at 64x64x32,
#: 64x64 slices, 6 epochs, batch 8; 3 test subjects): per-subject BraTS Dice TC, WT, ET and the thesis-style pooled
#: Dice, means over the test subjects.
QUICK_STUDY = {
    "baseline": (0.3231, 0.9076, 0.3333, 0.1150),
    "depthwise": (0.3995, 0.8526, 0.2031, 0.1531),
    "paired": (0.3760, 0.9046, 0.2656, 0.1108),
    "encdec": (0.3899, 0.8083, 0.3333, 0.0154),
}

_TEMPLATE = """# {title}

{summary_sentence}

Part of [raagr2_monai](../../README.md): RAAGR2-Net and its weight-shared variants, reproduced from a master's thesis
on compressing RAAGR2-Net, as MONAI bundles. All four bundles share every config but `network_def` (a test guards it).

| | |
|---|---|
| network | `{network}` |
| parameters | {params} (3 output channels) |
| FLOPs per 192x192 slice | {gflops} G (`torch.utils.flop_counter.FlopCounterMode`, convolutions, 2 FLOPs per multiply-add) |
| input | 4 channels in this order: T1ce, T1, T2, FLAIR; axial slices, H and W multiples of 16 |
| output | 3 sigmoid channels: TC (labels 1+4), WT (1+2+4), ET (4), thresholded at 0.5 |

## Data

Cases in BraTS layout: `<root>/<case>/<case>_{{t1,t1ce,t2,flair,seg}}.nii.gz` (2021) or `<root>/{{HGG,LGG}}/<case>/...`
(2018-2020). Labels 0, 1 (NCR/NET), 2 (edema), 4 (enhancing tumour). Without a `dataset_dir`, the bundle uses the
built-in synthetic BraTS-like set (`raagr2_monai.data.synthetic`), generated on first use under
`~/.cache/raagr2_monai/synthetic` (or `$RAAGR2_SYNTHETIC_DIR`). The split is by patient (70/15/15, stratified by grade
when grades are known, fixed by `seed`); `raagr2 datalist --data_dir DIR --output datalist.json` writes it once, and
`--datalist datalist.json` makes every workflow use it.

Preprocessing (`raagr2_monai.data.transforms`): the four modalities stacked as channels, RAS orientation, 1 mm spacing,
z-score per channel over brain voxels, labels to TC/WT/ET, in-plane crop or pad to `roi_size` around the brain.
Training samples axial slices (a `tumour_fraction` share of them through tumour) with flips and intensity
scale/shift; validation, evaluation and inference keep whole volumes and run the network slice by slice
(`SliceInferer`). Predictions are inverted back to the input's own grid.

## Use

From the repository root, after `make install` (`. .venv/bin/activate`):

```bash
# train (CPU defaults: 96x96 crops, 2 epochs, minutes); best model by validation mean Dice -> models/model.pt
python -m monai.bundle run training --config_file bundles/{name}/configs/train.json
# on a GPU with real data, the thesis's settings
python -m monai.bundle run training --config_file bundles/{name}/configs/train.json \\
    --dataset_dir /data/BraTS2021 --roi_size "[192,192]" --batch_size 16 --epochs 35
# resume an interrupted run from runs/train/last.pt
python -m monai.bundle run training --config_file bundles/{name}/configs/train.json --resume true
# several GPUs
torchrun --nproc_per_node=2 -m monai.bundle run training \\
    --config_file "['bundles/{name}/configs/train.json','bundles/{name}/configs/multi_gpu_train.json']"
# evaluate models/model.pt on the testing split -> runs/evaluate/metrics_*.csv
python -m monai.bundle run evaluating \\
    --config_file "['bundles/{name}/configs/train.json','bundles/{name}/configs/evaluate.json']"
# label maps (0/1/2/4) in each input's own geometry -> runs/inference/<case>_seg.nii.gz
python -m monai.bundle run inferring --config_file bundles/{name}/configs/inference.json --dataset_dir /data/new_cases
```

Settings to override: `dataset_dir`, `datalist`, `output_dir`, `epochs`, `batch_size`, `learning_rate`, `roi_size`,
`val_interval`, `device`, `amp` (CUDA only), `seed`, `resume`. Every run writes `run.json` (settings, seed, command
line, versions, git commit) and a copy of its configs into its output folder.

Loss: 0.5 BCE + 0.5 soft Dice on the sigmoid outputs (`raagr2_monai.losses.RAAGR2Loss`); Adam; ReduceLROnPlateau on
the validation mean Dice; early stopping after 10 validations without a gain of 1e-4; AMP on CUDA.

### MLflow

Add `--tracking mlflow` to a training run: parameters, per-iteration and per-epoch train loss, validation Dice and the
model go to a SQLite store, `runs/train/mlruns.db` (MLflow 3 no longer accepts a file store). Open it with

```bash
mlflow ui --backend-store-uri sqlite:///bundles/{name}/runs/train/mlruns.db
```

### MONAI Label

The inference config exposes `network_def`, `preprocessing`, `postprocessing` and `inferer`; the metadata's first
input (`image`, 4 channels) and output (`pred`, channel_def TC/WT/ET) are what MONAI Label's bundle app reads. Its
datastore gives one image per case, so store each case as one 4-channel NIfTI (T1ce, T1, T2, FLAIR). MONAI Label's
package pulls its own torch and numpy < 2: install it in a separate environment with this package, and start it with
`monailabel start_server --app monaibundle --studies <datastore> --conf models {name} --conf zoo_source github`
after copying this bundle into the app's model folder.

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
SNIP at initialisation as published, then train for `finetune_epochs` at lr 1e-3), `snip_batches`, `source_ckpt`,
`output_dir`, `overwrite`.

## Metrics

Evaluation reports per subject, on the 3D volume (slices stacked back): Dice and HD95 for TC, WT and ET (the BraTS
regions) and for NCR, ED and ET (the label's sub-regions), plus the thesis-style pooled Dice and the mean IoU as
separately named columns. Empty regions follow the BraTS convention (both empty: Dice 1, HD95 0; one empty: Dice 0).
The thesis's headline "Dice 0.985" pooled every output channel on soft predictions, background-like voxels included;
it is not comparable with the per-region Dice and is kept only for comparison.

Measured with `raagr2 study --profile quick` (CPU; the synthetic set at 64x64x32, 64x64 slices, 6 epochs, batch 8;
evaluated on 3 held-out subjects): Dice TC {tc:.2f}, WT {wt:.2f}, ET {et:.2f}; thesis-style pooled Dice {pooled:.3f}.
This proves the pipeline, not the model: enhancing tumour is not learnt in 6 CPU epochs, and the ET figure is mostly
the lower-grade subject without ET, scored 1 for an empty prediction. No figures on real BraTS data have been measured
by this project yet (the `full` profile needs a GPU); the thesis reports a pooled Dice near 0.98 for every variant.

## Differences from the thesis

- Channel order T1ce, T1, T2, FLAIR and outputs TC/WT/ET (the thesis mislabelled its output channels as NCR, ET, ED).
- The loss takes (prediction, target); the thesis's scripts swapped them.
- Split by patient (70/15/15), never by slice; the thesis split slices 80/20.
- Encoder-Decoder Shared really ties decoder and encoder kernels and carries no unused parameters
  (6,606,701 parameters at 5 outputs, not the thesis's 6,621,141).
- FLOPs come from PyTorch's FlopCounterMode, which counts functional convolutions; the thesis's ptflops figure did not.

## Limits

Research code for model compression, not for clinical use. The weights in `models/` are only as good as the run that
wrote them: a CPU run on the synthetic set proves the pipeline, not the model. 2D slice-wise segmentation ignores
through-plane context. `--resume true` restores the network, optimizer, LR scheduler and epoch, but restarts the
early-stopping patience count. Serving with MONAI Label is described from its bundle app's documented behaviour and
has not been run by this project (its package needs its own environment).
"""


def bundle_readme(variant: Variant) -> str:
    """The bundle's ``docs/README.md``."""
    from pydoc import locate

    from raagr2_monai.networks import count_flops, count_parameters

    net = locate(variant.network)(in_channels=4, out_channels=3)
    params = f"{count_parameters(net):,}"
    gflops = f"{count_flops(net, (1, 4, 192, 192)) / 1e9:.2f}"
    return _TEMPLATE.format(
        title=variant.title,
        summary_sentence=f"{variant.title} is {variant.summary}.",
        network=variant.network,
        params=params,
        gflops=gflops,
        name=variant.name,
        **dict(zip(("tc", "wt", "et", "pooled"), QUICK_STUDY[variant.name])),
    )
