"""Tests of the thesis loss: exact values, argument order, border weights, autocast and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from raagr2_monai.losses import DistillationLoss, RAAGR2Loss, border_weight_map
from raagr2_monai.networks import get_network

# one channel, 2x2: two foreground pixels predicted 0.9 and 0.6, two background pixels predicted 0.2 and 0.1; the
# loss takes the logits of those probabilities, as the networks return them
PROB = torch.tensor([[[[0.9, 0.2], [0.6, 0.1]]]])
LOGITS = torch.logit(PROB)
TARGET = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
BCE = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.9)) / 4
DICE_LOSS = 1 - (2 * (0.9 + 0.6) + 1) / ((0.9 + 0.2 + 0.6 + 0.1) + 2 + 1)


def test_exact_value_on_2x2_example() -> None:
    assert float(RAAGR2Loss()(LOGITS, TARGET)) == pytest.approx(0.5 * BCE + 0.5 * DICE_LOSS, abs=1e-6)
    assert float(RAAGR2Loss(lambda_bce=1.0)(LOGITS, TARGET)) == pytest.approx(BCE, abs=1e-6)
    assert float(RAAGR2Loss(lambda_bce=0.0)(LOGITS, TARGET)) == pytest.approx(DICE_LOSS, abs=1e-6)
    assert float(RAAGR2Loss(lambda_bce=0.3)(LOGITS, TARGET)) == pytest.approx(0.3 * BCE + 0.7 * DICE_LOSS, abs=1e-6)


def test_perfect_prediction_is_near_zero() -> None:
    target = torch.zeros(2, 3, 16, 16)
    target[:, :, 4:10, 5:12] = 1
    certain = (2 * target - 1) * 30  # logits of probabilities 1 - 1e-13 and 1e-13
    assert float(RAAGR2Loss()(certain, target)) < 1e-5
    assert float(RAAGR2Loss(border_weights=True)(certain, target)) < 1e-5


def test_dice_pools_batch_and_space_per_channel_then_means_channels() -> None:
    # channel 0 is the 2x2 example in two samples; channel 1 is perfect
    logits = torch.cat([LOGITS, (2 * TARGET - 1) * 30], dim=1).repeat(2, 1, 1, 1)
    target = torch.cat([TARGET, TARGET], dim=1).repeat(2, 1, 1, 1)
    per_channel = RAAGR2Loss(lambda_bce=0.0, reduction="none")(logits, target)
    # pooled over the two samples: numerator and denominator both double
    dice0 = 1 - (2 * 2 * 1.5 + 1) / (2 * 1.8 + 2 * 2 + 1)
    assert per_channel.shape == (2,)
    assert float(per_channel[0]) == pytest.approx(dice0, abs=1e-6)
    assert float(per_channel[1]) == pytest.approx(0.0, abs=1e-5)
    mean = RAAGR2Loss(lambda_bce=0.0)(logits, target)
    total = RAAGR2Loss(lambda_bce=0.0, reduction="sum")(logits, target)
    assert float(mean) == pytest.approx(float(per_channel.mean()), abs=1e-7)
    assert float(total) == pytest.approx(float(per_channel.sum()), abs=1e-7)


def test_argument_order_matters() -> None:
    loss = RAAGR2Loss()
    right = float(loss(LOGITS, TARGET))
    swapped = float(loss(TARGET, PROB))
    assert right == pytest.approx(0.5 * BCE + 0.5 * DICE_LOSS, abs=1e-6)
    # the swapped call takes the hard target for logits and the probabilities for the target: another number
    assert abs(swapped - right) > 0.1


def test_accepts_3d_volumes() -> None:
    logits = LOGITS[..., None].repeat(1, 1, 1, 1, 3)
    target = TARGET[..., None].repeat(1, 1, 1, 1, 3)
    dice = 1 - (2 * 3 * 1.5 + 1) / (3 * 1.8 + 3 * 2 + 1)
    assert float(RAAGR2Loss()(logits, target)) == pytest.approx(0.5 * BCE + 0.5 * dice, abs=1e-6)


def test_border_weight_map_mean_one_and_heavier_at_borders() -> None:
    target = torch.zeros(2, 2, 32, 32)
    target[0, 0, 8:24, 8:24] = 1
    target[1, 1, 0:10, :] = 1
    weights = border_weight_map(target)
    assert weights.shape == target.shape
    assert torch.allclose(weights.mean(dim=(2, 3)), torch.ones(2, 2))
    # inside the 11x11 window of the square's edge (border) vs. the far corner and the square's centre
    border, corner, centre = weights[0, 0, 8, 16], weights[0, 0, 31, 31], weights[0, 0, 16, 16]
    assert float(border) > 1.0 > float(corner)
    assert float(border) == pytest.approx(3 * float(corner))
    assert float(border) == pytest.approx(3 * float(centre))
    # a channel without any border (all background) keeps weight 1 everywhere
    assert torch.equal(weights[0, 1], torch.ones(32, 32))


def test_border_weight_map_ignores_image_edge() -> None:
    # all foreground: padding must not make the image edge a border (Keras "same" pooling excludes padding)
    assert torch.equal(border_weight_map(torch.ones(1, 1, 16, 16)), torch.ones(1, 1, 16, 16))
    assert torch.equal(border_weight_map(torch.ones(1, 1, 8, 8, 8)), torch.ones(1, 1, 8, 8, 8))


def test_border_weight_map_matches_keras_same_pooling() -> None:
    torch.manual_seed(0)
    target = (torch.rand(2, 3, 32, 32) > 0.6).float()
    local_mean = torch.nn.functional.avg_pool2d(target, 11, stride=1, padding=5, count_include_pad=False)
    raw = 1 + 2 * ((local_mean > 0.005) & (local_mean < 0.995)).float()
    assert torch.allclose(border_weight_map(target), raw / raw.mean(dim=(2, 3), keepdim=True))


def test_border_weights_change_the_loss_only_where_there_are_borders() -> None:
    target = torch.zeros(1, 1, 32, 32)
    target[..., 8:24, 8:24] = 1
    prob = torch.full_like(target, 0.3)
    plain = float(RAAGR2Loss()(prob, target))
    weighted = float(RAAGR2Loss(border_weights=True)(prob, target))
    assert weighted != pytest.approx(plain, abs=1e-4)
    flat = torch.zeros(1, 1, 32, 32)
    assert float(RAAGR2Loss(border_weights=True)(prob, flat)) == pytest.approx(float(RAAGR2Loss()(prob, flat)))


def test_autocast_cpu_bfloat16_gives_float32_close_to_full_precision() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 3, 16, 16)
    target = (torch.rand(2, 3, 16, 16) > 0.7).float()
    conv = torch.nn.Conv2d(3, 3, 1)
    reference = RAAGR2Loss(border_weights=True)(conv(features), target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(features)
        assert logits.dtype == torch.bfloat16
        value = RAAGR2Loss(border_weights=True)(logits, target).detach()
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(float(reference.detach()), abs=1e-2)
    # the loss itself adds no rounding beyond the bfloat16 input
    full = RAAGR2Loss(border_weights=True)(logits.detach().float(), target)
    assert float(value) == pytest.approx(float(full), abs=1e-6)


@pytest.mark.parametrize("border_weights", [False, True])
def test_gradient_flows(border_weights: bool) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = torch.zeros(2, 3, 16, 16)
    target[:, :, 4:12, 4:12] = 1
    RAAGR2Loss(border_weights=border_weights)(logits, target).backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    # foreground pixels are pushed up, background pixels down
    assert float(logits.grad[:, :, 8, 8].max()) < 0 < float(logits.grad[:, :, 0, 0].min())


def test_saturated_logits_give_the_exact_cross_entropy() -> None:
    # confidently wrong by a logit of 100: BCE = 100 exactly (a clamp at 1e-6 would have said 13.8), and still a
    # gradient; probabilities could not carry this (sigmoid(100) is 1.0 in float32)
    target = torch.zeros(1, 1, 4, 4)
    logits = torch.full((1, 1, 4, 4), 100.0, requires_grad=True)
    loss = RAAGR2Loss(lambda_bce=1.0)(logits, target)
    assert float(loss) == pytest.approx(100.0, rel=1e-6)
    loss.backward()
    assert float(logits.grad.min()) > 0


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\).*\(1, 2, 8, 8\)"):
        RAAGR2Loss()(torch.rand(1, 3, 8, 8), torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\(3, 8, 8\)"):
        RAAGR2Loss()(torch.rand(3, 8, 8), torch.zeros(3, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lambda_bce": 1.5}, "lambda_bce"),
        ({"reduction": "batch"}, "reduction"),
        ({"kernel_size": 10}, "kernel_size"),
        ({"smooth": -1.0}, "smooth"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RAAGR2Loss(**kwargs)


def _distillation_setup():
    torch.manual_seed(0)
    student, teacher = get_network("depthwise"), get_network("baseline")
    x = torch.randn(2, 4, 32, 32)
    y = (torch.rand(2, 3, 32, 32) > 0.5).float()
    return student, teacher, x, y


def test_distillation_mixes_the_label_and_teacher_losses_by_weight():
    student, teacher, x, y = _distillation_setup()
    base = RAAGR2Loss()
    with torch.no_grad():
        soft = torch.sigmoid(teacher.eval()(x))
    for weight in (0.0, 0.3, 1.0):
        kd = DistillationLoss(base, teacher, student, weight=weight)
        pred = student(x)
        expected = (1 - weight) * base(pred, y) + weight * base(pred, soft)
        assert torch.allclose(kd(pred, y), expected, atol=1e-6)
        kd.remove()


def test_distillation_trains_only_the_student_and_keeps_the_teacher_out_of_its_state():
    student, teacher, x, y = _distillation_setup()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    kd = DistillationLoss(RAAGR2Loss(), teacher, student, weight=0.5)
    assert list(kd.state_dict()) == [] and list(kd.parameters()) == []
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    student.train()
    kd(student(x), y).backward()
    optimizer.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training


def test_distillation_refuses_a_bad_weight_and_a_prediction_it_did_not_see():
    student, teacher, x, y = _distillation_setup()
    with pytest.raises(ValueError, match=r"weight must lie in \[0, 1\]; got 1.5"):
        DistillationLoss(RAAGR2Loss(), teacher, student, weight=1.5)
    kd = DistillationLoss(RAAGR2Loss(), teacher, student)
    with pytest.raises(ValueError, match="no student input of this batch was recorded"):
        kd(torch.rand(2, 3, 32, 32), y)

