"""Model input from a CT, exactly as training preprocessed it, and predictions back onto the CT.

Forward (`prepare_input`): canonical RAS -> `data.resample.resample_image` to the model spacing
(trilinear, same extent and centre) -> rounded to whole HU (the training cache stores int16 HU,
so the network never saw fractional HU) -> clipped to the spec's HU window and scaled linearly
to its intensity range by `tumorscale.preprocessing.scale_intensity`, the very function training
applies to cached patches.

Backward (`to_input_geometry`): class *probabilities* (softmax of the stitched logits) are
resized trilinearly onto the CT's own RAS grid (the same align_corners=False geometry as the
forward resize, so the round trip is exact in space), then the argmax gives the labels.
Interpolating probabilities keeps saved maps in [0, 1] and summing to 1 (nnU-Net v2 interpolates
logits instead; both are linear resizes that differ only near class boundaries). The resize is
separable, done in slabs along X (a full-resolution (C, X, Y, Z) float array never exists) and
only inside the box where background is not certain, so a small tumor costs little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from tumorscale.data.resample import resample_image
from tumorscale.geometry import spacing_of
from tumorscale.io import Geometry, Volume
from tumorscale.masks import bounding_box, union_box
from tumorscale.models import ModelSpec
from tumorscale.preprocessing import scale_intensity  # the one intensity function

SLAB_ROWS = 16  # output X rows resized at a time: bounds temporaries to ~16 * C * Y * Z floats


@dataclass(frozen=True)
class PreparedInput:
    """A CT ready for the network, and the grids needed to bring predictions back.

    image: (X', Y', Z') float32 intensities on the model grid (RAS, spec.preprocessing.spacing_mm).
    model_affine: voxel-to-RAS affine of the model grid.
    input_shape / input_affine: the CT's canonical RAS grid (where outputs are returned).
    source: the CT's on-disk geometry (orientation, header) for writing outputs back.
    """

    image: np.ndarray
    model_affine: np.ndarray
    input_shape: tuple[int, int, int]
    input_affine: np.ndarray
    source: Geometry | None = field(default=None, compare=False, repr=False)

    @property
    def model_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.image.shape)  # type: ignore[return-value]

    @property
    def input_spacing_mm(self) -> tuple[float, float, float]:
        return Volume(np.empty((1, 1, 1)), self.input_affine).spacing

    def input_volume(self, array: np.ndarray) -> Volume:
        """`array` (input RAS grid) as a Volume that `io.write_nifti` writes in the input's own
        orientation, affine and header."""
        if tuple(array.shape) != self.input_shape:
            raise ValueError(f"array shape {array.shape} is not the input grid {self.input_shape}")
        return Volume(array, self.input_affine, self.source)


def prepare_input(ct: Volume, spec: ModelSpec) -> PreparedInput:
    """The network input for `ct` (any orientation; HU): see the module docstring."""
    ras = ct if ct.orientation == "RAS" else ct.to_canonical()
    resampled = resample_image(ras, spec.preprocessing.spacing_mm)
    hu = np.rint(resampled.array)  # the training cache stores int16 HU
    return PreparedInput(
        image=scale_intensity(hu, spec.preprocessing),
        model_affine=np.asarray(resampled.affine, dtype=float),
        input_shape=ras.shape,
        input_affine=np.asarray(ras.affine, dtype=float),
        source=ct.source,
    )


@dataclass
class InputGridPrediction:
    """Predictions on the input's canonical RAS grid.

    labels: (X, Y, Z) uint8 argmax class index. probabilities: channel -> (X, Y, Z) float32, for
    the channels asked for (when kept). max_probability: channel -> its maximum on the model
    grid (a linear resize never exceeds it; the resized map's maximum can be slightly lower).
    """

    labels: np.ndarray
    probabilities: dict[int, np.ndarray]
    max_probability: dict[int, float]


Taps = tuple[np.ndarray, np.ndarray, np.ndarray]


def source_positions(new_size: int, size: int) -> Taps:
    """Linear-resize taps along one axis (torch's align_corners=False): for each of the
    `new_size` output voxels the lower and upper source index and the upper weight."""
    position = (np.arange(new_size) + 0.5) * (size / new_size) - 0.5
    position = np.maximum(position, 0.0)  # torch clamps negative source positions to 0
    lower = np.minimum(np.floor(position).astype(np.int64), size - 1)
    upper = np.minimum(lower + 1, size - 1)
    return lower, upper, (position - lower).astype(np.float32)


def _lerp_axis(values: torch.Tensor, axis: int, taps: Taps, first: int) -> torch.Tensor:
    """Linear resize of `values` (whose `axis` starts at source index `first`) along `axis`."""
    lower, upper, weight = taps
    device = values.device
    below = values.index_select(axis, torch.as_tensor(lower - first, device=device))
    above = values.index_select(axis, torch.as_tensor(upper - first, device=device))
    shape = [1] * values.ndim
    shape[axis] = -1
    return torch.lerp(below, above, torch.as_tensor(weight, device=device).view(shape))


def resize_box(values: torch.Tensor, taps: Sequence[Taps], box: Sequence[slice]) -> torch.Tensor:
    """The output voxels `box` of the trilinear resize of `values` (C, x, y, z) whose per-axis
    taps are `taps`: (C, *box sizes), equal to the same box of the full resize."""
    box_taps = [tuple(t[b] for t in axis_taps) for axis_taps, b in zip(taps, box, strict=True)]
    firsts = [int(t[0].min()) for t in box_taps]
    crop = tuple(slice(f, int(t[1].max()) + 1) for f, t in zip(firsts, box_taps, strict=True))
    result = values[(slice(None), *crop)]
    for axis in (2, 1, 0):  # Z grows least under typical CT resampling: resize it first
        result = _lerp_axis(result, axis + 1, box_taps[axis], firsts[axis])
    return result


def _uncertain_boxes(probabilities: torch.Tensor, taps: Sequence[Taps],
                     shape: Sequence[int]) -> list[tuple[slice, ...]]:
    """Output slabs (SLAB_ROWS rows along X), each cut to the box outside which every voxel is
    surely background: all its source taps have P(background) > 0.5, so their convex
    combination does too, and background wins the argmax."""
    uncertain = (probabilities[0] <= 0.5).cpu().numpy()
    lower_x, upper_x, _ = taps[0]
    boxes = []
    for start in range(0, shape[0], SLAB_ROWS):
        rows = slice(start, min(start + SLAB_ROWS, shape[0]))
        first, last = int(lower_x[rows].min()), int(upper_x[rows].max())
        box = bounding_box(uncertain[first:last + 1])
        if box is None:
            continue
        out = [rows]
        for (lower, upper, _), b in zip(taps[1:], box[1:], strict=True):
            touches = np.flatnonzero((upper >= b.start) & (lower < b.stop))
            if touches.size == 0:  # only source voxels that no output voxel samples (the edges)
                break
            out.append(slice(int(touches[0]), int(touches[-1]) + 1))
        else:
            boxes.append(tuple(out))
    return boxes


def _slabs(box: Sequence[slice]) -> list[tuple[slice, ...]]:
    """`box` cut into slabs of SLAB_ROWS output rows along X."""
    rows = range(box[0].start, box[0].stop, SLAB_ROWS)
    return [(slice(r, min(r + SLAB_ROWS, box[0].stop)), box[1], box[2]) for r in rows]


def to_input_grid(probabilities: torch.Tensor, prepared: PreparedInput,
                  channels: Sequence[int] = (), keep_probabilities: bool = False
                  ) -> InputGridPrediction:
    """Class probabilities (C, X', Y', Z') on the model grid -> argmax labels on the input's
    canonical RAS grid, plus, for `channels`, maxima and (`keep_probabilities`) resized maps.

    Only where background is not certain (see `_uncertain_boxes`) is resized for the labels;
    the result equals the argmax of the full trilinear resize.
    """
    if tuple(probabilities.shape[1:]) != prepared.model_shape:
        raise ValueError(f"probabilities {tuple(probabilities.shape)} are not on the model grid "
                         f"{prepared.model_shape}")
    shape = prepared.input_shape
    taps = [source_positions(n, m) for n, m in zip(shape, prepared.model_shape, strict=True)]
    labels = np.zeros(shape, dtype=np.uint8)
    for slab in _uncertain_boxes(probabilities, taps, shape):
        labels[slab] = resize_box(probabilities, taps, slab).argmax(dim=0).to(torch.uint8).cpu()
    maps = {}
    full = tuple(slice(0, n) for n in shape)
    for channel in channels if keep_probabilities else ():
        maps[channel] = np.empty(shape, dtype=np.float32)
        for slab in _slabs(full):
            maps[channel][slab] = resize_box(probabilities[channel:channel + 1], taps, slab)[0]
    maxima = {c: float(probabilities[c].max()) for c in channels}
    return InputGridPrediction(labels, maps, maxima)


def to_input_geometry(array: np.ndarray, prepared: PreparedInput) -> Volume:
    """An input-grid (RAS) array as a Volume in the input's on-disk orientation and affine
    (what `io.write_nifti` writes); arrays compare directly with the input file's array."""
    return prepared.input_volume(array).to_source_geometry()


def model_grid_box(masks: Sequence[np.ndarray], prepared: PreparedInput,
                   margin_mm: float) -> tuple[slice, slice, slice] | None:
    """The box on the model grid that holds every mask (on the input grid) plus `margin_mm`;
    None if every mask is empty.

    Input voxel i maps to model coordinate (i + 0.5) * m / n - 0.5 (the resize's geometry)."""
    box = union_box(*(bounding_box(np.asarray(mask)) for mask in masks))
    if box is None:
        return None
    spacing = spacing_of(prepared.model_affine)
    slices = []
    for axis, (part, n, m) in enumerate(zip(box, prepared.input_shape, prepared.model_shape,
                                            strict=True)):
        scale = m / n
        low = (part.start + 0.5) * scale - 0.5
        high = (part.stop - 0.5) * scale - 0.5
        margin = margin_mm / float(spacing[axis])
        start = max(int(np.floor(low - margin)), 0)
        stop = min(int(np.ceil(high + margin)) + 1, m)
        slices.append(slice(start, stop))
    return slices[0], slices[1], slices[2]
