"""Training targets from bit-packed structures: one integer class per voxel.

    classes = ("background", "pancreas_lesion", "pancreas")
    check_class_names(classes)
    label = label_map(bits, classes)  # int64, 0 background, 1 lesion (wins over organ), 2 organ
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tumorscale.data.cache import LESION_STRUCTURES, STRUCTURES, structure_bit

BACKGROUND = "background"
_LESIONS = frozenset(LESION_STRUCTURES.values())


def check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    """Validate class names: 'background' first, then distinct structures of the cache bit table
    (e.g. 'pancreas_lesion', 'pancreas'); returns them as a tuple. Raises ValueError."""
    names = tuple(class_names)
    if len(names) < 2 or names[0] != BACKGROUND:
        raise ValueError(f"class names must start with 'background' and name at least one "
                         f"structure; got {list(names)}")
    unknown = [name for name in names[1:] if name not in STRUCTURES]
    if unknown:
        raise ValueError(f"unknown class names {unknown}; choose from {', '.join(STRUCTURES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct; got {list(names)}")
    return names


def tumor_classes(class_names: Sequence[str]) -> tuple[str, ...]:
    """The lesion classes among `class_names` (what foreground sampling centres patches on)."""
    return tuple(name for name in class_names[1:] if name in _LESIONS)


def label_map(bits: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """int64 class index per voxel (same shape as `bits`, uint64 structure bits): 0 background,
    class k where structure `class_names[k]` is set. Lesion classes are painted last, so a lesion
    wins over its organ (and any other non-lesion class) where both are set."""
    names = check_class_names(class_names)
    # Painted in bytes (2x faster than int64): classes are distinct structures, at most 34.
    label = np.zeros(bits.shape, dtype=np.uint8)
    present = np.bitwise_or.reduce(bits, axis=None)  # every structure in the patch (0 if empty)
    order = sorted(range(1, len(names)), key=lambda k: names[k] in _LESIONS)  # stable: lesions last
    for index in order:
        bit = structure_bit(names[index])
        if present & bit:  # most patches hold no lesion of most classes
            np.copyto(label, np.uint8(index), where=(bits & bit) != 0)
    return label.astype(np.int64)
