"""Spatially correlated random fields on a crop: the tumor texture and the boundary lobulation.

A field is white noise on a coarse lattice blended by separable Gaussian kernels (three small
matrix products), so it costs far less than filtering a fine noise volume and has exactly unit
variance at every voxel. The texture is then **mean-normalised** over the tumor so that the
intended contrast is what the tumor gets (the public code reaches only about half of it, §1b).
"""

from __future__ import annotations

import numpy as np

# Lattice nodes are spaced this fraction of the correlation length apart (smooth, cheap).
_NODE_STEP = 0.8


def _axis_kernel(count: int, spacing_mm: float, grain_mm: float) -> np.ndarray:
    """(count, nodes) Gaussian weights from lattice nodes to voxel centres along one axis."""
    step = _NODE_STEP * grain_mm
    positions = np.arange(count, dtype=np.float64) * spacing_mm
    first = -3.0 * grain_mm
    nodes = first + step * np.arange(int(np.ceil((positions[-1] + 6.0 * grain_mm) / step)) + 1)
    kernel = np.exp(-0.5 * ((positions[:, None] - nodes[None, :]) / grain_mm) ** 2)
    # Unit variance per voxel: white lattice noise -> variance = sum of squared weights.
    kernel /= np.sqrt((kernel**2).sum(axis=1, keepdims=True))
    return kernel.astype(np.float32)


def smooth_random_field(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    grain_mm: float,
) -> np.ndarray:
    """A zero-mean, unit-variance Gaussian random field (float32, `shape`) whose correlation
    length is `grain_mm` along each axis (voxel axes scaled by `spacing_mm`)."""
    grain_mm = max(float(grain_mm), 1e-3)
    kernels = [_axis_kernel(n, s, grain_mm) for n, s in zip(shape, spacing_mm, strict=True)]
    lattice = rng.standard_normal(tuple(k.shape[1] for k in kernels), dtype=np.float32)
    field = np.tensordot(kernels[0], lattice, axes=(1, 0))  # (i, b, c)
    field = np.tensordot(field, kernels[1], axes=(1, 1))  # (i, c, j)
    field = np.tensordot(field, kernels[2], axes=(1, 1))  # (i, j, k)
    return np.ascontiguousarray(field, dtype=np.float32)


def mean_normalised(field: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`field` shifted and scaled to mean 0, SD 1 over `region` (bool), so that
    contrast + sd * field has exactly the intended mean and spread inside the tumor."""
    values = field[region]
    if values.size < 2:
        return np.zeros_like(field)
    sd = float(values.std())
    return ((field - float(values.mean())) / (sd if sd > 0 else 1.0)).astype(np.float32)
