"""Ellipsoid tumor geometry: a jittered, rotated ellipsoid with a smooth lobulated boundary.

The boundary is the zero level of a signed distance (mm) to the ellipsoid, displaced by a smooth
random field whose amplitude grows with the tumor (SynTumor's size-scaled elastic deformation,
§1b) and whose grain sets the lobulation scale. The occupancy is that distance through a Gaussian
edge profile (`edge_mm` = blur sigma), so edge blur needs no filtering pass. Necrotic core and
rim / capsule are shells of the same field. Everything is computed on the crop only.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from tumorscale.synth.texture import smooth_random_field
from tumorscale.synth.types import Crop, EllipsoidGeometry, TumorParams

EDGE_CUTOFF = 4.0  # occupancy is exactly 0 / 1 beyond this many blur sigmas (untouched voxels)
ELASTIC_CLIP = 2.5  # the lobulation field is clipped to +-2.5 SD (bounded extent)
SHAPE_STREAM, TEXTURE_STREAM, NOISE_STREAM = 1, 2, 3  # independent streams from params.seed
AIR_HU = -400.0  # a bulging / exophytic tumor never grows into air or gas


def radius_mm(params: TumorParams) -> float:
    """Radius (mm) of the tumor's ellipsoid: the intended equivalent radius, or the larger one
    the sampler chose so that what survives the neighbours' cut has the intended size."""
    if isinstance(params.geometry, EllipsoidGeometry):
        return 0.5 * float(params.geometry.shape_diameter_mm)
    return 0.5 * float(params.diameter_mm)


def reach_mm(params: TumorParams) -> float:
    """Largest distance (mm) from the centre at which the tumor's occupancy can be non-zero."""
    r_max = radius_mm(params) * max(params.semi_axis_scale)
    return r_max + ELASTIC_CLIP * params.elastic_mm + EDGE_CUTOFF * max(params.edge_mm, 0.3)


def crop_radius_mm(params: TumorParams) -> float:
    """Crop half-size (mm) holding the tumor and its mass-effect shell."""
    r_max = radius_mm(params) * max(params.semi_axis_scale)
    extent = max(params.mass_effect_extent, 1.0)
    push = extent * (r_max + ELASTIC_CLIP * params.elastic_mm)
    return max(reach_mm(params), push) + 1.0


def crop_half_extent_mm(params: TumorParams) -> np.ndarray:
    """Half-size (mm) along each world axis of the box holding the tumor and its mass-effect
    shell: the bounding box of the grown, rotated ellipsoid (tighter than a cube)."""
    extent = max(params.mass_effect_extent if params.mass_effect > 0 else 1.0, 1.0)
    pad = ELASTIC_CLIP * params.elastic_mm
    semi = radius_mm(params) * np.asarray(params.semi_axis_scale, float)
    push = extent * (semi + pad)
    shape = semi + pad + EDGE_CUTOFF * max(params.edge_mm, 0.3)
    axes = np.maximum(push, shape)
    return np.sqrt((params.rotation_matrix**2) @ (axes**2)) + 1.0


def ellipsoid_crop(params: TumorParams, volume_shape: tuple[int, int, int], affine) -> Crop:
    """The crop of `crop_half_extent_mm` around the tumor centre, clipped to the volume."""
    affine = np.asarray(affine, float)
    centre = center_voxel(params, affine)
    half = np.abs(np.linalg.inv(affine[:3, :3])) @ crop_half_extent_mm(params)
    start = np.clip(np.floor(centre - half), 0, volume_shape).astype(int)
    stop = np.clip(np.ceil(centre + half) + 1, 0, volume_shape).astype(int)
    return Crop(tuple(int(v) for v in start), tuple(int(v) for v in stop), affine)


def center_voxel(params: TumorParams, affine: np.ndarray) -> np.ndarray:
    """The tumor centre in (fractional) voxel indices of the volume."""
    return np.linalg.solve(np.asarray(affine, float), np.append(params.center_mm, 1.0))[:3]


def _quadratic(form: np.ndarray, offsets: list[np.ndarray]) -> np.ndarray:
    """v^T Q v for every voxel offset v = (di, dj, dk), from 1-D axis offsets (few full passes)."""
    di = offsets[0][:, None, None]
    dj = offsets[1][None, :, None]
    dk = offsets[2][None, None, :]
    plane = form[0, 0] * di * di + 2 * form[0, 1] * di * dj + form[1, 1] * dj * dj
    slope = 2 * (form[0, 2] * di + form[1, 2] * dj)
    return plane + dk * (slope + form[2, 2] * dk)


def ellipsoid_frame(
    params: TumorParams, crop: Crop
) -> tuple[np.ndarray, np.ndarray]:
    """(rho, distance_mm) on the crop: ellipsoid-normalised radius (1 on the ellipsoid) and the
    Euclidean distance from the centre in mm, both float32."""
    linear = np.asarray(crop.affine, float)[:3, :3]
    semi = radius_mm(params) * np.asarray(params.semi_axis_scale, float)
    to_unit = (params.rotation_matrix.T @ linear) / semi[:, None]  # voxel offset -> unit sphere
    centre = center_voxel(params, crop.affine)
    offsets = [
        (np.arange(a, b, dtype=np.float64) - c).astype(np.float32)
        for a, b, c in zip(crop.start, crop.stop, centre, strict=True)
    ]
    rho = np.sqrt(np.maximum(_quadratic((to_unit.T @ to_unit).astype(np.float32), offsets), 0))
    dist = np.sqrt(np.maximum(_quadratic((linear.T @ linear).astype(np.float32), offsets), 0))
    return rho.astype(np.float32), dist.astype(np.float32)


def lobulated_signed_distance_mm(
    params: TumorParams, crop: Crop
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Analytic distance field of the tumor's own shape (no voxel mask involved):
    (signed distance to the lobulated boundary in mm, negative inside; normalised radius
    that is 1 on that boundary; mm per unit of that radius along each ray), float32 on the crop."""
    rho, dist = ellipsoid_frame(params, crop)
    # mm per unit of rho along each ray (the ellipsoid's radius in that direction).
    ray = np.divide(dist, rho, out=np.full_like(dist, radius_mm(params)), where=rho > 1e-6)
    sd = dist - ray
    if params.elastic_mm > 0:
        rng = np.random.default_rng([params.seed, SHAPE_STREAM])
        field = smooth_random_field(rng, crop.shape, crop.spacing_mm, params.elastic_grain_mm)
        np.clip(field, -ELASTIC_CLIP, ELASTIC_CLIP, out=field)
        sd -= np.float32(params.elastic_mm) * field
    return sd, (sd / ray + 1.0).astype(np.float32), ray


def soft_inside(sd_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """Gaussian edge profile of a signed distance: 1 inside, 0 outside, exact beyond 4 sigma
    (the error function is evaluated on the boundary band only)."""
    edge = max(float(edge_mm), 0.3)
    weight = (sd_mm < 0).astype(np.float32)
    flat = sd_mm.reshape(-1)
    band = np.flatnonzero(np.abs(flat) < np.float32(EDGE_CUTOFF * edge))
    weight.reshape(-1)[band] = ndtr(flat[band] / np.float32(-edge))
    return weight
