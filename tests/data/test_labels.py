"""Class maps from structure bits: lesion over organ, validation of class names."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscale.data import structure_bit
from tumorscale.data.labels import check_class_names, label_map, tumor_classes


def _bits(*names: str) -> np.uint64:
    value = np.uint64(0)
    for name in names:
        value |= structure_bit(name)
    return value


def test_lesion_wins_over_organ_and_background_is_zero() -> None:
    bits = np.array([0, _bits("pancreas"), _bits("pancreas", "pancreas_lesion"),
                     _bits("liver"), _bits("liver", "liver_lesion"), _bits("aorta")],
                    dtype=np.uint64)
    classes = ("background", "pancreas_lesion", "pancreas", "liver_lesion")
    label = label_map(bits, classes)
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, [0, 2, 1, 0, 3, 0])
    # Lesion first or last in the class list: the lesion still wins.
    swapped = label_map(bits, ("background", "pancreas", "pancreas_lesion"))
    np.testing.assert_array_equal(swapped, [0, 1, 2, 0, 0, 0])


def test_organ_classes_are_optional() -> None:
    bits = np.array([[_bits("kidney", "kidney_lesion"), _bits("kidney")]], dtype=np.uint64)
    np.testing.assert_array_equal(label_map(bits, ("background", "kidney_lesion")), [[1, 0]])
    assert tumor_classes(("background", "kidney_lesion", "kidney")) == ("kidney_lesion",)


@pytest.mark.parametrize("names, message", [
    (("pancreas_lesion",), "start with 'background'"),
    (("background",), "at least one"),
    (("background", "pancreatic_tumour"), "unknown class names"),
    (("background", "liver", "liver"), "distinct"),
])
def test_class_name_validation(names: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_class_names(names)
