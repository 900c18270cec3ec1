"""The tumor's noise (`synth/noise.py`): the local mean that separates noise from anatomy, the
robust SD, correlated synthetic noise, and the scan's residual with old edges replaced."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tumorscale.synth.noise import (
    LOCAL_MEAN_SIGMA_MM,
    local_mean,
    matched_noise,
    robust_sd,
    tumor_noise,
)


def lag_correlation(
    values: np.ndarray, axis: int, lag: int = 1, where: np.ndarray | None = None
) -> float:
    """Pearson correlation of voxels `lag` apart along `axis` (pairs with both ends in `where`)."""
    head, tail = [slice(None)] * 3, [slice(None)] * 3
    head[axis], tail[axis] = slice(0, -lag), slice(lag, None)
    a, b = values[tuple(head)], values[tuple(tail)]
    if where is not None:
        both = where[tuple(head)] & where[tuple(tail)]
        a, b = a[both], b[both]
    return float(np.corrcoef(a.reshape(-1), b.reshape(-1))[0, 1])


# ----------------------------------------------------------------------------- local mean


@pytest.mark.parametrize("spacing_mm", [0.5, 1.0, 2.0, 3.0])
def test_local_mean_is_a_normalised_kernel_of_about_two_mm_sd(spacing_mm: float):
    ct = np.zeros((41, 41, 41), np.float32)
    ct[20, 20, 20] = 1.0
    box = (slice(10, 31),) * 3
    kernel = local_mean(ct, box, (spacing_mm,) * 3)
    assert kernel.shape == (21, 21, 21)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)  # a mean: weights sum to one
    profile = kernel.sum(axis=(1, 2))
    x_mm = (np.arange(21) - 10) * spacing_mm
    sd_mm = float(np.sqrt((profile * x_mm**2).sum()))
    # the same physical width (sigma 2 mm) at every voxel size, within half a voxel
    assert abs(sd_mm - LOCAL_MEAN_SIGMA_MM) <= spacing_mm / 2
    np.testing.assert_allclose(profile, profile[::-1], atol=1e-7)  # centred, no shift


def test_local_mean_keeps_linear_anatomy_and_has_no_border_effect():
    spacing = (0.8, 0.8, 2.5)
    i, j, k = np.indices((40, 40, 24), dtype=np.float32)
    ramp = 3.0 * i - 2.0 * j + 7.0 * k + 40.0
    box = (slice(10, 30), slice(12, 28), slice(6, 18))
    # a symmetric mean of a linear image is the image itself
    np.testing.assert_allclose(local_mean(ramp, box, spacing), ramp[box], atol=1e-3)
    # read with a margin: the box's mean equals the whole volume's mean cropped to the box
    rng = np.random.default_rng(0)
    ct = (rng.normal(40.0, 20.0, ramp.shape)).astype(np.float32)
    whole = local_mean(ct, tuple(slice(0, n) for n in ct.shape), spacing)
    np.testing.assert_allclose(local_mean(ct, box, spacing), whole[box], atol=1e-3)


# ----------------------------------------------------------------------------- robust SD


def test_robust_sd_measures_the_gaussian_sd_despite_outliers():
    rng = np.random.default_rng(1)
    values = rng.normal(30.0, 12.0, 40_000)
    assert robust_sd(values) == pytest.approx(12.0, rel=0.03)
    spoiled = values.copy()
    spoiled[::10] = 900.0  # 10 % bright structure (bone, contrast)
    assert np.std(spoiled) > 200
    assert robust_sd(spoiled) == pytest.approx(12.0, rel=0.2)
    # a large array is subsampled to ~50k values: still the SD
    assert robust_sd(rng.normal(0.0, 7.0, (80, 80, 80))) == pytest.approx(7.0, rel=0.03)
    assert robust_sd(np.zeros(0)) == 0.0


# ----------------------------------------------------------------------------- matched noise


def test_matched_noise_is_seeded_and_has_the_requested_sd():
    shape = (40, 36, 24)
    a = matched_noise(np.random.default_rng(4), shape, 12.0, [0.7, 0.7, 0.0])
    b = matched_noise(np.random.default_rng(4), shape, 12.0, [0.7, 0.7, 0.0])
    c = matched_noise(np.random.default_rng(5), shape, 12.0, [0.7, 0.7, 0.0])
    assert a.shape == shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 5.0  # independent draws: mean |a - c| ~ 1.13 SD x 12
    assert a.std() == pytest.approx(12.0, rel=1e-4)  # scaled to the SD exactly
    assert abs(a.mean()) < 0.1 * 12.0
    white = matched_noise(np.random.default_rng(4), shape, 5.0, [0.0, 0.0, 0.0])
    assert white.std() == pytest.approx(5.0, rel=1e-4)
    assert all(abs(lag_correlation(white, axis)) < 0.03 for axis in range(3))


def test_matched_noise_has_the_requested_correlation_per_axis():
    noise = matched_noise(np.random.default_rng(0), (64, 64, 64), 10.0, [0.9, 0.7, 0.0])
    # lag-1 correlation as requested, per axis
    assert lag_correlation(noise, 0) == pytest.approx(0.9, abs=0.03)
    assert lag_correlation(noise, 1) == pytest.approx(0.7, abs=0.03)
    assert lag_correlation(noise, 2) == pytest.approx(0.0, abs=0.03)
    # a Gaussian correlation: lag 2 is lag 1 to the fourth power; the more correlated axis
    # falls off more slowly
    assert lag_correlation(noise, 0, lag=2) == pytest.approx(0.9**4, abs=0.04)
    assert lag_correlation(noise, 1, lag=2) == pytest.approx(0.7**4, abs=0.04)
    assert lag_correlation(noise, 0, lag=3) > lag_correlation(noise, 1, lag=3) + 0.3


@pytest.mark.parametrize("correlation", [0.1, 0.3, 0.5, 0.8])
def test_matched_noise_reaches_weak_correlations(correlation: float):
    """The sampled Gaussian's own correlation is inverted: exp(-1 / (4 s²)), which holds only for
    wide kernels, gave 0.02 / 0.18 / 0.45 for 0.1 / 0.3 / 0.5."""
    noise = matched_noise(np.random.default_rng(0), (64, 64, 64), 10.0, [correlation] * 3)
    assert lag_correlation(noise, 0) == pytest.approx(correlation, abs=0.03)


# ----------------------------------------------------------------------------- tumor noise

SPACING = (0.8, 0.8, 2.5)
BOX = (slice(10, 54), slice(10, 54), slice(5, 35))
NOISE_SD = 15.0


def correlated_scan(
    edge_hu: float, in_plane_sigma: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """A 40 HU scan with noise of SD 15 correlated in-plane (lag-1 ~0.73 for sigma 0.9 voxel)
    and white along z, and a plane edge of `edge_hu` at i = 32; returns the scan and its noise."""
    white = np.random.default_rng(1).standard_normal((64, 64, 40)).astype(np.float32)
    sigma = [in_plane_sigma, in_plane_sigma, 0.0]
    noise = ndimage.gaussian_filter(white, sigma, mode="wrap") if in_plane_sigma else white
    noise *= np.float32(NOISE_SD / noise.std())
    ct = 40.0 + noise
    ct[32:] += edge_hu
    return ct.astype(np.float32), noise


def test_tumor_noise_keeps_the_scans_residual_where_the_anatomy_is_smooth():
    ct, _ = correlated_scan(edge_hu=0.0)
    residual = ct[BOX] - local_mean(ct, BOX, SPACING)
    out = tumor_noise(ct, BOX, SPACING, np.random.default_rng(2))
    assert out.shape == residual.shape and out.dtype == np.float32
    kept = out == residual
    # only the far tails of the noise count as structure: under 1 % of the voxels, all large
    assert kept.mean() > 0.99
    assert np.all(np.abs(residual[~kept]) > 2.5 * residual.std())
    # the noise level (robust SD, as QA measures it) is the scan's
    assert robust_sd(out) == pytest.approx(robust_sd(residual), rel=0.05)


@pytest.mark.parametrize("in_plane_sigma", [0.0, 0.9])
def test_tumor_noise_keeps_the_sd_of_correlated_noise_on_smooth_tissue(in_plane_sigma: float):
    """White or in-plane correlated noise keeps its SD: the quiet-tenth estimate (calibrated on
    white noise, ~11 % low on correlated noise) is refined off the edges before the outlier
    rule, which replaced the noise's own tails and cost 8 % of its SD."""
    ct, _ = correlated_scan(edge_hu=0.0, in_plane_sigma=in_plane_sigma)
    residual = ct[BOX] - local_mean(ct, BOX, SPACING)
    out = tumor_noise(ct, BOX, SPACING, np.random.default_rng(2))
    assert out.std() == pytest.approx(residual.std(), rel=0.03)


