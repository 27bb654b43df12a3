"""BrainSliceInferer: windows without brain cost no network run and change nothing; whole slices are one window."""

import pytest
import torch
from monai.inferers import SliceInferer

from raagr2_monai.data.labels import regions_to_labelmap
from raagr2_monai.deploy import BrainSliceInferer, SkipEmptyWindows
from raagr2_monai.utils import as_flag
from raagr2_monai.networks import get_network

from .conftest import SMALL, calibrate

SETTINGS = {"roi_size": (32, 32), "sw_batch_size": 4, "overlap": 0.25, "mode": "gaussian"}


class Counting:
    """A network that counts the windows it runs on."""

    def __init__(self, network):
        self.network = network
        self.windows = 0

    def __call__(self, x):
        self.windows += x.shape[0]
        with torch.no_grad():
            return self.network(x)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return calibrate(get_network("baseline", features=SMALL))


def _volume():
    """A (1, 4, 64, 80, 8) preprocessed-like volume: brain (non-zero) in slices 2-5, in one corner of the slice,
    where 2 x 2 of the 3 x 3 windows of 32 x 32 (overlap 0.25) see it."""
    generator = torch.Generator().manual_seed(3)
    image = torch.zeros(1, 4, 64, 80, 8)
    image[:, :, 8:30, 10:40, 2:6] = torch.randn(1, 4, 22, 30, 4, generator=generator)
    return image


def test_skipping_empty_windows_changes_nothing_but_the_work(network):
    image = _volume()
    plain, skipping = Counting(network), Counting(network)
    # the inferer blends probabilities: the sigmoid of each window's logits, as when networks ended in it
    expected = SliceInferer(spatial_dim=2, **SETTINGS)(image, lambda x: torch.sigmoid(plain(x)))
    inferer = BrainSliceInferer(**SETTINGS)
    out = inferer(image, skipping)
    assert out.shape == expected.shape == (1, 3, 64, 80, 8)
    # fp32 noise only: a window's output changes in its last bits with the windows batched beside it
    assert float((out - expected).abs().max()) <= 1e-5
    assert torch.equal(regions_to_labelmap(out[0]), regions_to_labelmap(expected[0]))
    # 3 x 3 windows per slice, 2 x 2 of them with brain in 4 slices; all the empty ones cost one zero window
    assert plain.windows == 9 * 8 and skipping.windows == inferer.network_windows == 4 * 4 + 1
    assert len(torch.unique(regions_to_labelmap(expected[0]))) > 1  # the network's output is not one label everywhere


def test_whole_slice_is_the_network_on_each_slice(network):
    image = _volume()
    counting = Counting(network)
    inferer = BrainSliceInferer(whole_slice=True, **SETTINGS)
    out = inferer(image, counting)
    with torch.no_grad():
        # batched as the inferer batches them (4 slices of brain, then zeros alone): equal up to rounding
        brain = network(image[0, :, :, :, 2:6].permute(3, 0, 1, 2))
        zeros = network(torch.zeros(1, 4, 64, 80))
    expected = torch.cat([zeros.expand(2, -1, -1, -1), brain, zeros.expand(2, -1, -1, -1)]).permute(1, 2, 3, 0)
    assert float((out[0] - torch.sigmoid(expected)).abs().max()) <= 1e-5
    assert counting.windows == 4 + 1  # the four brain slices, and zeros once for the four empty ones
    assert BrainSliceInferer(whole_slice="false", skip_empty="False", **SETTINGS).roi_size == (32, 32)


def test_empty_output_is_computed_once_per_window_shape():
    skipping = SkipEmptyWindows(lambda x: x[:, :1] + 2.0)
    for height in (4, 4, 8):
        out = skipping(torch.zeros(3, 2, height, 4))
        assert out.shape == (3, 1, height, 4) and bool((out == 2.0).all())
    assert skipping.calls == 2 and sorted(skipping.empty_output) == [(2, 4, 4), (2, 8, 4)]


def test_bad_switches_are_refused():
    assert as_flag("TRUE", "whole_slice") is True and as_flag(0, "whole_slice") is False
    with pytest.raises(ValueError, match="whole_slice must be true or false; got 'maybe'"):
        BrainSliceInferer(roi_size=(32, 32), whole_slice="maybe")


