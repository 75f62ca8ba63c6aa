"""How far apart the viewer's comparison colours stay for colour-blind readers (docs/design.md, "Colours").

    pip install colorspacious   # the simulation of Machado, Oliveira and Fernandes (2009); not a dependency
    .venv/bin/python benchmarks/colour_vision.py

For grey images of 64, 128 and 192 under the overlay (opacity 0.45, the viewer's default), the CIEDE2000
distance of every pair of what the viewer paints when truth and prediction are both on (background,
correct, false positives, false negatives), with normal vision and after simulating deuteranopia,
protanopia and tritanopia at full severity. Prints the smallest for seglib's colours, painted once a
pixel, and for the layers as they were stacked before (the truth's green under the prediction's orange).
"""

from __future__ import annotations

import itertools

import numpy as np
from colorspacious import cspace_convert

from seglib.engine.predictions import FALSE_NEGATIVE_COLOUR, FALSE_POSITIVE_COLOUR, PREDICTION_COLOUR

VISIONS = {"normal": None, "deutan": "deuteranomaly", "protan": "protanomaly", "tritan": "tritanomaly"}
OPACITY = 0.45
STACKED_TRUTH = (40, 200, 60)  # the viewer's truth green, under the prediction until the change


def simulated_lab(rgb: np.ndarray, vision: str) -> np.ndarray:
    """CIELab of an sRGB colour (0-255) as a reader with `vision` sees it."""
    srgb = np.asarray(rgb, float) / 255
    if VISIONS[vision] is not None:
        cvd = {"name": "sRGB1+CVD", "cvd_type": VISIONS[vision], "severity": 100}
        srgb = cspace_convert(srgb, cvd, "sRGB1").clip(0, 1)
    return cspace_convert(srgb, "sRGB1", "CIELab")


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """The CIEDE2000 colour difference (Sharma, Wu and Dalal's formulation)."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar**7 / (c_bar**7 + 25**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p, h2p = np.degrees(np.arctan2(b1, a1p)) % 360, np.degrees(np.arctan2(b2, a2p)) % 360
    dh = h2p - h1p
    dh = 0.0 if c1p * c2p == 0 else dh - 360 if dh > 180 else dh + 360 if dh < -180 else dh
    d_hp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_bar, c_barp, h_sum = (l1 + l2) / 2, (c1p + c2p) / 2, h1p + h2p
    if c1p * c2p == 0:
        h_bar = h_sum
    elif abs(h1p - h2p) > 180:
        h_bar = (h_sum + 360) / 2 if h_sum < 360 else (h_sum - 360) / 2
    else:
        h_bar = h_sum / 2
    t = (
        1
        - 0.17 * np.cos(np.radians(h_bar - 30))
        + 0.24 * np.cos(np.radians(2 * h_bar))
        + 0.32 * np.cos(np.radians(3 * h_bar + 6))
        - 0.20 * np.cos(np.radians(4 * h_bar - 63))
    )
    rc = 2 * np.sqrt(c_barp**7 / (c_barp**7 + 25**7))
    rt = -np.sin(np.radians(60 * np.exp(-(((h_bar - 275) / 25) ** 2)))) * rc
    sl = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    sc, sh = 1 + 0.045 * c_barp, 1 + 0.015 * c_barp * t
    dl, dc, dhh = (l2 - l1) / sl, (c2p - c1p) / sc, d_hp / sh
    return float(np.sqrt(dl**2 + dc**2 + dhh**2 + rt * dc * dhh))


def blend(under: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return (1 - OPACITY) * under + OPACITY * np.asarray(colour, float)


def smallest(painted: dict[str, np.ndarray]) -> tuple[float, str]:
    """The smallest distance between two of `painted` over the visions, and which."""
    rows = []
    for (a, ca), (b, cb) in itertools.combinations(painted.items(), 2):
        for vision in VISIONS:
            rows.append(
                (ciede2000(simulated_lab(ca, vision), simulated_lab(cb, vision)), f"{a}/{b} {vision}")
            )
    return min(rows)


def main() -> None:
    assert round(ciede2000(np.array([50, 2.6772, -79.7751]), np.array([50, 0, -82.7485])), 4) == 2.0425
    for name, paint in (("seglib, once a pixel", _once), ("stacked, as before", _stacked)):
        worst = min((*smallest(paint(np.full(3, float(g)))), g) for g in (64, 128, 192))
        print(f"{name}: smallest CIEDE2000 {worst[0]:.1f} ({worst[1]}, grey {worst[2]})")


def _once(grey: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "background": grey,
        "correct": blend(grey, PREDICTION_COLOUR),
        "false positive": blend(grey, FALSE_POSITIVE_COLOUR),
        "false negative": blend(grey, FALSE_NEGATIVE_COLOUR),
    }


def _stacked(grey: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "background": grey,
        "correct": blend(blend(grey, STACKED_TRUTH), PREDICTION_COLOUR),
        "false positive": blend(grey, PREDICTION_COLOUR),
        "false negative": blend(grey, STACKED_TRUTH),
    }


if __name__ == "__main__":
    main()
