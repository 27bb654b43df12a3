"""``configs/metadata.json``: the bundle's version, the versions it requires, and its description in the model zoo's
metadata schema."""

from __future__ import annotations

from typing import Any, Dict

from raagr2_monai.networks import Variant

__all__ = ["BUNDLE_VERSION", "REQUIRED_VERSIONS", "metadata"]

BUNDLE_VERSION = "0.1.0"

#: The versions the bundles are made and tested with: the pins of the project's ``constraints.txt`` (a test checks
#: that the two agree). Stated here, not read from whatever happens to be installed when the bundles are generated.
REQUIRED_VERSIONS: Dict[str, str] = {
    "monai": "1.6.1",
    "torch": "2.13.0",
    "numpy": "2.4.6",
    "nibabel": "5.4.2",
    "pytorch-ignite": "0.5.5",
    "torch-pruning": "1.6.1",
    "mlflow": "3.17.2",
}


def metadata(variant: Variant) -> Dict[str, Any]:
    """``configs/metadata.json`` in the model zoo's schema (kept offline in
    ``raagr2_monai/generator/metadata_schema.json``)."""
    import raagr2_monai

    spatial = ["16*n", "16*n"]
    return {
        "schema": (
            "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json"
        ),
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: "first release: train, evaluate, inference and multi-GPU workflows"},
        "monai_version": REQUIRED_VERSIONS["monai"],
        "pytorch_version": REQUIRED_VERSIONS["torch"],
        "numpy_version": REQUIRED_VERSIONS["numpy"],
        "required_packages_version": {
            "raagr2_monai": raagr2_monai.__version__,
            **{name: REQUIRED_VERSIONS[name] for name in ("nibabel", "pytorch-ignite", "torch-pruning", "mlflow")},
        },
        "name": variant.title,
        "task": "Brain tumour sub-region segmentation (TC, WT, ET) from multi-modal MRI, slice by slice",
        "description": (
            f"{variant.title}: {variant.summary}. A 2D network applied to axial slices of a BraTS-style study "
            "(T1ce, T1, T2, FLAIR); its outputs are the logits of the tumour core, whole tumour and enhancing "
            "tumour (one sigmoid each, applied by the inferer)."
        ),
        "authors": "raagr2_monai developers",
        "copyright": "Copyright (c) raagr2_monai developers",
        "data_source": "BraTS 2018-2021 (https://www.synapse.org/brats) or the built-in synthetic BraTS-like set",
        "data_type": "nibabel",
        "image_classes": "4 channel data, T1ce, T1, T2, FLAIR, z-scored over brain voxels, 1x1x1 mm",
        "label_classes": "3 channel data: channel 0 tumour core (labels 1, 4), 1 whole tumour (1, 2, 4), 2 enhancing "
        "tumour (4)",
        "pred_classes": "the network: 3 logit channels TC, WT, ET (a sigmoid each); what is written (and what "
        "channel_def of pred "
        "lists, as MONAI Label reads its labels there): a label map 0 background, 1 NCR, 2 ED, 4 ET, with ET inside TC "
        "inside WT",
        "intended_use": "Research on model compression; not for clinical or diagnostic use",
        "references": [
            "Rehman M.U. et al. RAAGR2-Net: A brain tumor segmentation network using parallel processing of "
            "multiple spatial frames. Computers in Biology and Medicine, 2023.",
            "Atiene J. Slim Models Creation using Pruning and Sharing Weights on RAAGR2-Net Models. MSc thesis, "
            "De Montfort University, Leicester, 2025.",
        ],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "MR",
                    "num_channels": 4,
                    "spatial_shape": spatial,
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": {"0": "T1ce", "1": "T1", "2": "T2", "3": "FLAIR"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": 3,
                    "spatial_shape": spatial,
                    "dtype": "float32",
                    # logits; the inferer's sigmoid makes them probabilities
                    "value_range": [],
                    "is_patch_data": False,
                    # label values of the written map, not channel indices: MONAI Label names its labels from here
                    "channel_def": {"0": "background", "1": "NCR", "2": "ED", "4": "ET"},
                }
            },
        },
    }
