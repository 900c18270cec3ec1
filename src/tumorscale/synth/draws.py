"""Random draws shared by the tumor families: size classes, uniform ranges, rotations, kinds.

Every draw takes the caller's numpy Generator, so a seed fixes the whole record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tumorscale.sizes import SIZE_CLASS_NAMES
from tumorscale.synth.types import DEFAULT_SIZE_MIX

SizeMix = Sequence[float] | Mapping[str, float]


def size_weights(size_mix: SizeMix) -> np.ndarray:
    """Probabilities of small / medium / large from a 3-sequence or a {class: weight} mapping."""
    if isinstance(size_mix, Mapping):
        weights = [float(size_mix.get(name, 0.0)) for name in SIZE_CLASS_NAMES]
    else:
        weights = [float(v) for v in size_mix]
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(
            f"size_mix needs three non-negative weights (small:medium:large); got {size_mix!r}"
        )
    return np.asarray(weights) / sum(weights)


def draw_size_class(rng: np.random.Generator, size_mix: SizeMix = DEFAULT_SIZE_MIX) -> str:
    return SIZE_CLASS_NAMES[int(rng.choice(3, p=size_weights(size_mix)))]


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def random_rotation(rng: np.random.Generator) -> tuple[float, ...]:
    """A uniformly random 3x3 rotation (unit quaternion from 4 normals), row-major."""
    w, x, y, z = (q := rng.standard_normal(4)) / np.linalg.norm(q)
    matrix = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    return tuple(float(v) for v in matrix.ravel())


def pick_weighted(
    names: Sequence[str],
    weights: Sequence[float],
    rng: np.random.Generator,
    given: str | None,
    what: str,
) -> str:
    """One of `names` by `weights`, or `given` when set (checked). One draw either way, so the
    random stream does not depend on whether the caller fixed the choice."""
    draw = rng.random()
    if given is not None:
        if given not in names:
            raise ValueError(f"unknown {what} {given!r}; choose from {', '.join(names)}")
        return given
    cumulative = np.cumsum(weights)
    return names[int(np.searchsorted(cumulative / cumulative[-1], draw, side="right"))]
