"""``raagr2 export``: export a bundle to ONNX and OpenVINO IR and say what was written."""

from __future__ import annotations

import json
from typing import Any

from .export import DEFAULT_OPSET, PARITY_TOLERANCE, export_bundle

__all__ = ["export_command"]


def export_command(
    bundle: str,
    formats: Any = "onnx,openvino",
    opset: int = DEFAULT_OPSET,
    tolerance: float = PARITY_TOLERANCE,
    dynamo: bool = False,
) -> str:
    """Export a trained bundle's network next to its weights, with the parity check against eager PyTorch.

    Writes ``<bundle>/models/model.onnx`` and/or ``model.xml`` + ``model.bin``, each with its export record
    (``model.onnx.json``, ``model.xml.json``) that ``load_backend`` checks the bundle against.

    Args:
        bundle: the bundle folder (a pruned bundle included).
        formats: ``onnx``, ``openvino`` or ``onnx,openvino``.
        opset: the ONNX opset.
        tolerance: largest absolute difference from the exact (fp64) probabilities allowed, or 4 times eager
            PyTorch's own fp32 error where that is larger (:func:`~raagr2_monai.deploy.export_network`).
        dynamo: use the dynamo exporter of ``torch.onnx.export`` instead of the TorchScript one.

    Returns:
        One line per format: the file written, its largest difference from eager PyTorch and its largest error
        against the exact (fp64) output beside eager PyTorch's own.

    Raises:
        FileNotFoundError: not a bundle, or no ``models/model.pt``.
        ValueError: an unknown format.
        raagr2_monai.deploy.ExportParityError: the parity check failed; nothing was written.

    Example::

        raagr2 export bundles/baseline --formats onnx,openvino
    """
    written = export_bundle(bundle, formats, opset=opset, tolerance=tolerance, dynamo=dynamo)
    lines = []
    for name in ("onnx", "openvino"):
        if name in written:
            record = json.loads(written[f"{name}_record"].read_text())
            lines.append(
                f"{name}: {written[name]} (opset {record['opset']}, max |difference| from eager "
                f"{record['parity']['max_abs_diff']:.2g}, from fp64 {record['parity']['max_abs_error']:.2g} "
                f"(eager fp32 {record['parity']['eager_fp32_error']:.2g}) on {len(record['parity']['shapes'])} inputs)"
            )
    return "\n".join(lines)
