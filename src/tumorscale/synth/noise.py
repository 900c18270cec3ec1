"""The noise a tumor carries: the scan's own residual noise, with old edges replaced.

residual = ct - local_mean(ct) is the scan's noise wherever the anatomy is smooth; across an
organ boundary or vessel it also holds the edge, which would ghost through the tumor. There the
residual is replaced by synthetic noise with the same SD and the same voxel-to-voxel correlation
(measured on the smooth part of the reference tissue), so the tumor's noise matches the
background's everywhere (DiffTumor's noise-mismatch failure, §2c; §9.1 noise-SD ratio ~ 1).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from tumorscale.geometry import grow_box

LOCAL_MEAN_SIGMA_MM = 2.0  # smoothing that separates the scan's noise from its anatomy
EDGE_STEP_SD = 0.8  # an edge: the smooth image changes by more than this many noise SD per mm
# Residuals beyond this many noise SD are structure, not noise. At 3 SD the noise's own tails
# (0.27 % of voxels) are replaced too, which costs its SD 1.3 %; at 2.5 SD it was 4.5 %.
OUTLIER_SD = 3.0
BODY_HU = -500.0  # noise is measured in tissue, not in air or gas
_SAMPLE = 50_000
_QUIET_TENTH_SD = 0.78  # sqrt(10th percentile of 3x3x3 local variance) / SD for pure CT noise


def local_mean(
    ct: np.ndarray, box: tuple[slice, ...], spacing_mm: tuple[float, ...]
) -> np.ndarray:
    """Local mean of `ct` over `box`: a box filter per axis (running sums, cost independent of
    its size) with the variance of a Gaussian of sigma LOCAL_MEAN_SIGMA_MM, read with a margin
    (no border effects)."""
    sigma = [LOCAL_MEAN_SIGMA_MM / s for s in spacing_mm]
    # A width-w box has variance (w² - 1) / 12: the odd w matching sigma.
    widths = [max(1, 2 * round(float(np.sqrt(12 * s * s + 1) - 1) / 2) + 1) for s in sigma]
    margin = tuple(w // 2 + 1 for w in widths)
    outer = grow_box(box, margin, ct.shape)
    smooth = np.asarray(ct[outer], dtype=np.float32)
    for axis, width in enumerate(widths):
        if width > 1:
            smooth = ndimage.uniform_filter1d(smooth, width, axis=axis, mode="nearest")
    inner = tuple(
        slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer, strict=True)
    )
    return smooth[inner]


def robust_sd(values: np.ndarray) -> float:
    """1.4826 x median absolute deviation (a subsample of at most 50k values)."""
    values = values.reshape(-1)[:: max(1, values.size // _SAMPLE)]
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _lag_correlation(residual: np.ndarray, smooth: np.ndarray, axis: int) -> float:
    """Correlation of neighbouring voxels along `axis` over the smooth (edge-free) region."""
    head = [slice(None)] * 3
    tail = [slice(None)] * 3
    head[axis], tail[axis] = slice(0, -1), slice(1, None)
    both = smooth[tuple(head)] & smooth[tuple(tail)]
    a = residual[tuple(head)][both]
    b = residual[tuple(tail)][both]
    if a.size < 50:
        return 0.0
    return float(np.clip(np.mean(a * b) / max(np.mean(a * a), 1e-6), 0.0, 0.95))


def _kernel_lag_correlation(sigma: float, truncate: float) -> float:
    """Lag-1 correlation of white noise after scipy's sampled Gaussian of `sigma` (voxels)."""
    radius = int(truncate * sigma + 0.5)
    if radius < 1:
        return 0.0
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return float(np.dot(weights[:-1], weights[1:]) / np.dot(weights, weights))


