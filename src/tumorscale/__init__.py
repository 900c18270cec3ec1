"""tumorscale: scale CT tumor segmentation with real and synthetic data."""

__version__ = "0.1.0"
