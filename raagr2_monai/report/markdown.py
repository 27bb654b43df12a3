"""``report.md``: the study's three tables with the thesis's published figures beside ours (marked †; Table 1 with the
95 % confidence interval of every mean, each model's paired difference to the baseline with its interval, and rows
that score identically on every subject marked ‡ and explained), the lesion-wise scores, the training table, each
family's best model on a test subject and per subject (and whether its uncertainty predicts failure: :mod:`.failure`),
the sources of every row, the charts and the thesis's own tables
with what is wrong with them; and :func:`write_report`, which writes it with the tables, charts and figures from a
finished study's :class:`ReportInputs`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

from raagr2_monai.constants import SCORED_REGIONS
from raagr2_monai.utils import atomic_write_text

from .charts import write_charts
from .deployment import deployment_lines
from .evaluation_figures import FAMILY_TITLES, EvaluationFigures, FamilyBest, best_per_family, write_evaluation_figures
from .failure import FailurePrediction, failure_lines, write_failure_prediction
from .paired import PAIRED_HEADER, paired_cell, paired_notes
from .rows import LESIONWISE_TABLE_COLUMNS, TABLE1_COLUMNS, TABLE2_COLUMNS, TABLE3_COLUMNS
from .statistics import IDENTICAL_TOLERANCE
from .tables import write_tables
from .thesis import THESIS_NOTES, THESIS_ROW, THESIS_TABLE1, THESIS_TABLE2, THESIS_TABLE3, THESIS_TABLE4

__all__ = ["ReportInputs", "quality_cell", "render_markdown", "write_report"]

PathLike = Union[str, os.PathLike]


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


_FORMATS = {
    "params": ",d", "nonzero_params": ",d", "size_mb": ".2f", "size_sparse_mb": ".2f", "gflops": ".3f",
    "latency_b1_ms": ".2f", "latency_bmax_ms": ".2f", "per_slice_ms": ".2f", "peak_mem_mb": ".0f",
    "train_step_ms": ".1f", "train_epoch_s": ".1f", "train_seconds": ".0f", "epochs": "d",
}


def quality_cell(key: str, value: Optional[float], ci95: Optional[float] = None) -> str:
    """How Table 1 prints a value: Dice, IoU and pooled Dice with 4 decimals, HD95 with 2, followed by `` ± `` and the
    half-width of its 95 % confidence interval where there is one.

    Example::

        >>> quality_cell("dice_TC", 0.5, 0.0794), quality_cell("hd95_TC", 12.0), quality_cell("dice_ET", None, 0.1)
        ('0.5000 ± 0.0794', '12.00', '-')
    """
    spec = ".2f" if key.startswith("hd95") else ".4f"
    if value is None or ci95 is None:
        return _fmt(value, spec)
    return f"{_fmt(value, spec)} ± {_fmt(ci95, spec)}"


_IDENTICAL_MARK = "‡"


def _identity_groups(rows: Sequence[Mapping[str, Any]]) -> List[List[Mapping[str, Any]]]:
    """The sets of rows identical on every subject (``row["identical_to"]``), each in report order, each once."""
    groups: List[List[Mapping[str, Any]]] = []
    seen: set = set()
    for row in rows:
        if row["identical_to"] and row["model"] not in seen:
            members = [row["model"], *row["identical_to"]]
            seen.update(members)
            groups.append([r for r in rows if r["model"] in members])
    return groups


def _identity_reason(group: Sequence[Mapping[str, Any]], roi_size: int) -> str:
    """Why a set of rows is likely identical on every subject."""
    if all(r["quality"][f"dice_{region}"] in (None, 0.0) for r in group for region in SCORED_REGIONS):
        return ("none of them overlaps the tumour on any subject (Dice 0 wherever a region is scored): they fail "
                "alike, which says nothing of what set them apart.")
    pruned = [r for r in group if r["kind"] != "architecture"]
    if pruned:
        names = ", ".join(f"`{r['model']}`" for r in pruned)
        tuned = " and fine-tuning" if any(r["finetune_epochs"] for r in pruned) else ""
        return (f"the likely reason is that the pruning{tuned} of {names} changed no weight that the test inputs "
                "reach, or changed the outputs too little to flip one voxel of the label maps: e.g. SNIP masks that "
                "only remove kernel taps which see nothing but the zero padding at the border at "
                f"{roi_size}x{roi_size} in-plane. The masks are in the pruned bundle's `pruning.json`; Table 2's "
                "non-zero parameters show how many weights went. Either way the pruning's effect on quality is not "
                "measured by these subjects.")
    return ("separately trained models rarely give the same label maps on every subject: check that the rows are "
            "not one run copied (as the thesis's DepGraph 20 % and 30 % rows are); their sources are listed below.")


def _identity_notes(rows: Sequence[Mapping[str, Any]], roi_size: int) -> List[str]:
    groups = _identity_groups(rows)
    if not groups:
        return []
    lines = ["", f"{_IDENTICAL_MARK} **Identical rows**: these rows have the same Dice and HD95 of every region on "
                 f"every test subject (to within {IDENTICAL_TOLERANCE:g}; `identical_to` in "
                 "`tables/table1_quality.csv`), so they are one result, not several:", ""]
    for group in groups:
        names = " and ".join(f"`{r['model']}`" for r in group)
        lines.append(f"- {names} are identical on every subject: {_identity_reason(group, roi_size)}")
    return lines


def _md_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> List[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def _thesis(name: str, table: Mapping[str, Mapping[str, Any]], key: str, spec: str) -> str:
    row = table.get(THESIS_ROW.get(name, ""))
    return _fmt(row.get(key), spec) if row else ""


def _backend_precision_note(backends: Mapping[str, Any]) -> str:
    """Which CPU the backends ran on and in which precision (``openvino-bf16``: OpenVINO in bfloat16)."""
    if "cpu" not in backends:
        return ""
    note = (f" CPU: {backends['cpu']} ({'with' if backends.get('cpu_bf16') else 'without'} a bfloat16 unit); "
            "every backend computes in fp32 except `openvino-bf16`, OpenVINO's bf16 inference precision.")
    return note + "".join(f" `{name}` not timed: {why}" for name, why in (backends.get("skipped") or {}).items())


@dataclass(frozen=True)
class ReportInputs:
    """What a finished study's report is made from, passed whole to :func:`write_report` and :func:`render_markdown`.

    Attributes:
        root: the study folder (the paths the report shows are relative to it).
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`, with their MLflow run ids).
        state: the content of the study's ``state.json`` (settings and finished steps).
        benchmark: the benchmark's JSON.
        dataset_dir: the data the study ran on.
        tracking_uri: the study's MLflow tracking URI.
        test_entries: the test subjects' datalist entries, as the evaluation read them (their images and seg files
            are drawn, see :func:`~raagr2_monai.report.evaluation_figures.write_evaluation_figures`).

    Example::

        inputs = ReportInputs(root, rows, state, benchmark, dataset_dir, tracking_uri, test_entries)
        write_report(inputs)
    """

    root: PathLike
    rows: Sequence[Mapping[str, Any]]
    state: Mapping[str, Any]
    benchmark: Mapping[str, Any]
    dataset_dir: str
    tracking_uri: str
    test_entries: Sequence[Mapping[str, Any]]

    @property
    def profile(self) -> Mapping[str, Any]:
        """The study's profile settings."""
        return self.state["settings"]["profile"]

    @property
    def cases(self) -> List[str]:
        """The test subjects every model was evaluated on."""
        return self.state["steps"]["evaluate/baseline"]["cases"]

    @property
    def window(self) -> int:
        """The in-plane size of the windows through which the evaluation saw whole slices."""
        return self.profile.get("window_size") or self.profile["roi_size"]

    @property
    def largest_batch(self) -> int:
        """The largest batch of the benchmark's latency figures."""
        return max(self.benchmark["_meta"]["settings"]["batches"])

    def relative(self, path: PathLike) -> str:
        """``path`` as the report shows it: relative to the study folder."""
        return os.path.relpath(str(path), str(self.root))


def _introduction(inputs: ReportInputs) -> List[str]:
    """The title, the data, the schedule and where each row's runs are; a warning for a synthetic task."""
    settings, p, cases = inputs.state["settings"], inputs.profile, inputs.cases
    synthetic = settings["data_dir"] is None
    window = inputs.window
    lines = [
        f"# RAAGR2-Net compression study: profile `{p['name']}`",
        "",
        f"Data: `{inputs.dataset_dir}`{' (built-in synthetic set)' if synthetic else ''}; split by "
        f"patient, seed {settings['seed']}; every model evaluated on the same {len(cases)} held-out test subjects "
        f"({', '.join(cases)}), whole slices seen through {window}x{window} windows. Training: {p['epochs']} "
        f"epochs, batch {p['batch_size']} of {p['roi_size']}x{p['roi_size']} crops, lr {p['learning_rate']} "
        f"({p.get('lr_schedule', 'plateau')} schedule); pruning of the trained baseline at "
        f"{', '.join(f'{round(r * 100)} %' for r in p['ratios'])}, fine-tuning {p['finetune_epochs']} epoch(s) "
        f"at lr {p.get('finetune_learning_rate') or 0.0001} "
        "with the masks in force (unstructured) or on the channel-pruned network (DepGraph). Magnitude and SNIP prune "
        f"globally; SNIP scores |w dL/dw| on the trained baseline (the thesis's setting), on training batches padded "
        f"with background to {p.get('snip_size', p['roi_size'])}x{p.get('snip_size', p['roi_size'])} so that every "
        "weight sees data, and rows named `snip-*-init` (where the profile has them) prune at initialisation and "
        "then train, as Lee et al. do."
        + (f" The hybrid rows prune the trained {p['hybrid_variant']} network by DepGraph at "
           f"{round(p['hybrid_ratio'] * 100)} %"
           + (f", keeping every pruned layer's channel count a multiple of {p['hybrid_round_to']} (what CPU runtimes "
              "compute in blocks)" if p.get("hybrid_round_to") else "")
           + f", and fine-tune it for {p['hybrid_finetune_epochs']} epoch(s) at lr "
           f"{p.get('hybrid_learning_rate', 0.0001)}"
           + (", without and (`-kd`) with distillation from the trained baseline." if p.get("hybrid_distill_weight")
              else ".")
           if p.get("hybrid_variant") else ""),
        "",
        "Every row names the run that produced it: `tables/*.csv` and `tables/*.json` hold, per model, its bundle "
        "folder, its training or pruning `run.json`, its evaluation folder (`metrics_per_subject.csv`, "
        "`metrics_summary.csv`), the benchmark file and its MLflow run id "
        f"(`mlflow ui --backend-store-uri {inputs.tracking_uri}`).",
    ]
    if synthetic:
        lines += ["", "**A synthetic task**: these figures compare the models on small synthetic volumes trained on a "
                      "CPU, not on brain tumours; the thesis's schedule on real BraTS data is the `full` profile on a "
                      "GPU."]
    return lines


def _quality_section(inputs: ReportInputs, charts: Mapping[str, Path]) -> List[str]:
    """Table 1, with the paired differences to the baseline and the rows identical on every subject explained."""
    rows, cases = inputs.rows, inputs.cases
    lines = ["", "## Table 1: quality on the test subjects", "",
             "BraTS-style per-subject metrics on the 3D volumes (mean over subjects): Dice and HD95 (mm) for the "
             "regions TC, WT, ET and the subregions NCR (= TC - ET) and ED (= WT - TC), under the official BraTS "
             "convention: a region empty on both sides scores NaN and is left out of the mean; a region missed, "
             "predicted where there is none, or predicted without overlap scores Dice 0 / HD95 373. The "
             "**thesis-style pooled Dice** (all channels and voxels pooled, soft predictions) is kept only to compare "
             "with the thesis's headline figure. Each of our cells is the mean over the test subjects ± the "
             "half-width of its **95 % confidence interval** (Student's t with n - 1 degrees of freedom, n the "
             "subjects with a value: with 2 subjects t = 12.7, with 10 t = 2.26), not ± the standard deviation; the "
             "mean Dice's interval is that of each subject's mean over TC/WT/ET. `tables/table1_quality.csv` holds "
             "the intervals (`<column>_ci95`) and the standard deviations (`<column>_std`); no ±: fewer than two "
             f"subjects with a value. Rows marked {_IDENTICAL_MARK} score identically to another row on every "
             "subject (see below the table). Columns marked † are the thesis's published figures (its Table 1), "
             "not ours.", ""]
    header = ["model"] + [h for _, h in TABLE1_COLUMNS] + [PAIRED_HEADER, "† thesis pooled Dice",
                                                           "† thesis TC (\"C2\")", "† thesis WT (\"C4\")",
                                                           "† thesis ET (\"C3\")"]
    body = []
    for r in rows:
        mark = f" {_IDENTICAL_MARK}" if r["identical_to"] else ""
        body.append([f"{r['label']} (`{r['model']}`){mark}"]
                    + [quality_cell(k, r["quality"][k], r["quality"][f"{k}_ci95"]) for k, _ in TABLE1_COLUMNS]
                    + [paired_cell(r["quality"], len(cases))]
                    + [_thesis(r["model"], THESIS_TABLE1, k, ".4f") for k in ("pooled_dice", "TC", "WT", "ET")])
    lines += _md_table(header, body)
    chart = charts.get("paired_difference")
    lines += paired_notes(rows, inputs.relative(chart) if chart is not None else None)
    return lines + _identity_notes(rows, inputs.window)


def _lesionwise_section(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """The lesion-wise scores, under the evaluation's preset."""
    lines = ["", "## Lesion-wise scores on the test subjects", "",
             "BraTS 2023 lesion-wise metrics under the evaluation's `lesionwise` preset (recorded in each "
             "evaluation's `run.json`): a region's lesions are its connected components, each scored against the "
             "predicted components matched to it; a missed lesion and a false-positive component each count "
             "Dice 0 and HD95 373 (mm). The default preset, `brats2023-gli`, groups ground-truth components that a "
             "3-voxel dilation joins into one lesion and leaves out lesions of 50 mm³ or less. F1 = 2 TP / (2 TP + "
             "FP + FN) of the lesion counts. Means over test subjects; a region empty on both sides (NaN) is left "
             "out.", ""]
    return lines + _md_table(["model"] + [h for _, h in LESIONWISE_TABLE_COLUMNS],
                             [[f"`{r['model']}`"] + [_fmt(r["lesionwise"][k], ".2f" if "hd95" in k else ".4f")
                                                     for k, _ in LESIONWISE_TABLE_COLUMNS] for r in rows])


def _cost_section(inputs: ReportInputs) -> List[str]:
    """Table 2: size, FLOPs, latency, memory and training cost, with how each was measured."""
    rows, p, bmax = inputs.rows, inputs.profile, inputs.largest_batch
    meta = inputs.benchmark["_meta"]
    env = meta.get("environment", {})
    bench_note = (f"{meta['settings']['device']}, {p['bench_size']}x{p['bench_size']}, "
                  f"{env.get('torch_threads', '?')} threads")
    lines = ["", "## Table 2: size and cost", "",
             f"Parameters count each tensor once; non-zero parameters leave out masked weights. Size: the state_dict "
             f"as `torch.save` writes it (MB = 10^6 bytes); sparse: the masked model's compressed file "
             f"(`models/model_sparse.pt`). GFLOPs: `torch.utils.flop_counter.FlopCounterMode` at "
             f"1x4x{p['flops_size']}x{p['flops_size']} (a multiply-add = 2; masks do not lower it). Latency: "
             f"median of {p['bench_repeats']} timed forward passes after {p['bench_warmup']} warm-up ones on "
             f"{bench_note} (batch 1 and batch {bmax}; p25-p75 in the CSV). Peak memory: "
             f"{meta['methods']['peak_mem_mb']}. Train step: "
             f"{meta['methods']['train_step_ms']}. Train s per epoch: "
             f"{meta['methods'].get('train_epoch_s', 'not measured')}: the figure to compare models by. Training s "
             "(wall): the wall time of the model's training run (for pruned models: pruning plus fine-tuning), "
             "validation included, under whatever else the machine was doing: a record, not a comparison. "
             f"{meta['methods'].get('timed_as', '')} Columns marked † are the thesis's published figures (its "
             "Table 2: GPU, FLOPs by ptflops at 192x192)."
             + (" Batch-1 latency behind each inference backend (CPU; median, p25, p75) is in "
                "`tables/table2_cost.csv` (`latency_b1_ms_<backend>`) and on the latency chart."
                + _backend_precision_note(meta.get("backends", {}))
                if any(r["cost"]["latency_b1_backends_ms"] for r in rows) else ""), ""]
    header = ["model"] + [h.replace("batch N", f"batch {bmax}") for _, h in TABLE2_COLUMNS] + [
        "† thesis parameters", "† thesis MB", "† thesis GFLOPs", "† thesis ms", "† thesis peak GB"]
    body = []
    for r in rows:
        body.append([f"`{r['model']}`"] + [_fmt(r["cost"][k], _FORMATS[k]) for k, _ in TABLE2_COLUMNS]
                    + [_thesis(r["model"], THESIS_TABLE2, k, s) for k, s in
                       (("params", ",d"), ("size_mb", ".2f"), ("gflops", ".2f"), ("latency_ms", ".2f"),
                        ("peak_gb", ".2f"))])
    return lines + _md_table(header, body)


def _reduction_section(rows: Sequence[Mapping[str, Any]], bmax: int) -> List[str]:
    """Table 3: each model's reductions against the baseline of the same benchmark run."""
    lines = ["", "## Table 3: reductions against the baseline", "",
             "Percent reduction against the baseline measured in the same benchmark run (negative: an increase); "
             "parameters count non-zero weights, so masks count as a reduction here although the dense tensors keep "
             "their size, FLOPs and latency. Dice changes are in points (x 100) of the mean BraTS Dice and of the "
             "pooled Dice. Columns marked † are the thesis's published reductions (its Table 3).", ""]
    header = ["model"] + [h.replace("bN", f"b{bmax}") for _, h in TABLE3_COLUMNS] + [
        "† thesis params -%", "† thesis size -%", "† thesis FLOPs -%", "† thesis GPU mem -%"]
    body = []
    for r in rows:
        if r["model"] == "baseline":
            continue
        body.append([f"`{r['model']}`"] + [_fmt(r["reduction"][k], "+.1f") for k, _ in TABLE3_COLUMNS]
                    + [_thesis(r["model"], THESIS_TABLE3, k, ".1f") for k in ("params", "size", "flops", "gpu_mem")])
    return lines + _md_table(header, body)


def _training_section(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """Each run's epochs, time, last training loss and best validation score, beside the thesis's minutes."""
    lines = ["", "## Training", "",
             "Per-epoch mean training loss and validation mean Dice of every run are in each run's `history.json` "
             "and in its MLflow run (metrics `train_loss`, `val_mean_dice` by epoch).", ""]
    header = ["model", "epochs", "training s", "s per epoch", "last train loss", "best val mean Dice",
              "† thesis minutes (35 epochs, GPU, Table 4)"]
    body = []
    for r in rows:
        epochs = r["history"].get("epochs") or []
        thesis_row = THESIS_TABLE4.get(THESIS_ROW.get(r["model"], ""))
        body.append([f"`{r['model']}`", str(r["cost"]["epochs"]), _fmt(r["cost"]["train_seconds"], ".0f"),
                     _fmt(sum(e["seconds"] for e in epochs) / len(epochs), ".0f") if epochs else "-",
                     _fmt(epochs[-1]["train_loss"], ".4f") if epochs else "-",
                     _fmt(r["validation"]["val_mean_dice"], ".4f"),
                     _fmt(thesis_row["train_minutes"], ".1f") if thesis_row else ""])
    return lines + _md_table(header, body)


def _best_models_section(inputs: ReportInputs, best: Sequence[FamilyBest], figures: EvaluationFigures) -> List[str]:
    """Each family's best model, how it was chosen, and its figures on the test subjects."""
    lines = ["", "## Each family's best model on the test subjects", "",
             "Each family's best model (the baseline excluded) is the one with the highest best validation mean Dice "
             "(the score on the validation subjects its kept checkpoint was selected on), so that the test subjects "
             "below judge the choice instead of making it.", ""]
    lines += _md_table(["family", "best model", "chosen on", "score"],
                       [[FAMILY_TITLES.get(b.family, b.family), f"`{b.model}`",
                         "best validation mean Dice" if b.basis == "validation" else "**mean test Dice**",
                         _fmt(b.score, ".4f")] for b in best])
    for b in best:
        if b.basis == "test":
            lines += ["", f"No {FAMILY_TITLES.get(b.family, b.family)} model has a validation score: `{b.model}` was "
                          "chosen on the mean test Dice, so its figures below are optimistic."]
    shown = ", ".join(f"`{m}`" for m in figures.models)
    return lines + [
        "", f"![best_models_subject]({inputs.relative(figures.comparison)})", "",
        f"Test subject `{figures.case}` (the baseline's median test subject by mean Dice over TC/WT/ET), on the "
        "axial FLAIR slice with the largest ground-truth whole tumour: the ground truth, then the predictions "
        f"of {shown}, outlined per region; each panel's Dice is the subject's own from the model's "
        "`metrics_per_subject.csv`.",
        "", f"![best_models_distributions]({inputs.relative(figures.distributions)})", "",
        f"Per-subject Dice and HD95 (mm) per region of {shown} on the {len(inputs.cases)} test subjects: per model a "
        "box (median, quartiles, whiskers at 1.5 IQR) and every subject as a point; a region empty on both "
        "sides (NaN under the BraTS convention) is left out, so n (under each box) can differ between regions."]


def _sources_section(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """Where each row comes from: its bundle, run, evaluation and MLflow run."""
    lines = ["", "## Where each row comes from", "",
             "Paths are relative to this folder; the MLflow run is a child of this study's parent run.", ""]
    return lines + _md_table(
        ["model", "bundle (model files, configs)", "training / pruning run", "evaluation", "MLflow run id"],
        [[f"`{r['model']}`", f"`{r['sources']['bundle']}`", f"`{r['sources']['run_json']}`",
          f"`{r['sources']['eval_dir']}/`", f"`{r['sources']['mlflow_run_id'] or '-'}`"] for r in rows],
    )


def _charts_section(inputs: ReportInputs, charts: Mapping[str, Path]) -> List[str]:
    """The charts, with how to read them."""
    lines = ["", "## Charts", "",
             "Dice against non-zero parameters and against batch-1 latency: each point is a model (on the latency "
             "chart, where the benchmark timed inference backends, a model behind one backend, a marker per "
             "backend), numbered as in the key beside the chart; colour and marker: its family, the hybrid model a "
             "star. Vertical bars: the 95 % confidence interval of the mean Dice (as in Table 1); horizontal bars: "
             "the latency's p25-p75. The black step line and rings: the Pareto front, the points that no other point "
             "beats with a higher Dice at a lower cost. The Dice axis starts at 0 unless its label states its range. "
             "Paired difference to the baseline: each model's mean over the test subjects of its subject's mean Dice "
             "minus the baseline's, with the 95 % confidence interval of that mean (Table 1's paired column), "
             "beside lines at 0 and at one Dice point below the baseline. "
             "Per-region Dice: the means with their 95 % confidence intervals. Training curves: training loss above, "
             "validation mean Dice below, by epoch; the architectures (and rows trained from scratch) first, then "
             "the fine-tuned rows of each pruning family in a column of their own.", ""]
    return lines + [f"![{name}]({inputs.relative(path)})" for name, path in charts.items()]


def _thesis_section() -> List[str]:
    """The thesis's Tables 1-3 as published, with what is wrong with them."""
    lines = ["", "## The thesis's published figures (not produced by this code)", "",
             "Copied from the thesis's Tables 1-4 (`tables/thesis_tables.json`). What is wrong with them:", ""]
    lines += [f"- {note}" for note in THESIS_NOTES]
    lines += ["", "Thesis Table 1 with its columns relabelled:", ""]
    lines += _md_table(["† thesis row", "pooled Dice", "mean IoU", "TC (\"C2\")", "ET (\"C3\")", "WT (\"C4\")"],
                       [[name, *(f"{v[k]:.4f}" for k in ("pooled_dice", "mean_iou", "TC", "ET", "WT"))]
                        for name, v in THESIS_TABLE1.items()])
    lines += ["", "Thesis Table 2:", ""]
    lines += _md_table(["† thesis row", "parameters", "MB", "ms", "GFLOPs (ptflops)", "peak GPU GB", "exec. s"],
                       [[name, f"{v['params']:,}", f"{v['size_mb']:.2f}", f"{v['latency_ms']:.2f}",
                         f"{v['gflops']:.2f}", f"{v['peak_gb']:.2f}", f"{v['time_s']:.2f}"]
                        for name, v in THESIS_TABLE2.items()])
    lines += ["", "Thesis Table 3 (percent reduction; negative: an increase):", ""]
    return lines + _md_table(["† thesis row", "params", "size", "FLOPs", "GPU memory", "time"],
                             [[name, *(f"{v[k]:.1f}" for k in ("params", "size", "flops", "gpu_mem", "time"))]
                              for name, v in THESIS_TABLE3.items()])


def _files_section(inputs: ReportInputs, tables: Mapping[str, Path]) -> List[str]:
    """The files the report comes with."""
    lines = ["", "## Files", ""]
    lines += [f"- `{inputs.relative(path)}`" + (" (and `.csv`)" if name.startswith("table") else "")
              for name, path in tables.items()]
    return lines + [f"- `{inputs.state['steps']['benchmark']['benchmark_json']}`: the benchmark, with its environment "
                    "and methods", "- `state.json`: the study's settings and finished steps", ""]


def render_markdown(
    inputs: ReportInputs,
    charts: Mapping[str, Path],
    tables: Mapping[str, Path],
    best: Sequence[FamilyBest],
    figures: EvaluationFigures,
    failure: Optional[FailurePrediction] = None,
) -> str:
    """The text of ``report.md``, section by section.

    Args:
        inputs: the finished study (:class:`ReportInputs`; its ``test_entries`` are not read here).
        charts: chart name -> PNG path (:func:`~raagr2_monai.report.charts.write_charts`).
        tables: table name -> JSON path (:func:`~raagr2_monai.report.tables.write_tables`).
        best: each family's best model (:func:`~raagr2_monai.report.evaluation_figures.best_per_family`).
        figures: the comparison and distribution figures of those models
            (:func:`~raagr2_monai.report.evaluation_figures.write_evaluation_figures`).
        failure: the failure prediction of those models (:func:`~raagr2_monai.report.failure.failure_lines`).

    Returns:
        The Markdown text.
    """
    rows = inputs.rows
    return "\n".join([
        *_introduction(inputs),
        *_quality_section(inputs, charts),
        *_lesionwise_section(rows),
        *_cost_section(inputs),
        *deployment_lines(rows, inputs.benchmark["_meta"].get("backends", {})),
        *_reduction_section(rows, inputs.largest_batch),
        *_training_section(rows),
        *_best_models_section(inputs, best, figures),
        *(failure_lines(failure, inputs.relative) if failure is not None else []),
        *_sources_section(rows),
        *_charts_section(inputs, charts),
        *_thesis_section(),
        *_files_section(inputs, tables),
    ])


def write_report(inputs: ReportInputs) -> Path:
    """Write ``report.md``, ``tables/`` and ``charts/`` (with the figures of each family's best model, and their
    failure prediction where the study evaluated it) of a finished study into its folder.

    Args:
        inputs: the finished study (:class:`ReportInputs`).

    Returns:
        The path of ``report.md``.

    Example::

        write_report(ReportInputs(root, rows, state, benchmark, dataset_dir, tracking_uri, test_entries))
    """
    root = Path(inputs.root)
    tables = write_tables(inputs.rows, root / "tables")
    charts = write_charts(inputs.rows, root / "charts", inputs.profile["bench_size"],
                          inputs.benchmark["_meta"]["settings"]["device"])
    best = best_per_family(inputs.rows)
    figures = write_evaluation_figures(root, inputs.rows, best, inputs.test_entries, root / "charts")
    failure = write_failure_prediction(root, inputs.state, root / "charts")
    path = root / "report.md"
    atomic_write_text(path, render_markdown(inputs, charts, tables, best, figures, failure))
    return path
