"""Realism features of tumor instances in a CT (notes §9): contrast, noise, edge, size, shape.

Every tumor instance is a 26-connected component of an organ's lesion mask. Per instance:

- contrast_hu: median HU in the tumor minus the organ's reference median (organ mask outside
  every lesion of that organ, air below -300 HU left out so a hollow organ's lumen does not count).
- noise_ratio: robust SD (1.4826·MAD) of the noise inside the tumor over that in the nearby organ.
  Noise = CT minus the mean of the voxel and its 6 face neighbours, taken only where that whole
  neighbourhood lies in the region (tumor core; organ reference ≥ 2 voxels away from any lesion),
  so edges do not leak in. About 1 when the scan's own noise is kept; texture raises it. NaN
  with fewer than 20 core voxels (small tumors on coarse grids).
- edge_rise_mm: 10-90 % rise distance of the mean-HU profile across the boundary. Signed
  distance to the boundary (mm, edt with the true spacing; negative inside) is binned on
  [-R, R], R = max(4 mm, 2.5 × the coarsest spacing), voxel centres counted half a (finest)
  voxel off the boundary; plateaus are the medians of the tumor core (depth ≥ min(R, half the
  tumor's depth)) and of the organ beyond R. A sharp edge measures about one voxel (the sampling
  floor); a Gaussian blur of σ measures about 2.56 σ (the erf's 10-90 % width; within 15 % on
  spheres of 10 mm radius at 0.8-1 mm in-plane spacing).
- diameter_mm: equivalent-sphere diameter of the instance volume.
- sphericity: π^(1/3)(6V)^(2/3)/A with the surface area A from ITK's LabelShapeStatistics
  perimeter (a Crofton-type estimate on the voxel grid with the true spacing; within about 1 %
  for a sphere of 10 voxels radius, unlike a voxel-face count which is ~1.5x too large).
  It can exceed 1 slightly for small objects, and flat-faced shapes read up to ~15 % rounder
  than their ideal value (a 10-voxel cube: 0.92 instead of 0.81), as the estimate treats the
  digital surface as smooth.
- count_in_case: number of instances of that organ in the case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cc3d
import edt
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from tumorscale.sizes import equivalent_diameter_mm

AIR_BELOW_HU = -300.0
CROP_MARGIN_MM = 15.0
MIN_VOXELS = 8
MIN_NOISE_VOXELS = 20
# The voxel and its 6 face neighbours: the smallest local mean, so thin cores still count.
CROSS = ndimage.generate_binary_structure(3, 1)
LOCAL_MEAN = CROSS.astype(np.float32) / float(CROSS.sum())
MIN_EDGE_STEP_HU = 5.0  # below this plateau difference the edge profile is undefined

FEATURES: tuple[str, ...] = (
    "contrast_hu",
    "noise_ratio",
    "edge_rise_mm",
    "diameter_mm",
    "sphericity",
    "count_in_case",
)


@dataclass(frozen=True)
class TumorFeatures:
    """Features of one tumor instance (NaN where undefined, e.g. noise ratio on a noise-free
    scan or the edge of a tumor with no contrast)."""

    tumor: int  # 1-based, largest first
    count_in_case: int
    voxels: int
    volume_mm3: float
    diameter_mm: float
    sphericity: float
    tumor_median_hu: float
    organ_median_hu: float
    contrast_hu: float
    noise_sd_tumor_hu: float
    noise_sd_organ_hu: float
    noise_ratio: float
    edge_rise_mm: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _robust_sd(values: np.ndarray) -> float:
    if values.size < MIN_NOISE_VOXELS:
        return math.nan
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _crop_box(component_box: tuple[slice, ...], margin_mm: float, spacing: Sequence[float],
              shape: Sequence[int]) -> tuple[slice, ...]:
    box = []
    for axis, part in enumerate(component_box):
        pad = math.ceil(margin_mm / spacing[axis])
        box.append(slice(max(0, part.start - pad), min(int(shape[axis]), part.stop + pad)))
    return tuple(box)


def surface_area_mm2(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Surface area (mm²) of a binary mask by ITK's perimeter estimate (padded by one voxel)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    image = sitk.GetImageFromArray(np.ascontiguousarray(padded.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    shape_filter = sitk.LabelShapeStatisticsImageFilter()
    shape_filter.ComputePerimeterOn()
    shape_filter.Execute(image)
    return float(shape_filter.GetPerimeter(1)) if shape_filter.HasLabel(1) else 0.0


def sphericity(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """π^(1/3)(6V)^(2/3)/A of a binary mask (1 for a ball)."""
    volume = float(np.count_nonzero(mask)) * float(np.prod(spacing))
    area = surface_area_mm2(mask, spacing)
    if volume <= 0 or area <= 0:
        return math.nan
    return float(math.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area)


def edge_rise_mm(
    ct: np.ndarray, signed_mm: np.ndarray, inside: np.ndarray, outside: np.ndarray,
    spacing: Sequence[float],
) -> float:
    """10-90 % rise distance (mm) of the boundary profile; NaN when there is no step.

    signed_mm: signed distance to the boundary (negative inside); inside/outside: voxels that
    may be sampled on either side (the tumor; the organ reference region).
    """
    reach = max(4.0, 2.5 * max(spacing))
    depth = float(-signed_mm[inside].min()) if inside.any() else 0.0
    core = inside & (signed_mm <= -min(reach, 0.5 * depth))
    far = outside & (signed_mm >= reach)
    if np.count_nonzero(core) < 1 or np.count_nonzero(far) < MIN_VOXELS:
        return math.nan
    inner, outer = float(np.median(ct[core])), float(np.median(ct[far]))
    step = outer - inner
    if abs(step) < MIN_EDGE_STEP_HU:
        return math.nan
    sampled = (inside | outside) & (np.abs(signed_mm) <= reach)
    distances, values = signed_mm[sampled], ct[sampled]
    width = max(0.5, min(spacing) / 2.0)
    bins = np.floor((distances + reach) / width).astype(np.int64)
    counts = np.bincount(bins)
    present = counts > 0
    centres = np.bincount(bins, weights=distances)[present] / counts[present]
    profile = np.bincount(bins, weights=values)[present] / counts[present]
    # Plateaus anchor both ends; a running maximum makes the normalised profile monotone.
    centres = np.concatenate([[-reach - width], centres, [reach + width]])
    level = np.concatenate([[0.0], (profile - inner) / step, [1.0]])
    level = np.maximum.accumulate(np.clip(level, 0.0, 1.0))
    level = level + np.arange(level.size) * 1e-9  # strictly increasing for interpolation
    d10 = float(np.interp(0.1, level, centres))
    d90 = float(np.interp(0.9, level, centres))
    return d90 - d10


def tumor_features(
    ct: np.ndarray,
    organ: np.ndarray,
    lesions: np.ndarray,
    spacing: Sequence[float],
) -> list[TumorFeatures]:
    """Features of every 26-connected instance of `lesions` (arrays on one grid, `spacing` mm).

    ct: HU; organ: the organ's mask; lesions: all of that organ's lesions. Largest first.
    """
    spacing = tuple(float(s) for s in spacing)
    ct = np.asarray(ct, dtype=np.float32)
    lesions = np.asarray(lesions).astype(bool, copy=False)
    labels, count = cc3d.connected_components(lesions, connectivity=26, return_N=True)
    if count == 0:
        return []
    voxel_mm3 = float(np.prod(spacing))
    reference_all = organ.astype(bool) & ~lesions & (ct > AIR_BELOW_HU)
    organ_median = float(np.median(ct[reference_all])) if reference_all.any() else math.nan
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    order = np.argsort(-sizes, kind="stable") + 1
    boxes = ndimage.find_objects(labels)
    results = []
    for rank, label in enumerate(order, start=1):
        box = _crop_box(boxes[label - 1], CROP_MARGIN_MM, spacing, ct.shape)
        component = labels[box] == label
        ct_crop = ct[box]
        reference = reference_all[box]
        outside_distance = edt.edt(np.ascontiguousarray(~component), anisotropy=spacing)
        inside_distance = edt.edt(np.ascontiguousarray(component), anisotropy=spacing)
        # Voxel centres lie about half a voxel from the boundary between them.
        half = 0.5 * min(spacing)
        signed = np.where(component, half - inside_distance, outside_distance - half)
        signed = signed.astype(np.float32)
        # Organ voxels at least two voxels from any lesion of this organ.
        lesion_distance = edt.edt(np.ascontiguousarray(~lesions[box]), anisotropy=spacing)
        background = reference & (lesion_distance >= 2.0 * max(spacing))

        voxels = int(sizes[label - 1])
        volume = voxels * voxel_mm3
        tumor_median = float(np.median(ct_crop[component]))
        residual = ct_crop - ndimage.correlate(ct_crop, LOCAL_MEAN, mode="nearest")
        core = ndimage.binary_erosion(component, CROSS)
        background_core = ndimage.binary_erosion(background, CROSS)
        sd_tumor = _robust_sd(residual[core])
        sd_organ = _robust_sd(residual[background_core])
        ratio = sd_tumor / sd_organ if sd_organ > 0 else math.nan
        results.append(
            TumorFeatures(
                tumor=rank,
                count_in_case=int(count),
                voxels=voxels,
                volume_mm3=volume,
                diameter_mm=float(equivalent_diameter_mm(volume)),
                sphericity=sphericity(component, spacing),
                tumor_median_hu=tumor_median,
                organ_median_hu=organ_median,
                contrast_hu=tumor_median - organ_median,
                noise_sd_tumor_hu=sd_tumor,
                noise_sd_organ_hu=sd_organ,
                noise_ratio=float(ratio),
                edge_rise_mm=edge_rise_mm(ct_crop, signed, component, reference, spacing),
            )
        )
    return results
