"""A patch far larger than the training images is cut to them, with a warning."""

from __future__ import annotations

from tumorscale.train import load_config
from tumorscale.train.cases import CaseRoles
from tumorscale.train.preflight import fit_patch_to_images


class _Shapes:
    """The one thing `fit_patch_to_images` asks of a preprocessed cache."""

    def __init__(self, shapes: dict[str, tuple[int, int, int]]) -> None:
        self.shapes = shapes

    def image_shape(self, case_id: str) -> tuple[int, int, int]:
        return self.shapes[case_id]


def _config(patch: int):
    return load_config(
        None,
        [
            "organs=[liver]",
            "data.root=x",
            "model.network=tiny",
            f"patch_size=[{patch},{patch},{patch}]",
        ],
    )


def test_huge_patch_is_cut_to_the_largest_image_rounded_to_the_divisor(capsys) -> None:
    cache = _Shapes({"a": (90, 70, 60), "b": (85, 81, 50)})
    fitted = fit_patch_to_images(_config(512), cache, CaseRoles(("a",), ("b",), ()))
    assert fitted.patch_size == (96, 88, 64)  # tiny's divisor is 8
    warning = capsys.readouterr().err
    assert "patch_size [512, 512, 512] is larger than every training image" in warning


def test_a_patch_that_fits_or_barely_exceeds_is_kept(capsys) -> None:
    cache = _Shapes({"a": (60, 60, 30)})
    config = _config(32)
    assert fit_patch_to_images(config, cache, CaseRoles(("a",), (), ())) is config
    small = _Shapes({"a": (60, 60, 12)})  # 12 rounds up to 16: a 16³ patch still fits
    config = _config(16)
    assert fit_patch_to_images(config, small, CaseRoles(("a",), (), ())) is config
    assert capsys.readouterr().err == ""
