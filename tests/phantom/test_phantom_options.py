"""PhantomOptions validation: clear ValueErrors for impossible settings."""

from __future__ import annotations

import pytest

from tumorscale.phantom import PhantomOptions


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"inplane_spacing_mm": (0.0, 1.0)}, "inplane_spacing_mm"),
        ({"inplane_spacing_mm": (1.0, 0.5)}, "inplane_spacing_mm"),
        ({"slice_spacing_mm": (-1.0, 2.0)}, "slice_spacing_mm"),
        ({"slice_spacing_mm": "thick"}, "slice_spacing_mm"),
        ({"tumor_fraction": 1.5}, "tumor_fraction"),
        ({"tumor_fraction": -0.1}, "tumor_fraction"),
        ({"female_fraction": 2}, "female_fraction"),
        ({"style": "arterial"}, "style"),
        ({"shape": (64, 64)}, "shape"),
        ({"shape": (64, 64, 4)}, "shape"),
        ({"tumor_organs": ("lung",)}, "tumor_organs"),
        ({"tumor_organs": ()}, "tumor_organs"),
        ({"orientations": ("LPX",)}, "orientation"),
        ({"orientations": ("LLS",)}, "orientation"),
        ({"noise_sd_hu": (20.0, 10.0)}, "noise_sd_hu"),
        ({"fov_margin_mm": -5.0}, "fov_margin_mm"),
    ],
)
def test_bad_options_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PhantomOptions(**changes)


def test_defaults_and_signature() -> None:
    options = PhantomOptions()
    assert options.inplane_spacing_mm == (0.6, 1.0) and options.slice_spacing_mm == (1.0, 5.0)
    assert options.tumor_fraction == 0.5 and options.style == "standard"
    assert options.signature() == PhantomOptions().signature()
    assert options.signature() != PhantomOptions(tumor_fraction=0.4).signature()
    assert PhantomOptions(orientations=("lps",)).orientations == ("LPS",)
    assert PhantomOptions(shape=[32, 32, 16]).shape == (32, 32, 16)
