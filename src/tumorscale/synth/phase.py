"""The contrast phase of a CT scan, estimated from the median HU of the aorta and host organs.

Tumor contrast depends on the phase (unenhanced, arterial, portal-venous, delayed); the organ
profiles are portal-venous (`profiles.py`). This module measures the host's organ medians cheaply
(`measure_host_hu`) and turns them into a phase call with a reason (`estimate_phase`); the
per-phase contrast tables live in `phase_contrast.py`.

Thresholds, their values and sources (synthesis-notes = ../shared/reference/synthesis-notes.md;
[assumption] = a calibrated guess, not a published cut-off):

- unenhanced aorta < 70 HU: unenhanced blood is ~30-50 HU (haematocrit dependent); the margin to
  70 HU is [assumption]. Bolus tracking fires at an aortic rise of ~100 HU or ~120-170 HU absolute
  (Kanematsu 2013, Open J Radiol 3:112, doi 10.4236/ojrad.2013.33018; documents.pub "phase"
  protocol sheet), so any contrast-enhanced series has an aorta well above 70 HU.
- arterial aorta >= 200 HU with the liver still low: late arterial peak aorta 290-360 HU, liver
  enhanced only 20-30 HU above baseline, portal vein 145 +- 20 HU
  (radiopaedia.org/articles/late-arterial-phase); 200 HU is [assumption] to include early arterial.
- portal-venous aorta ~130-200 HU with the liver >= 90 HU: the liver peaks in the portal-venous
  phase (PubMed 10399776: "liver parenchyma showed the largest attenuation value" in PV);
  unenhanced liver 50-70 HU + PV enhancement of ~40-60 HU -> ~100-130 HU. The 130 / 200 / 90 HU
  cut-offs are [assumption].
- delayed aorta < 130 HU with an enhanced liver (>= 80 HU) or kidney (>= 100 HU): in the
  equilibrium phase (3-5 min) the blood pool has washed out towards the parenchyma while organs
  stay enhanced (radiodaddy "Phases in contrast-enhanced CT"); cut-offs [assumption].
- unenhanced organs: liver 50-70 HU, ~10 HU above the spleen (synthesis-notes §6 liver row;
  seekhealthz "normal appearance of the liver"), kidneys 30-50 HU (seekhealthz "normal appearance
  of the kidneys"), steatotic liver < 42 HU (Eur J Nucl Med Mol Imaging, doi
  10.1007/s00259-017-3914-y). Upper limits used: liver 75, spleen 65, kidney 60, pancreas 60 HU
  (pancreas ~40-50 HU unenhanced [assumption]).
- TotalSegmentator's example CT (liver medians 38-49 HU, aorta ~40 HU) is unenhanced by both the
  aorta rule and the organ rule.

Anything ambiguous or contradictory (e.g. an aorta below 70 HU with a liver at 120 HU, or no
measurement at all) falls back to portal-venous, the phase of the profiles, with
`confident=False` and a reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class Phase(str, Enum):
    """Contrast phase of a CT scan."""

    UNENHANCED = "unenhanced"
    ARTERIAL = "arterial"
    PORTAL_VENOUS = "portal_venous"
    DELAYED = "delayed"


# Aorta (primary cue).
AORTA_UNENHANCED_MAX_HU = 70.0
AORTA_PORTAL_MIN_HU = 130.0
AORTA_ARTERIAL_MIN_HU = 200.0
# Liver / kidney (secondary cues, and the only cues without an aorta).
LIVER_ENHANCED_MIN_HU = 80.0  # above any unenhanced liver (50-70 HU) with a margin
LIVER_PORTAL_MIN_HU = 90.0  # with an aorta in the portal-venous range
LIVER_PORTAL_ALONE_MIN_HU = 100.0  # without an aorta: a clearly PV-enhanced liver
KIDNEY_ENHANCED_MIN_HU = 100.0  # unenhanced kidney 30-50 HU
UNENHANCED_MAX_HU: dict[str, float] = {
    "liver": 75.0,
    "spleen": 65.0,
    "kidney": 60.0,
    "pancreas": 60.0,
}

HOST_STRUCTURES: tuple[str, ...] = ("liver", "kidney", "spleen", "aorta", "pancreas")
KIDNEY_PARTS: tuple[str, ...] = ("kidney_left", "kidney_right")
MAX_SAMPLES_PER_MASK = 100_000
MIN_SAMPLES_PER_MASK = 1_000  # a coarser stride is used only if it keeps this many voxels


@dataclass(frozen=True)
class PhaseEstimate:
    """A phase call, why it was made, and the HU values it was made from."""

    phase: Phase
    reason: str
    confident: bool
    organ_medians_hu: dict[str, float] = field(default_factory=dict)
    aorta_median_hu: float | None = None

    @property
    def is_default(self) -> bool:
        """True when the phase is the portal-venous fallback of an ambiguous scan."""
        return not self.confident and self.phase is Phase.PORTAL_VENOUS

    def to_record(self) -> dict[str, object]:
        """JSON-ready form (what a preprocessed case's meta.json keeps)."""
        return {"phase": self.phase.value, "confident": self.confident, "reason": self.reason}

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> PhaseEstimate:
        return cls(Phase(str(record["phase"])), str(record["reason"]), bool(record["confident"]))


# ----------------------------------------------------------------------------- measuring


def _strided_values(ct: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """HU values of `mask` from a strided view: the coarsest stride (8, 4, 2, 1) that keeps at least
    MIN_SAMPLES_PER_MASK voxels, thinned to at most MAX_SAMPLES_PER_MASK."""
    for stride in (8, 4, 2, 1):
        view = (slice(None, None, stride),) * mask.ndim
        sub = np.asarray(mask[view]).astype(bool, copy=False)
        count = int(np.count_nonzero(sub))
        if count >= MIN_SAMPLES_PER_MASK or stride == 1:
            break
    if count == 0:
        return np.empty(0, np.float32)
    index = np.flatnonzero(sub)
    step = max(1, math.ceil(index.size / MAX_SAMPLES_PER_MASK))
    coords = np.unravel_index(index[::step], sub.shape)
    return np.asarray(ct[view][coords], dtype=np.float32)


def _median_of(ct: np.ndarray, masks: list[np.ndarray]) -> float | None:
    values = [_strided_values(ct, mask) for mask in masks]
    joined = np.concatenate(values) if values else np.empty(0, np.float32)
    joined = joined[np.isfinite(joined)]
    return float(np.median(joined)) if joined.size else None


def _masks_for(name: str, masks: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    if name in masks:
        return [masks[name]]
    if name == "kidney":
        return [masks[part] for part in KIDNEY_PARTS if part in masks]
    return []


def measure_host_hu(ct: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Median HU of the available host structures among liver, kidney (or kidney_left /
    kidney_right, pooled), spleen, aorta and pancreas, from a strided sample of at most
    ~100k voxels per mask. Missing or empty masks are left out."""
    ct = np.asarray(ct)
    medians: dict[str, float] = {}
    for name in HOST_STRUCTURES:
        selected = _masks_for(name, masks)
        for mask in selected:
            if np.shape(mask) != ct.shape:
                raise ValueError(f"mask {name!r} has shape {np.shape(mask)}, the CT has {ct.shape}")
        value = _median_of(ct, selected)
        if value is not None:
            medians[name] = value
    return medians


# ----------------------------------------------------------------------------- estimating


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _clean_medians(organ_medians_hu: Mapping[str, float]) -> dict[str, float]:
    """Finite organ medians; kidney_left / kidney_right averaged into 'kidney' if it is absent."""
    clean = {
        k: v for k, v in ((k, _finite(v)) for k, v in organ_medians_hu.items()) if v is not None
    }
    parts = [clean.pop(part) for part in KIDNEY_PARTS if part in clean]
    if "kidney" not in clean and parts:
        clean["kidney"] = float(np.mean(parts))
    return clean


def _fmt(values: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}" for name, value in sorted(values.items())) or "none"


def _organs_enhanced(organs: Mapping[str, float]) -> bool:
    liver, kidney = organs.get("liver"), organs.get("kidney")
    return (liver is not None and liver >= LIVER_ENHANCED_MIN_HU) or (
        kidney is not None and kidney >= KIDNEY_ENHANCED_MIN_HU
    )


def _with_aorta(aorta: float, organs: Mapping[str, float]) -> tuple[Phase, bool, str]:
    liver = organs.get("liver")
    if aorta < AORTA_UNENHANCED_MAX_HU:
        if _organs_enhanced(organs):
            return Phase.PORTAL_VENOUS, False, "aorta unenhanced but organs enhanced: conflicting"
        return Phase.UNENHANCED, True, f"aorta < {AORTA_UNENHANCED_MAX_HU:.0f} HU"
    if aorta >= AORTA_ARTERIAL_MIN_HU:
        if liver is None:
            return Phase.ARTERIAL, False, "aorta in the arterial range, no liver to confirm"
        if liver < LIVER_PORTAL_MIN_HU:
            return Phase.ARTERIAL, True, "aorta >= 200 HU with the liver still low"
        return Phase.PORTAL_VENOUS, True, "aorta high with an enhanced liver (early PV)"
    if aorta >= AORTA_PORTAL_MIN_HU:
        if liver is not None and liver >= LIVER_PORTAL_MIN_HU:
            return Phase.PORTAL_VENOUS, True, "aorta 130-200 HU with the liver >= 90 HU"
        return Phase.PORTAL_VENOUS, False, "aorta in the PV range, liver not PV-enhanced"
    if _organs_enhanced(organs):
        return Phase.DELAYED, True, "aorta < 130 HU with enhanced liver or kidney"
    return Phase.PORTAL_VENOUS, False, "weakly enhanced aorta with unenhanced organs: ambiguous"


def _without_aorta(organs: Mapping[str, float]) -> tuple[Phase, bool, str]:
    known = {name: organs[name] for name in UNENHANCED_MAX_HU if name in organs}
    if not known:
        return Phase.PORTAL_VENOUS, False, "no aorta or organ medians: default"
    if all(value <= UNENHANCED_MAX_HU[name] for name, value in known.items()):
        if len(known) >= 2:
            return Phase.UNENHANCED, True, "all organs in their unenhanced ranges"
        return Phase.UNENHANCED, False, "the only organ measured is in its unenhanced range"
    liver = known.get("liver")
    if liver is not None and liver >= LIVER_PORTAL_ALONE_MIN_HU:
        return Phase.PORTAL_VENOUS, True, "liver >= 100 HU (PV-enhanced), no aorta"
    return Phase.PORTAL_VENOUS, False, "organs enhanced but the phase is unclear without aorta"


def estimate_phase(
    organ_medians_hu: Mapping[str, float], aorta_median_hu: float | None = None
) -> PhaseEstimate:
    """Call the contrast phase from organ medians (liver, kidney, spleen, pancreas; an 'aorta'
    entry is used when `aorta_median_hu` is None). The aorta is the primary cue; without it the
    organs decide. Ambiguous scans get portal-venous with `confident=False`."""
    organs = _clean_medians(organ_medians_hu)
    aorta = _finite(aorta_median_hu)
    if aorta is None:
        aorta = organs.get("aorta")
    organs.pop("aorta", None)
    if aorta is not None:
        phase, confident, why = _with_aorta(aorta, organs)
        reason = f"{why} (aorta {aorta:.0f} HU; {_fmt(organs)})"
    else:
        phase, confident, why = _without_aorta(organs)
        reason = f"{why} ({_fmt(organs)})"
    return PhaseEstimate(
        phase=phase,
        reason=reason,
        confident=confident,
        organ_medians_hu=organs,
        aorta_median_hu=aorta,
    )


def estimate_scan_phase(ct: np.ndarray, masks: Mapping[str, np.ndarray]) -> PhaseEstimate:
    """The phase of a scan from its CT (HU) and full-volume masks: `measure_host_hu`, then
    `estimate_phase` (which takes the aorta from the medians)."""
    return estimate_phase(measure_host_hu(ct, masks))