def test_tumor_noise_replaces_an_old_edge_with_noise_of_the_same_sd_and_correlation():
    ct, _ = correlated_scan(edge_hu=150.0)
    residual = ct[BOX] - local_mean(ct, BOX, SPACING)
    ghost = np.abs(residual.mean(axis=(1, 2)))
    assert ghost.max() > 40.0  # the residual carries the edge (a ±60 HU ghost at i = 29..34)
    out = tumor_noise(ct, BOX, SPACING, np.random.default_rng(5))
    # no ghost: every slab across the edge has mean ~0 (SD of a slab mean ~0.3 HU)
    assert np.abs(out.mean(axis=(1, 2))).max() < 3.0
    band = np.zeros(out.shape, bool)
    band[19:25] = True  # i = 29..34, across the edge
    far = np.zeros(out.shape, bool)
    far[:12] = True  # i = 10..21, smooth tissue
    # the same SD as the scan's noise away from the edge (noise-SD ratio ~1)
    assert out[band].std() / out[far].std() == pytest.approx(1.0, abs=0.1)
    # and the same voxel-to-voxel correlation: in-plane ~0.7, none along z
    scan_in_plane = lag_correlation(residual, 1, where=far)
    assert scan_in_plane > 0.6
    assert lag_correlation(out, 1, where=band) == pytest.approx(scan_in_plane, abs=0.1)
    assert lag_correlation(out, 2, where=band) == pytest.approx(0.0, abs=0.1)
    # seeded: the same generator state gives the same noise; another one changes only the
    # replaced voxels
    again = tumor_noise(ct, BOX, SPACING, np.random.default_rng(5))
    np.testing.assert_array_equal(out, again)
    other = tumor_noise(ct, BOX, SPACING, np.random.default_rng(6))
    replaced = out != residual
    assert replaced[band].mean() > 0.9
    np.testing.assert_array_equal(other[~replaced], out[~replaced])
    assert np.abs(other[band] - out[band]).mean() > 5.0