@functools.lru_cache(maxsize=4096)
def sigma_for_lag_correlation(correlation: float, truncate: float = 3.0) -> float:
    """The Gaussian sigma (voxels) whose sampled kernel gives white noise this lag-1
    correlation. exp(-1 / (4 s²)) holds only for wide kernels: it gives 0.18 for 0.3."""
    low, high = 1.0 / (2.0 * truncate), 20.0  # below `low` the kernel is one tap: white noise
    for _ in range(40):  # bisection (to 2e-11 voxel): the correlation grows with sigma
        middle = 0.5 * (low + high)
        if _kernel_lag_correlation(middle, truncate) < correlation:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def matched_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sd: float, correlation: list[float]
) -> np.ndarray:
    """Gaussian noise of SD `sd` whose lag-1 correlation along each axis is `correlation`
    (white noise through a per-axis sampled Gaussian, its sigma found for that correlation)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    # Correlations are measured to about 0.01: rounded, their sigmas come from the cache.
    sigma = [sigma_for_lag_correlation(round(c, 4)) if c > 0.05 else 0.0 for c in correlation]
    if any(s > 0 for s in sigma):
        white = ndimage.gaussian_filter(white, sigma, mode="wrap", truncate=3.0)
    scale = float(white.std())
    return white * np.float32(sd / scale if scale > 0 else 0.0)


def _central(shape: tuple[int, ...], size: int = 48) -> tuple[slice, ...]:
    """The central box of at most `size` voxels per axis."""
    starts = [max(0, (n - size) // 2) for n in shape]
    return tuple(slice(a, a + min(n, size)) for a, n in zip(starts, shape, strict=True))


def tumor_noise(
    original: np.ndarray,
    box: tuple[slice, slice, slice],
    spacing_mm: tuple[float, float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Noise for the tumor's box (float32): the scan's residual where the anatomy is smooth,
    matched synthetic noise across old edges and structure."""
    smooth_image = local_mean(original, box, spacing_mm)
    residual = original[box] - smooth_image
    body = original[box] > BODY_HU
    if body.sum() < 200:
        body = np.ones(residual.shape, dtype=bool)
    probe = _central(residual.shape)  # statistics on at most ~48³ voxels: cheap, enough
    sd = _quiet_sd(residual[probe], body[probe])
    if sd <= 0:
        return residual
    gradient = np.zeros(residual.shape, dtype=np.float32)
    for axis, step in enumerate(spacing_mm):
        if residual.shape[axis] > 1:
            gradient += (np.gradient(smooth_image, axis=axis) / np.float32(step)) ** 2
    # Refined on the voxels off old edges: the quiet-tenth estimate is ~11 % low on noise
    # correlated in-plane, and a low SD would call the noise's own tails structure.
    steep = gradient > np.float32((EDGE_STEP_SD * sd) ** 2)
    level = ~steep[probe] & body[probe]
    if level.sum() >= 200:
        sd = robust_sd(residual[probe][level])
        steep = gradient > np.float32((EDGE_STEP_SD * sd) ** 2)
    # Old edges (steep smooth image) and structure the noise cannot explain (outliers).
    edges = steep | (np.abs(residual) > OUTLIER_SD * sd)
    if not edges.any():
        return residual
    smooth = ~edges[probe] & body[probe]
    correlation = [_lag_correlation(residual[probe], smooth, axis) for axis in range(3)]
    synthetic = matched_noise(rng, residual.shape, sd, correlation)
    return np.where(edges, synthetic, residual).astype(np.float32)


def _quiet_sd(residual: np.ndarray, body: np.ndarray) -> float:
    """Noise SD from the quietest tenth of local (3x3x3) residual variances: a crowded crop may
    be mostly edges, but some of it is smooth tissue (for pure noise q10 ~ (0.78 SD)²)."""
    local_variance = ndimage.uniform_filter(residual * residual, 3)
    sample = local_variance[body]
    sample = sample if sample.size >= 50 else local_variance.reshape(-1)
    return float(np.sqrt(np.quantile(sample, 0.1))) / _QUIET_TENTH_SD
