"""Validation during training: sliding-window prediction of held-out preprocessed cases, scored
with `tumorscale.masks.mask_overlap` (DSC per tumor class over the cases that have that tumor;
the same DSC core as the evaluation's `segmentation_scores`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from tumorscale.data import PreprocessedCache, structure_mask
from tumorscale.masks import mask_overlap
from tumorscale.models import ModelSpec, unwrap
from tumorscale.train.distributed import Distributed


def _predict(
    network: torch.nn.Module,
    image: np.ndarray,
    spec: ModelSpec,
    overlap: float,
    device: torch.device,
) -> np.ndarray:
    tensor = torch.from_numpy(image)[None, None].to(device)
    logits = sliding_window_inference(
        tensor,
        spec.patch_size_vox,
        sw_batch_size=2,
        predictor=network,
        overlap=overlap,
        mode="gaussian",
        cval=spec.preprocessing.pad_value,  # air, as training patches are padded
    )
    return logits.argmax(1)[0].cpu().numpy()


@torch.no_grad()
def validate(
    network: torch.nn.Module,
    cache: PreprocessedCache,
    case_ids: Sequence[str],
    spec: ModelSpec,
    distributed: Distributed,
    overlap: float = 0.5,
) -> dict[str, float]:
    """Mean DSC per tumor class (`dsc/<class>`), averaged over the cases positive for it.

    Each rank scores every world_size-th case; the sums are reduced across ranks.
    """
    network = unwrap(network)  # no DDP collectives: ranks may score different numbers of cases
    network.eval()
    tumor_classes = [(i, n) for i, n in enumerate(spec.class_names) if n.endswith("_lesion")]
    sums = {name: 0.0 for _, name in tumor_classes}
    counts = {name: 0.0 for _, name in tumor_classes}
    for case_id in list(case_ids)[distributed.rank :: distributed.world_size]:
        image, bits = cache.read_patch(case_id, (0, 0, 0), cache.image_shape(case_id))
        prediction = _predict(network, image, spec, overlap, distributed.device)
        for index, name in tumor_classes:
            truth = structure_mask(bits, name)
            if not truth.any():
                continue
            sums[name] += mask_overlap(truth, prediction == index).dice or 0.0
            counts[name] += 1
    results = {
        "validated_cases": distributed.sum(
            len(list(case_ids)[distributed.rank :: distributed.world_size])
        )
    }
    for name in sums:
        total, count = distributed.sum(sums[name]), distributed.sum(counts[name])
        if count:
            results[f"dsc/{name}"] = total / count
    return results
