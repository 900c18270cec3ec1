"""Exports to other frameworks' dataset formats (nnU-Net v2 raw datasets) and their checks."""

from tumorscale.export.nnunet import (
    dataset_folder_name,
    export_case,
    export_nnunet,
    label_names,
)
from tumorscale.export.nnunet_check import check_nnunet_dataset

__all__ = [
    "check_nnunet_dataset",
    "dataset_folder_name",
    "export_case",
    "export_nnunet",
    "label_names",
]