def test_whole_slices_are_batched_by_sw_batch_size_and_keep_the_metadata(network):
    from monai.data import MetaTensor

    image = _volume()
    image[:, :, 8:30, 10:40, 0] = 1.0  # brain in slices 0 and 2-5: five slices to run, three empty
    meta = MetaTensor(image, affine=torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0])))
    calls = []

    def recording(x):
        calls.append(int(x.shape[0]))
        return network(x)

    with torch.no_grad():
        out = BrainSliceInferer(whole_slice=True, **{**SETTINGS, "sw_batch_size": 2})(meta, recording)
        alone = torch.sigmoid(torch.stack([network(image[..., z])[0] for z in range(8)], dim=-1))
    # five brain slices in calls of at most two, then zeros once for the three empty slices
    assert calls == [2, 2, 1, 1]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, meta.affine)
    # fp32 rounding only: a slice's output changes in its last bits with the slices batched beside it
    assert out.shape == (1, 3, 64, 80, 8) and float((out[0] - alone).abs().max()) <= 1e-4
    unskipped = []
    with torch.no_grad():
        BrainSliceInferer(whole_slice=True, skip_empty=False, **{**SETTINGS, "sw_batch_size": 3})(
            image, lambda x: unskipped.append(int(x.shape[0])) or network(x)
        )
    assert unskipped == [3, 3, 2]
    # sigmoid false: the network's own outputs
    with torch.no_grad():
        raw = BrainSliceInferer(whole_slice=True, sigmoid=False, **SETTINGS)(image, network)
    assert float(raw.min()) < 0 and float((torch.sigmoid(raw[0]) - alone).abs().max()) <= 1e-4



def test_a_network_in_training_mode_is_sampled_with_batchnorm_on_its_running_statistics(network):
    """MONAI Label's epistemic scoring puts the network in training mode: only dropout samples, BatchNorm runs on
    (and keeps) its running statistics, and the output is marked as a Monte-Carlo sample."""
    import copy

    from monai.data import MetaTensor

    from raagr2_monai.constants import MONTE_CARLO_SAMPLE
    from raagr2_monai.networks import dropout_layers

    image = MetaTensor(_volume())
    for whole_slice in (True, False):
        inferer = BrainSliceInferer(whole_slice=whole_slice, **SETTINGS)
        sampled = copy.deepcopy(network).train()
        before = {k: v.clone() for k, v in sampled.state_dict().items()}
        with torch.no_grad():
            first, second = inferer(image, sampled), inferer(image, sampled)
            evaluated = inferer(image, copy.deepcopy(network).eval())
        assert isinstance(first, MetaTensor) and first.meta[MONTE_CARLO_SAMPLE] is True
        assert MONTE_CARLO_SAMPLE not in image.meta and MONTE_CARLO_SAMPLE not in evaluated.meta
        assert not torch.equal(first, second), "dropout is on"
        assert all(m.training for m in sampled.modules()), "the modes are restored"
        after = sampled.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), "running statistics untouched"
        # without dropout a sample is the evaluated network: BatchNorm on its running statistics
        for layer in dropout_layers(sampled):
            layer.p = 0.0
        with torch.no_grad():
            assert float((inferer(image, sampled) - evaluated).abs().max()) <= 1e-5


def test_batchnorm_stays_on_its_running_statistics_while_any_caller_samples(network):
    """MONAI Label's scoring samples two studies at a time on one cached network: one caller's end must not put
    BatchNorm back in training mode under the other's pass."""
    import copy
    import threading

    from raagr2_monai.networks import batchnorm_in_eval

    sampled = copy.deepcopy(network).train()
    norms = [m for m in sampled.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    first, second = batchnorm_in_eval(sampled), batchnorm_in_eval(sampled)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not any(m.training for m in norms), "the second caller's pass still runs on the running statistics"
    second.__exit__(None, None, None)
    assert norms and all(m.training for m in norms)

    before = {k: v.clone() for k, v in sampled.state_dict().items()}
    inferer = BrainSliceInferer(whole_slice=True, **SETTINGS)
    image, errors = _volume(), []

    def sample():
        try:
            with torch.no_grad():
                for _ in range(3):
                    inferer(image, sampled)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=sample) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    after = sampled.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and all(m.training for m in norms)
