"""Per-phase tumor contrast for every (organ, kind) the synthesizer knows, and its draw.

The organ profiles (`profiles.py`, `hollow.py` PROFILES, `uterus.py`) are portal-venous (PV).
On an unenhanced scan a PV contrast of -30..-80 HU against a liver at ~45 HU asks for a tumor
below the 15 HU solid-tumor floor, so every metastasis was clamped to the same value. This table
gives each kind a contrast per phase; `draw_contrast` draws from it and records whether the
physical floor changed the value.

Conventions (as in `profiles.KindProfile`): `contrast_hu` is the uniform range of
median(tumor) - median(organ), and the clip range when `contrast_normal` (mean, sd) or
`absolute_hu` (a target HU, contrast = target - organ median) is set. The PV rows equal today's
profiles exactly (tests/synth/test_phase.py checks it), so PV scans behave as before.

Sources (synthesis-notes = ../shared/reference/synthesis-notes.md; [assumption] = a calibrated
guess to tune against real tumors, synthesis-notes §9):

- Liver (§6 liver row, §7 liver row). Unenhanced liver 50-70 HU (§6). Most metastases are
  hypodense on unenhanced CT (seekhealthz "how do liver metastases appear"), mildly: -8..-30 HU
  [assumption]; even hypervascular metastases differ from liver by > 15 HU unenhanced in only 39 %
  (Bressler 1987, Radiology 162:49, PubMed 3024210). Arterial: liver enhanced only +20-30 HU
  (radiopaedia.org/articles/late-arterial-phase), hypovascular metastases stay hypodense
  -10..-50 [assumption]; delayed: still hypodense against the enhanced liver
  (radiologykey "hepatic metastases and lymphoma") -15..-55 [assumption].
  HCC: usually hypoattenuating unenhanced (wikidoc "Hepatocellular carcinoma CT") -3..-20
  [assumption]; arterial hyperenhancement in 78.2 % (§6, PMC3487070) -> normal(+20, 20) clipped to
  [-20, 60], 16 % below 0 [assumption calibrated to 78 %]; delayed washout, liver/lesion x 100
  median 121 (§6, PubMed 23255745) -> lesion ~17 % below a ~90 HU liver: -5..-30 HU.
- Pancreas (§6 PDAC row, §7). PDAC-pancreas contrast pancreatic (arterial) phase 60.2 +- 24.6,
  PV 40.5 +- 23.0, delayed 18.3 +- 11.8 HU (PubMed 17961951); another series 74.8 +- 35.6 in the
  pancreatic phase (PubMed 12202711). Clip ranges keep the PV shape (about -2.2 / +1.5 sd).
  Unenhanced PDAC is mostly iso- to slightly hypoattenuating: normal(-8, 6) in [-25, 0]
  [assumption]. Cysts are fluid, 0-20 HU absolute in every phase (§7); clip ranges follow the
  pancreas per phase (unenhanced ~40-55 HU, pancreatic phase ~100-150 HU) [assumption].
- Kidney (§6 kidney row, §7). ccRCC: unenhanced RCC 20-70 HU, mean min/max ROI 27.5 / 39.7 HU
  (PubMed 22528901) against kidneys at 30-50 HU (seekhealthz "normal appearance of the kidneys")
  -> -15..+5; corticomedullary ccRCC is hypervascular, > 86-89 HU (Pol J Radiol 2017;82:384) and
  approaches the cortex: -60..0 vs the whole-kidney median [assumption]; delayed washout -20..-80
  [assumption]. pRCC absolute HU per phase (homogeneous pRCC, §6): unenhanced 14.7-50.7,
  corticomedullary 32.2-99.5, PV 40.8-95.1, nephrographic 17.9-90.8 (used for delayed); PV keeps
  today's relative -50..-100.
- Colon / esophagus (§7 rows, [assumption] there): enhancing soft tissue, PV 40-90 / 40-80 HU
  absolute; unenhanced soft tissue ~30-50 HU, arterial and delayed shifted accordingly
  [assumption]. No clip (the hollow sampler applies the target HU as is).
- Uterus (§6, §7 uterus row; uterus.py): endometrial carcinoma hypoattenuating against enhancing
  myometrium, PV -20..-60 (JCAT 2017;41:713); without contrast the difference shrinks (-3..-20),
  the arterial myometrium is brighter (-20..-70), delayed -10..-40 [assumption]. Fibroids near iso
  (PV -10..+10) in every phase, wider in the arterial phase [assumption].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tumorscale.synth.phase import Phase
from tumorscale.synth.profiles import CYST_MIN_HU, SOLID_TUMOR_MIN_HU

Range = tuple[float, float]
UNBOUNDED: Range = (-math.inf, math.inf)  # no clip (hollow organs: target HU applied as is)

U, A, PV, D = Phase.UNENHANCED, Phase.ARTERIAL, Phase.PORTAL_VENOUS, Phase.DELAYED


@dataclass(frozen=True)
class PhaseContrast:
    """Contrast of one (organ, kind) in one phase: a uniform range (or the clip range of a normal
    draw / an absolute target), with its source."""

    contrast_hu: Range  # median(tumor) - median(organ); clip range for normal / absolute draws
    contrast_normal: Range | None = None  # (mean, sd): draw normally, clipped to contrast_hu
    absolute_hu: Range | None = None  # target HU; contrast = target - organ median, clipped
    source: str = ""

    def __post_init__(self) -> None:
        low, high = self.contrast_hu
        if low > high:
            raise ValueError(f"empty contrast range {self.contrast_hu}")
        bounded = math.isfinite(low) and math.isfinite(high)
        if not bounded and self.absolute_hu is None:
            raise ValueError("an unbounded contrast range needs absolute_hu")


@dataclass(frozen=True)
class ContrastDraw:
    """One drawn contrast: what the table asked for and what the floor let through."""

    intended_hu: float  # from the table (normal / uniform / absolute target), before the floor
    applied_hu: float  # after the floor: organ median + applied >= floor
    floor_applied: bool  # True exactly when the floor raised the contrast
    floor_shift_hu: float  # applied - intended (>= 0; 0 when no floor was applied)
    target_hu: float | None = None  # the absolute target drawn for absolute kinds


def _pc(contrast: Range, source: str, **kwargs: Range | None) -> PhaseContrast:
    return PhaseContrast(contrast_hu=contrast, source=source, **kwargs)  # type: ignore[arg-type]


_LIVER_METASTASIS = {
    U: _pc((-30.0, -8.0), "seekhealthz liver metastases; PubMed 3024210 [assumption]"),
    A: _pc((-50.0, -10.0), "radiopaedia late-arterial liver +20-30 HU [assumption]"),
    PV: _pc((-80.0, -30.0), "profiles.LIVER (§6, §7 liver row)"),
    D: _pc((-55.0, -15.0), "radiologykey hepatic metastases, delayed hypodense [assumption]"),
}
_LIVER_HCC = {
    U: _pc((-20.0, -3.0), "wikidoc HCC CT: usually hypoattenuating [assumption]"),
    A: _pc(
        (-20.0, 60.0),
        "PMC3487070 arterial hyperenhancement 78.2 % [assumption]",
        contrast_normal=(20.0, 20.0),
    ),
    PV: _pc((-40.0, -10.0), "profiles.LIVER (§7 liver row)"),
    D: _pc((-30.0, -5.0), "PubMed 23255745 liver/lesion 121 (§6)"),
}
_PANCREAS_PDAC = {
    U: _pc(
        (-25.0, 0.0),
        "unenhanced PDAC iso to slightly hypo [assumption]",
        contrast_normal=(-8.0, 6.0),
    ),
    A: _pc(
        (-120.0, -5.0),
        "PubMed 17961951 pancreatic phase 60.2 +- 24.6 HU (§6)",
        contrast_normal=(-60.0, 25.0),
    ),
    PV: _pc(
        (-90.0, -5.0), "profiles.PANCREAS; PubMed 17961951 (§6, §7)", contrast_normal=(-40.0, 23.0)
    ),
    D: _pc(
        (-50.0, -2.0), "PubMed 17961951 delayed 18.3 +- 11.8 HU (§6)", contrast_normal=(-18.0, 12.0)
    ),
}
_CYST_HU: Range = (0.0, 20.0)  # fluid does not enhance (§7 pancreas row)
_PANCREAS_CYST = {
    U: _pc((-70.0, -10.0), "§7 cyst 0-20 HU; unenhanced clip [assumption]", absolute_hu=_CYST_HU),
    A: _pc((-150.0, -40.0), "§7 cyst 0-20 HU; arterial clip [assumption]", absolute_hu=_CYST_HU),
    PV: _pc((-120.0, -30.0), "profiles.PANCREAS (§7)", absolute_hu=_CYST_HU),
    D: _pc((-110.0, -25.0), "§7 cyst 0-20 HU; delayed clip [assumption]", absolute_hu=_CYST_HU),
}
_KIDNEY_CCRCC = {
    U: _pc((-15.0, 5.0), "PubMed 22528901 RCC 27.5-39.7 HU; kidney 30-50 HU"),
    A: _pc((-60.0, 0.0), "Pol J Radiol 2017;82:384 ccRCC > 86-89 HU CM [assumption]"),
    PV: _pc((-100.0, -30.0), "profiles.KIDNEY (§6, §7 kidney row)"),
    D: _pc((-80.0, -20.0), "ccRCC washout vs parenchyma [assumption]"),
}
_KIDNEY_PRCC = {
    U: _pc((-45.0, 15.0), "§6 pRCC unenhanced 14.7-50.7 HU", absolute_hu=(14.7, 50.7)),
    A: _pc((-170.0, -10.0), "§6 pRCC corticomedullary 32.2-99.5 HU", absolute_hu=(32.2, 99.5)),
    PV: _pc((-100.0, -50.0), "profiles.KIDNEY (§6 pRCC PV 40.8-95.1 HU)"),
    D: _pc((-170.0, -10.0), "§6 pRCC nephrographic 17.9-90.8 HU", absolute_hu=(17.9, 90.8)),
}


def _hollow(
    unenhanced: Range, arterial: Range, portal: Range, delayed: Range, organ: str
) -> dict[Phase, PhaseContrast]:
    row = f"§7 {organ} row [assumption]"
    return {
        U: _pc(UNBOUNDED, f"{row}; unenhanced soft tissue", absolute_hu=unenhanced),
        A: _pc(UNBOUNDED, f"{row}; arterial", absolute_hu=arterial),
        PV: _pc(UNBOUNDED, f"hollow.PROFILES ({row})", absolute_hu=portal),
        D: _pc(UNBOUNDED, f"{row}; delayed", absolute_hu=delayed),
    }


_COLON = _hollow((30.0, 50.0), (50.0, 100.0), (40.0, 90.0), (40.0, 85.0), "colon")
_ESOPHAGUS = _hollow((30.0, 50.0), (45.0, 90.0), (40.0, 80.0), (40.0, 75.0), "esophagus")
_UTERUS_ENDOMETRIAL = {
    U: _pc((-20.0, -3.0), "unenhanced: no myometrial enhancement [assumption]"),
    A: _pc((-70.0, -20.0), "arterial myometrium brighter [assumption]"),
    PV: _pc((-60.0, -20.0), "uterus.py (§6 JCAT 2017;41:713, §7 uterus row)"),
    D: _pc((-40.0, -10.0), "delayed [assumption]"),
}
_UTERUS_FIBROID = {
    U: _pc((-8.0, 8.0), "fibroid near iso unenhanced [assumption]"),
    A: _pc((-30.0, 15.0), "arterial: variable fibroid enhancement [assumption]"),
    PV: _pc((-10.0, 10.0), "uterus.py (§7 uterus row [assumption])"),
    D: _pc((-15.0, 10.0), "delayed [assumption]"),
}

TABLE: dict[tuple[str, str], dict[Phase, PhaseContrast]] = {
    ("liver", "metastasis"): _LIVER_METASTASIS,
    ("liver", "hcc"): _LIVER_HCC,
    ("pancreas", "pdac"): _PANCREAS_PDAC,
    ("pancreas", "cyst"): _PANCREAS_CYST,
    ("kidney", "ccrcc"): _KIDNEY_CCRCC,
    ("kidney", "prcc"): _KIDNEY_PRCC,
    ("colon", "wall_thickening"): _COLON,
    ("colon", "polyp"): _COLON,
    ("esophagus", "wall_thickening"): _ESOPHAGUS,
    ("uterus", "endometrial"): _UTERUS_ENDOMETRIAL,
    ("uterus", "fibroid"): _UTERUS_FIBROID,
}
FLUID_KINDS: frozenset[tuple[str, str]] = frozenset({("pancreas", "cyst")})


def contrast_for(organ: str, kind: str, phase: Phase | str) -> PhaseContrast:
    """The contrast spec of `kind` in `organ` for `phase` (a Phase or its value)."""
    try:
        row = TABLE[(organ, kind)]
    except KeyError:
        known = ", ".join(f"{o}/{k}" for o, k in TABLE)
        raise ValueError(f"no phase contrast for {organ}/{kind}; known: {known}") from None
    return row[Phase(phase)]


def floor_hu_for(organ: str, kind: str) -> float:
    """The physical HU floor of a kind: fluid (cyst) CYST_MIN_HU, else SOLID_TUMOR_MIN_HU."""
    return CYST_MIN_HU if (organ, kind) in FLUID_KINDS else SOLID_TUMOR_MIN_HU


def _intended(
    spec: PhaseContrast, organ_median_hu: float, draws: np.ndarray, z: float
) -> tuple[float, float | None]:
    """The table's contrast for pre-drawn uniforms `draws` (2) and standard normal `z`."""
    low, high = spec.contrast_hu
    target = None
    if spec.absolute_hu is not None and math.isfinite(organ_median_hu):
        a_low, a_high = spec.absolute_hu
        target = a_low + float(draws[1]) * (a_high - a_low)
        return float(np.clip(target - organ_median_hu, low, high)), target
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("an absolute-HU kind needs a finite organ median")
    if spec.contrast_normal is not None:
        mean, sd = spec.contrast_normal
        return float(np.clip(mean + sd * z, low, high)), target
    return low + float(draws[0]) * (high - low), target


def draw_contrast(
    spec: PhaseContrast, organ_median_hu: float, floor_hu: float, rng: np.random.Generator
) -> ContrastDraw:
    """Draw a contrast from `spec` for an organ at `organ_median_hu`. The floor applies only when
    organ median + intended contrast < `floor_hu` (solid SOLID_TUMOR_MIN_HU, fluid CYST_MIN_HU);
    a non-finite median skips absolute targets and the floor. Always draws two uniforms then one
    standard normal, so seeded streams do not depend on the spec or the organ."""
    draws = rng.random(2)
    z = float(rng.standard_normal())
    median = float(organ_median_hu)
    intended, target = _intended(spec, median, draws, z)
    applied = intended
    if math.isfinite(median) and median + intended < floor_hu:
        applied = float(floor_hu - median)
    return ContrastDraw(
        intended_hu=intended,
        applied_hu=applied,
        floor_applied=applied != intended,
        floor_shift_hu=applied - intended,
        target_hu=target,
    )
