"""raagr2_monai: slim RAAGR2-Net brain-tumour segmentation models, shipped as MONAI bundles."""

__version__ = "0.1.0"
