"""Scoring takes prediction, truth and probabilities on any device and in any dtype, and aligns them itself.

On a GPU the evaluator's prediction came back on CUDA while the ground truth was read from disk on the CPU, and the
thesis-style pooled Dice multiplied the two: ``Expected all tensors to be on the same device``. Without a GPU, a
tensor "on another device" is stood in for by :class:`Elsewhere`: like a CUDA tensor, it refuses to be combined with
a CPU tensor or turned into numpy until it is moved with ``.cpu()`` / ``.to("cpu")``. The ``cuda`` tests run the same
scoring on a real GPU.
"""

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from raagr2_monai.metrics import brats_metrics, mean_iou, on_cpu, pooled_dice, score_subject


class Elsewhere(torch.Tensor):
    """A tensor on "another device": operations among such tensors work, mixing one with a CPU tensor of more than
    one element raises as torch does for CUDA and CPU tensors, and so does ``.numpy()``; ``.cpu()`` and
    ``.to("cpu")`` give a plain CPU tensor back."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cpu or (func is torch.Tensor.to and _to_cpu(args[1:], kwargs)):
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs).as_subclass(torch.Tensor)
        if func is torch.Tensor.numpy:
            raise TypeError("can't convert elsewhere tensor to numpy. Use Tensor.cpu() to copy it to host memory "
                            "first.")
        flat = [*args, *kwargs.values()]
        flat += [x for a in args if isinstance(a, (list, tuple)) for x in a]
        if any(type(x) is torch.Tensor and x.dim() > 0 for x in flat) and any(isinstance(x, Elsewhere) for x in flat):
            raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                               "elsewhere and cpu!")
        return super().__torch_function__(func, types, args, kwargs)


def _to_cpu(args, kwargs) -> bool:
    target = kwargs.get("device", args[0] if args else None)
    return isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"


def elsewhere(x: torch.Tensor) -> Elsewhere:
    return x.clone().as_subclass(Elsewhere)


def subject_maps():
    """A 3-region label map 0/1/2/4 (as written) with a prediction that misses part of it, and soft probabilities."""
    truth = torch.zeros(1, 12, 12, 8, dtype=torch.uint8)
    truth[0, 2:9, 2:9, 1:7] = 2
    truth[0, 4:7, 4:7, 2:6] = 1
    truth[0, 5:6, 5:6, 3:5] = 4
    pred = truth.clone()
    pred[0, 2:4] = 0
    prob = torch.zeros(3, 12, 12, 8)
    prob[1, 2:9, 2:9, 1:7] = 0.8
    prob[0, 4:7, 4:7, 2:6] = 0.7
    return pred, truth, prob


@pytest.fixture
def subject():
    return subject_maps()


def test_the_stand_in_behaves_like_a_tensor_on_another_device():
    x = elsewhere(torch.ones(3))
    with pytest.raises(RuntimeError, match="same device"):
        x * torch.ones(3)
    with pytest.raises(TypeError, match="numpy"):
        x.numpy()
    assert type(x.cpu()) is torch.Tensor and type(x.to("cpu")) is torch.Tensor
    assert float((x * x).sum()) == 3.0


def test_pooled_dice_aligns_its_inputs(subject):
    pred, truth, prob = subject
    regions = (prob > 0.5).float()
    expected = float(pooled_dice(prob, regions))
    assert float(pooled_dice(elsewhere(prob), regions)) == pytest.approx(expected)
    assert float(pooled_dice(prob, elsewhere(regions))) == pytest.approx(expected)
    assert pooled_dice(elsewhere(prob), regions).device.type == "cpu"


@pytest.mark.parametrize("moved", ["pred", "truth", "prob", "all"])
def test_score_subject_takes_each_input_from_another_device(subject, moved):
    pred, truth, prob = subject
    reference = score_subject(pred, truth, "c", prob=prob, lesionwise="brats2023-gli")
    inputs = {"pred": pred, "truth": truth, "prob": prob}
    for name in inputs if moved == "all" else [moved]:
        inputs[name] = elsewhere(inputs[name])
    row = score_subject(inputs["pred"], inputs["truth"], "c", prob=inputs["prob"], lesionwise="brats2023-gli")
    assert row.keys() == reference.keys()
    for key, value in reference.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(row[key]), key
        else:
            assert row[key] == pytest.approx(value), key
    assert 0.0 < row["thesis_pooled_dice"] < 1.0 and 0.0 < row["dice_WT"] < 1.0


@pytest.mark.parametrize(
    "pred_as, truth_as, prob_as",
    [
        (lambda t: t.float(), lambda t: t.numpy().astype(np.int16), lambda t: t.half()),
        (
            lambda t: t.to(torch.bfloat16),
            lambda t: t.numpy().astype(np.float64),
            lambda t: t.numpy().astype(np.float16),
        ),
        (lambda t: MetaTensor(t.to(torch.int32)), lambda t: MetaTensor(t), lambda t: MetaTensor(t.double())),
    ],
)
def test_score_subject_takes_any_dtype(subject, pred_as, truth_as, prob_as):
    """AMP leaves float16 probabilities, label maps come as uint8 or float, seg files as int16 or float64."""
    pred, truth, prob = subject
    reference = score_subject(pred, truth, "c", prob=prob, lesionwise=None)
    row = score_subject(pred_as(pred), truth_as(truth), "c", prob=prob_as(prob), lesionwise=None)
    assert row["dice_TC"] == reference["dice_TC"] and row["hd95_ET"] == reference["hd95_ET"]
    # half precision rounds the probabilities: 0.7 and 0.8 are not exact in float16 or bfloat16
    assert row["thesis_pooled_dice"] == pytest.approx(reference["thesis_pooled_dice"], abs=2e-3)


def test_region_metrics_take_masks_from_another_device(subject):
    pred, truth, prob = subject
    p = (prob > 0.5)[None].float()
    g = (prob > 0.75)[None].float()
    expected = brats_metrics(p, g)
    moved = brats_metrics(elsewhere(p), g)
    assert all(np.array_equal(expected[k], moved[k], equal_nan=True) for k in expected)
    assert torch.equal(mean_iou(p, elsewhere(g)), mean_iou(p, g))


def test_on_cpu_keeps_the_dtype_and_drops_metadata():
    meta = MetaTensor(torch.ones(2, dtype=torch.float16), meta={"filename_or_obj": "x.nii.gz"})
    out = on_cpu(meta)
    assert type(out) is torch.Tensor and out.dtype == torch.float16 and out.device.type == "cpu"
    plain = torch.ones(2, requires_grad=True)
    assert not on_cpu(plain).requires_grad and on_cpu(plain).data_ptr() == plain.data_ptr()  # a view, no copy
