"""The study's profiles and rows: the experiment matrix and the settings refused before anything runs."""

import pytest

from raagr2_monai.study import PROFILES, experiment_matrix, get_profile


def test_matrix_of_the_quick_profile():
    names = [m.name for m in experiment_matrix(get_profile("quick"))]
    assert names == ["baseline", "depthwise", "paired", "encdec", "magnitude-30", "magnitude-30-ft", "snip-30",
                     "snip-30-ft", "depgraph-30", "depgraph-30-ft", "hybrid-60"]
    full = experiment_matrix(get_profile("full"))
    assert len(full) == 4 + 3 * 3 * 2 + 3 + 2
    assert {"magnitude-10", "magnitude-10-ft", "snip-30-ft", "depgraph-20"} <= {m.name for m in full}
    assert [m.name for m in full if m.from_scratch] == ["snip-10-init", "snip-20-init", "snip-30-init"]
    assert all(m.finetune_epochs == 35 for m in full if m.from_scratch)


def test_rows_are_labelled_and_grouped_by_family():
    specs = {m.name: m for m in experiment_matrix(get_profile("full"))}
    names = ("encdec", "depgraph-30", "magnitude-10-ft", "snip-20-init", "hybrid-60", "hybrid-60-kd")
    assert [(specs[n].label, specs[n].family) for n in names] == [
        ("Encoder-Decoder Shared RAAGR2-Net", "architecture"),
        ("DepGraph 30 %", "depgraph"),
        ("Magnitude 10 % + FT", "magnitude"),
        ("SNIP 20 % at init + training", "snip"),
        ("Hybrid: Depthwise Shared RAAGR2-Net + DepGraph 60 % + FT", "hybrid"),
        ("Hybrid: Depthwise Shared RAAGR2-Net + DepGraph 60 % + FT + distillation", "hybrid"),
    ]
    assert (specs["hybrid-60"].distill_weight, specs["hybrid-60-kd"].distill_weight) == (0.0, 0.5)
    hybrid = specs["hybrid-60"]
    assert (hybrid.kind, hybrid.variant, hybrid.method, hybrid.ratio, hybrid.finetune_epochs) == (
        "pruned", "depthwise", "depgraph", 0.6, 20)
    # only the deployable rows round their channel counts; the DepGraph rows prune as the thesis did
    assert (hybrid.round_to, specs["hybrid-60-kd"].round_to, specs["depgraph-30"].round_to) == (8, 8, None)
    free = {m.name: m for m in experiment_matrix(get_profile("full", hybrid_round_to=None))}
    assert free["hybrid-60"].round_to is None


def test_bad_profiles_are_refused():
    with pytest.raises(ValueError, match="Unknown profile 'fast'; valid profiles: quick, full, gpu, tiny"):
        get_profile("fast")
    with pytest.raises(ValueError, match=r"Unknown profile setting\(s\) \['epoch'\]"):
        get_profile("tiny", epoch=3)
    with pytest.raises(ValueError, match="roi_size must be a positive multiple of 16; got 40"):
        get_profile("tiny", roi_size=40)
    with pytest.raises(ValueError, match=r"val_interval must lie in \[1, epochs=1\]; got 15"):
        get_profile("quick", epochs=1)
    with pytest.raises(ValueError, match="variants must name RAAGR2-Net variants and include 'baseline'"):
        get_profile("tiny", variants=("depthwise",))
    with pytest.raises(ValueError, match="hybrid_variant must be one of the variants"):
        get_profile("tiny", hybrid_variant="paired")
    with pytest.raises(ValueError, match="snip_size must be a positive multiple of 16; got 100"):
        get_profile("tiny", snip_size=100)
    with pytest.raises(ValueError, match="bench_backends must be among onnxruntime, openvino"):
        get_profile("tiny", bench_backends=("tensorrt",))
    assert [m.name for m in experiment_matrix(get_profile("tiny", hybrid_variant=None))][-1] == "depgraph-20-ft"
    assert [m.name for m in experiment_matrix(get_profile("tiny", hybrid_distill_weight=0))][-1] == "hybrid-50"
    with pytest.raises(ValueError, match="hybrid_distill_weight must lie in"):
        get_profile("tiny", hybrid_distill_weight=2)
    for round_to in (0, 8.0, True):
        with pytest.raises(ValueError, match=f"hybrid_round_to must be None or an integer >= 1; got {round_to!r}"):
            get_profile("tiny", hybrid_round_to=round_to)
    for workers in (0, "all", True):
        with pytest.raises(ValueError, match=f"workers must be an integer >= 1 or 'auto'; got {workers!r}"):
            get_profile("tiny", workers=workers)
    assert get_profile("tiny", workers="auto").workers == "auto"
    with pytest.raises(ValueError, match="split fractions must sum to 1"):
        get_profile("tiny", split=(0.5, 0.5, 0.5))
    assert get_profile("tiny", split="0.5,0.15,0.35").split == (0.5, 0.15, 0.35)
    with pytest.raises(ValueError, match="num_workers must be >= 0, sw_batch_size >= 1 and val_cases None or >= 1"):
        get_profile("tiny", val_cases=0)
    with pytest.raises(ValueError, match="window_size must be a positive multiple of 16; got 50"):
        get_profile("tiny", window_size=50)
    with pytest.raises(ValueError, match="lr_schedule must be one of plateau, cosine; got 'step'"):
        get_profile("tiny", lr_schedule="step")
    assert PROFILES["quick"].settings()["synthetic_shape"] == [64, 64, 32]
