"""Embedded synthetic lung-ultrasound (LUS) video simulator: the suite's default offline dataset.

Spec (UltraBench style: this docstring is the dataset's specification)
----------------------------------------------------------------------
- Source: generated here, no download. Licence: CC0-1.0. Version: :data:`VERSION`.
- Classes (``classes.json`` order): ``regular``, ``b_lines``, ``consolidation``.
- Patients: ``n_patients`` simulated patients, assigned to the classes round-robin (patient ``p``
  has class ``CLASSES[p % 3]``), each with ``videos_per_patient`` videos that share the patient's
  traits (chest-wall thickness and layering, probe radius and sector, gain, dynamic range,
  attenuation, breathing rate, base severity). ``patient_id`` is ``syn-p<p>``, ``video_id`` is
  ``syn-p<p>-v<v>``; folds must be grouped by ``patient_id``.
- Frames: uint8 ``[n_frames, size, size]``, a convex-probe fan on black (zero outside the fan).
- Extra manifest columns: ``severity`` (float in [0, 1], the within-class strength of the sign:
  number/width/brightness of B-lines, size of the consolidation, weakness of the A-lines in
  ``regular``) and ``fps`` (frame rate of the stored frames, Hz).
- Determinism: video ``(p, v)`` is rendered from ``np.random.default_rng(SeedSequence([seed, 2,
  p, v]))`` and patient traits from ``SeedSequence([seed, 1, p])``, so videos are independent
  of each other and of ``n_patients``. The same arguments give byte-identical arrays on the same
  platform (numpy + scipy, single-threaded); float32 ``exp``/``log`` may round differently on
  other CPUs' SIMD paths, which can move a few uint8 values by 1.

Image formation (per video, all frames at once, vectorised over ``[T, depth, angle]``)
1. Geometry: convex probe of radius ``Rc`` (apex = centre of curvature, above the image),
   imaging depth ``D`` and half-sector angle ``a`` (both vary per video). The scene is rendered on
   a polar grid (depth x angle, ``1.25 size x 1.1 size``) and scan-converted to the Cartesian
   ``size x size`` image by bilinear interpolation (taps computed once per video, gathered for
   all frames at once); pixels outside the fan are 0.
2. Scene, per frame: an echogenicity map ``E`` (diffuse scatterer strength) and a specular map
   ``S`` (coherent reflectors). Chest wall: skin, subcutaneous fat with septa, fibrillar muscle,
   optional rib pair with acoustic shadows (bat sign). Pleural line at ``r_p(theta, t)``, the
   image of a flat pleura seen by the convex probe, with a shimmering texture.
   - ``regular``: A-lines (reverberations) at ``k * r_p`` (k = 2, 3, ...) fading as ``decay**k``;
     a faint isolated B-line in some videos (normal lungs show a few).
   - ``b_lines``: 2..7 comet tails from the pleura to the bottom of the sector (laser-like, no
     fading, fine reverberation striations), erasing the A-lines in their columns; few, thin and
     dim at low severity, many, wide and confluent at high severity.
   - ``consolidation``: a sub-pleural tissue-like (hepatised) region with an irregular deep border
     (shred sign), bright air-bronchogram dots/branches that move a little frame to frame, an
     interrupted pleura over it, A-lines erased below it; a flanking B-line in some videos.
   Nuisance shared by all classes (so that global brightness does not give the class away):
   gain (+-8 dB), dynamic range (45-60 dB), net attenuation after TGC (-0.3..1.5 dB/cm, i.e.
   under- or over-compensated), lung haze, muscle echogenicity, chest-wall thickness, imaging
   depth, sector angle, probe radius, rib shadows in half of the videos.
3. Speckle: complex circular Gaussian scatterers times ``sqrt(E)`` plus ``S``, blurred by a
   Gaussian axial x lateral point-spread function, depth attenuation partly compensated by TGC,
   additive electronic noise, envelope ``|z|`` (Rayleigh/Rician), log compression with a
   per-video dynamic range and gain.
4. Time: breathing (``f`` 0.2-0.4 Hz) moves the pleura in depth (about 1-3 %) and slides the lung
   laterally along the pleura (lung sliding, 2-9 mm peak to peak); the sub-pleural scatterers,
   the pleural texture, the B-lines and the consolidation follow the slide (Fourier sub-pixel
   shift, so the speckle statistics do not flicker), the chest wall stays fixed to the probe;
   every frame also re-draws a small fraction of the scatterers (speckle decorrelation).

Calibration: ``bench/calibrate_synthetic.py`` measures how hard the data is (a supervised
network against frozen random features, on held-out patients); its measured numbers are in
``bench/README.md`` ("calibrate_synthetic.py"). Anything that changes what the generators draw or
how images are formed invalidates them: re-run the script and update that section.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from hico.data.standard import DatasetWriter

log = logging.getLogger(__name__)

CLASSES = ("regular", "b_lines", "consolidation")
VERSION = "1"
LICENSE = "CC0-1.0"
SOURCE = "hico.data.synthetic (embedded simulator)"


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Patient:
    """Traits shared by all videos of one simulated patient (and the probe used on them)."""

    label: str
    severity: float  # base within-class severity in [0, 1]
    chest_wall_cm: float  # skin to pleura
    fat_frac: float  # fraction of the chest wall that is subcutaneous fat
    probe_radius_cm: float
    half_angle_deg: float
    depth_cm: float
    gain_db: float
    dynamic_range_db: float
    attenuation_db_cm: float  # net of TGC
    noise: float  # electronic noise amplitude (speckle RMS = 1)
    axial_res_cm: float
    lateral_res_deg: float
    breath_hz: float
    slide_cm: float  # peak-to-peak lung sliding along the pleura
    muscle_echo: float
    pleura_amp: float


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one video; sampled by :func:`sample_scene`."""

    patient: Patient
    severity: float
    depth_cm: float
    half_angle_deg: float
    gain_db: float
    fps: float
    breath_phase: float
    breath_amp: float  # relative pleura-depth oscillation
    pleura_tilt_cm: float  # pleura depth difference between the two sector edges
    a_line_strength: float
    a_line_decay: float
    lung_haze: float
    ribs: tuple[float, float] | None  # lateral positions (cm along the pleura) of two rib centres
    b_lines: tuple[tuple[float, float, float], ...] = ()  # (x_cm, width_cm, brightness)
    consolidation: tuple[float, float, float] | None = None  # (x_cm, half_width_cm, depth_cm)
    decorrelation: float = 0.05  # fraction of lung scatterers re-drawn per frame


# (trait, Generator method, a, b), in the order of the draws: reordering changes every simulated dataset.
_PATIENT_TRAITS: tuple[tuple[str, str, float, float], ...] = (
    ("severity", "uniform", 0.0, 1.0),
    ("chest_wall_cm", "uniform", 1.2, 2.6),
    ("fat_frac", "uniform", 0.15, 0.5),
    ("probe_radius_cm", "uniform", 3.0, 6.0),
    ("half_angle_deg", "uniform", 26.0, 38.0),
    ("depth_cm", "uniform", 7.5, 12.0),
    ("gain_db", "normal", 0.0, 3.5),
    ("dynamic_range_db", "uniform", 45.0, 60.0),
    ("attenuation_db_cm", "uniform", -0.3, 1.5),
    ("noise", "uniform", 0.01, 0.04),
    ("axial_res_cm", "uniform", 0.04, 0.07),
    ("lateral_res_deg", "uniform", 0.5, 0.9),
    ("breath_hz", "uniform", 0.2, 0.4),
    ("slide_cm", "uniform", 0.2, 0.9),
    ("muscle_echo", "uniform", 0.2, 0.8),
    ("pleura_amp", "uniform", 5.0, 9.0),
)


def sample_patient(rng: np.random.Generator, label: str) -> Patient:
    """Draw the traits of one patient (chest wall, probe, system settings, base severity)."""
    if label not in CLASSES:
        raise ValueError(f"label {label!r} is not one of {CLASSES}")
    traits = {name: float(getattr(rng, draw)(a, b)) for name, draw, a, b in _PATIENT_TRAITS}
    return Patient(label=label, **traits)


def _pleura_half_width_cm(patient: Patient, half_angle_deg: float) -> float:
    """Half the arc length of the pleura inside the sector."""
    return np.deg2rad(half_angle_deg) * (patient.probe_radius_cm + patient.chest_wall_cm)


def sample_scene(rng: np.random.Generator, patient: Patient) -> Scene:
    """Draw one video of ``patient``: per-video probe settings and the class signs (about 60
    lines: one draw per scene field, in the order the seeded generator must keep)."""
    sev = float(np.clip(patient.severity + rng.normal(0.0, 0.12), 0.0, 1.0))
    depth = float(np.clip(patient.depth_cm + rng.normal(0.0, 0.7), 6.5, 13.0))
    half_angle = float(np.clip(patient.half_angle_deg + rng.normal(0.0, 2.0), 24.0, 40.0))
    half_w = _pleura_half_width_cm(patient, half_angle)
    ribs = None
    window = (-0.7 * half_w, 0.7 * half_w)  # lateral range where signs are placed
    if rng.random() < 0.5:
        gap = rng.uniform(1.1, 1.6) * half_w  # intercostal space, centred near the middle
        centre = rng.uniform(-0.15, 0.15) * half_w
        ribs = (centre - gap / 2 - 0.9, centre + gap / 2 + 0.9)
        window = (centre - 0.42 * gap, centre + 0.42 * gap)
    lo, hi = window
    label = patient.label
    b_lines: list[tuple[float, float, float]] = []
    cons = None
    # A-lines: present in every class outside the signs; weaker with severity.
    a_strength = float(rng.uniform(0.2, 0.5))
    if label == "regular":
        a_strength *= 1.0 - 0.5 * sev
        if rng.random() < 0.15 + 0.25 * sev:  # an isolated faint B-line is normal
            b_lines.append((float(rng.uniform(lo, hi)), float(rng.uniform(0.06, 0.12)),
                            float(rng.uniform(0.04, 0.1))))
    elif label == "b_lines":
        a_strength *= 1.0 - 0.7 * sev
        n = 2 + int(np.floor(sev * 5.99 * rng.uniform(0.7, 1.0)))
        width = 0.2 + 0.3 * sev
        # spread along the window (one per slot, jittered); many lines merge into white lung
        slots = lo + (hi - lo) * (np.arange(n) + rng.uniform(0.15, 0.85, size=n)) / n
        for x in slots:
            b_lines.append((float(x), float(width * rng.uniform(0.7, 1.3)),
                            float(rng.uniform(0.7, 1.0) * (0.6 + 0.4 * sev))))
    else:  # consolidation
        a_strength *= 1.0 - 0.4 * sev
        half = float(np.clip(1.2 + 1.3 * sev * rng.uniform(0.8, 1.2), 1.0, 0.45 * (hi - lo)))
        x = float(rng.uniform(lo + half, hi - half)) if hi - lo > 2 * half else (lo + hi) / 2
        cons = (x, half, float(1.5 + 2.5 * sev * rng.uniform(0.8, 1.2)))
        if rng.random() < 0.25:  # B-lines often flank a consolidation
            side = x + (half + 0.4) * rng.choice([-1.0, 1.0])
            if lo < side < hi:
                b_lines.append((float(side), float(rng.uniform(0.1, 0.2)),
                                float(rng.uniform(0.2, 0.4))))
    return Scene(
        patient=patient,
        severity=sev,
        depth_cm=depth,
        half_angle_deg=half_angle,
        gain_db=float(np.clip(patient.gain_db + rng.normal(0.0, 2.0), -8.0, 8.0)),
        fps=float(rng.choice([8.0, 10.0, 12.0, 15.0])),
        breath_phase=float(rng.uniform(0.0, 2 * np.pi)),
        breath_amp=float(rng.uniform(0.01, 0.03)),
        pleura_tilt_cm=float(rng.normal(0.0, 0.15)),
        a_line_strength=a_strength,
        a_line_decay=float(rng.uniform(0.4, 0.65)),
        lung_haze=float(np.exp(rng.uniform(np.log(0.003), np.log(0.025)))),
        ribs=ribs,
        b_lines=tuple(b_lines),
        consolidation=cons,
        decorrelation=float(rng.uniform(0.05, 0.2)),
    )


# --------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Fan:
    """Convex-probe geometry of one video at one image size (Cartesian <-> polar)."""

    probe_radius_cm: float
    depth_cm: float
    half_angle: float  # radians
    size: int
    cm_per_px: float
    x0_cm: float  # Cartesian x of pixel column 0 (apex at x = 0)
    y0_cm: float  # Cartesian y of pixel row 0 (apex at y = 0, y grows downwards)

    @classmethod
    def of(cls, scene: Scene, size: int) -> Fan:
        rc, d, a = scene.patient.probe_radius_cm, scene.depth_cm, np.deg2rad(scene.half_angle_deg)
        top = rc * np.cos(a)
        width = 2 * (rc + d) * np.sin(a)
        height = rc + d - top
        side = max(height * 1.04, 0.92 * width)  # the widest corners may be cropped, as on scanners
        return cls(rc, d, float(a), size, side / size, -side / 2, top - 0.5 * (side - height))

    def polar_of_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Depth below the skin (cm) and beam angle (rad) of every pixel centre, ``[size, size]``."""
        c = (np.arange(self.size) + 0.5) * self.cm_per_px
        x = self.x0_cm + c[None, :]
        y = self.y0_cm + c[:, None]
        return np.hypot(x, y) - self.probe_radius_cm, np.arctan2(x, y)

    def mask(self) -> np.ndarray:
        depth, theta = self.polar_of_pixels()
        return (depth >= 0) & (depth <= self.depth_cm) & (np.abs(theta) <= self.half_angle)


# --------------------------------------------------------------------------- rendering
def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Zero-mean unit-std 1-D smooth random texture (periodic, so it can slide)."""
    x = ndimage.gaussian_filter1d(rng.standard_normal(n), sigma, mode="wrap")
    return x / (x.std() + 1e-8)


def _fourier_shift(field_: np.ndarray, shifts: np.ndarray, axis: int) -> np.ndarray:
    """Shift a 2-D complex field ``[A, B]`` by ``shifts[t]`` samples along ``axis`` -> ``[T, A, B]``.

    Sub-pixel shifts by a phase ramp keep white scatterers white (no interpolation flicker)."""
    n = field_.shape[axis]
    spec = np.fft.fft(field_, axis=axis)
    k = np.fft.fftfreq(n)
    ramp = np.exp(-2j * np.pi * shifts[:, None] * k[None, :])  # [T, n]
    ramp = ramp[:, :, None] if axis == 0 else ramp[:, None, :]
    return np.fft.ifft(spec[None] * ramp, axis=axis + 1)


F32 = np.float32


def _gauss(u, w):
    return np.exp((-0.5 / (w * w)) * np.square(u))


def _sigmoid(u):
    return 0.5 + 0.5 * np.tanh(0.5 * u)


def _cgauss(rng: np.random.Generator, shape) -> np.ndarray:
    """Unit-variance circular complex Gaussian (complex64)."""
    z = rng.standard_normal((2, *shape), dtype=F32) * F32(np.sqrt(0.5))
    return z[0] + 1j * z[1]


def _splat(out: np.ndarray, t: np.ndarray, ri: np.ndarray, ai: np.ndarray, amp: np.ndarray):
    """Add point reflectors at fractional (row, col) of frames ``t`` with bilinear weights."""
    n_t, n_r, n_a = out.shape
    r0, a0 = np.floor(ri).astype(int), np.floor(ai).astype(int)
    fr, fa = ri - r0, ai - a0
    for dr_, wr in ((0, 1 - fr), (1, fr)):
        for da, wa in ((0, 1 - fa), (1, fa)):
            rr, aa = r0 + dr_, a0 + da
            ok = (rr >= 0) & (rr < n_r) & (aa >= 0) & (aa < n_a)
            np.add.at(out, (t[ok], rr[ok], aa[ok]), (amp * wr * wa)[ok].astype(out.dtype))


def render_polar(scene: Scene, n_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render the log-compressed polar image ``[T, R, A]`` in [0, 1] (depth x angle), float32.

    Long by design (about 120 lines): one pass of the imaging chain in physical order (tissue,
    pleura, A-/B-lines, consolidation, speckle, attenuation, gain), each step a few lines on the
    same depth/angle grids; split into functions it would pass a dozen shared arrays around."""
    p = scene.patient
    n_r, n_a = int(round(size * 1.25)), int(round(size * 1.1))
    depth, a = scene.depth_cm, np.deg2rad(scene.half_angle_deg)
    rc, d0 = p.probe_radius_cm, p.chest_wall_cm
    r = np.linspace(0.0, depth, n_r, dtype=F32)  # cm below the skin
    th = np.linspace(-a, a, n_a)
    dr, dth = float(r[1] - r[0]), float(th[1] - th[0])
    arc = rc + d0  # cm of pleura per radian
    x_pl = (th * arc).astype(F32)  # lateral position along the pleura (cm)
    t = np.arange(n_frames) / scene.fps
    phase = 2 * np.pi * p.breath_hz * t + scene.breath_phase
    d_t = d0 * (1.0 + scene.breath_amp * np.sin(phase))  # [T] pleura depth (breathing)
    slide = 0.5 * p.slide_cm * np.sin(phase + 0.5 * np.pi)  # [T] lung sliding (cm)
    slide_px = slide / arc / dth

    def pleura_depth(d, theta):
        # a flat pleura seen by a convex probe: r_p = (Rc + d) / cos(theta) - Rc, plus a tilt
        return (rc + d) / np.cos(theta) - rc + scene.pleura_tilt_cm * theta / a

    R = r[None, :, None]  # [1, R, 1]
    X = x_pl[None, None, :]  # [1, 1, A]
    Xs = (X - slide[:, None, None]).astype(F32)  # lung-fixed lateral coordinate, [T, 1, A]
    r_p = pleura_depth(d_t[:, None, None], th[None, None, :]).astype(F32)  # [T, 1, A]
    u = R - r_p  # depth below the pleura, [T, R, A]
    below = _sigmoid(u / F32(0.04))  # 0 in the chest wall, 1 in the lung

    # ---- chest wall echogenicity (fixed to the probe): skin, fat with septa, fibrillar muscle
    fat_end = d0 * p.fat_frac
    rw = r[:, None] + F32(0.08) * _smooth_noise(rng, n_a, n_a / 10).astype(F32)[None, :]
    fibres = np.sin(2 * np.pi * rw / F32(rng.uniform(0.25, 0.4))
                    + F32(4.0) * _smooth_noise(rng, n_a, n_a / 6).astype(F32)[None, :])
    muscle = p.muscle_echo * (0.25 + 1.5 * (0.5 + 0.5 * fibres) ** 3)
    e_wall = np.where(rw < fat_end, F32(0.1), muscle) + 1.8 * _gauss(rw - 0.04, 0.04)
    s_wall = 1.2 * _gauss(rw - fat_end, 0.03)  # fascia
    for depth_sep in rng.uniform(0.15, 0.9, size=2) * fat_end:  # fat septa
        s_wall += 0.6 * _gauss(rw - depth_sep, 0.025)
    if rng.random() < 0.6:  # deep fascia
        s_wall += 0.9 * _gauss(rw - (d0 - 0.25), 0.03)

    # ---- lung: everything below the pleura slides with it
    period = 2 * a * arc
    shimmer = np.interp(Xs, x_pl, 1.0 + 0.35 * _smooth_noise(rng, n_a, 2.0), period=period)
    pleura = p.pleura_amp * shimmer.astype(F32)  # [T, 1, A] amplitude of the pleural line
    e_lung = scene.lung_haze * (1.0 + 2.0 * np.exp(-np.maximum(u, 0) / F32(1.5)))
    spec = np.zeros(u.shape, F32)  # specular amplitude below the pleura
    a_keep = np.ones((n_frames, 1, n_a), F32)  # columns where A-lines survive
    for xb, wb, bb in scene.b_lines:
        prof = _gauss(Xs - xb, wb)  # [T, 1, A]
        core = prof * (1.0 + 0.35 * np.sin(u * F32(2 * np.pi / 0.22)))  # comet-tail striations
        core *= 1.0 - 0.15 * np.maximum(u, 0) / depth  # laser-like: hardly fades
        e_lung += F32(3.0 * bb) * core
        spec += F32(0.5 * bb * p.pleura_amp) * core
        a_keep *= 1.0 - min(1.6 * bb, 1.0) * prof
    dots = np.zeros(u.shape, F32)
    if scene.consolidation is not None:
        xc, half, hc = scene.consolidation
        rough = np.interp(Xs, x_pl, _smooth_noise(rng, n_a, 1.5), period=period).astype(F32)
        lat = np.maximum(1.0 - ((Xs - xc) / half) ** 2, 0.0)
        deep = hc * np.sqrt(lat) * (1.0 + 0.25 * rough)  # irregular deep border (shred sign)
        inside = _sigmoid((deep - u) / F32(0.06)) * (lat > 0)
        e_lung += inside * (p.muscle_echo * rng.uniform(0.9, 1.4) - e_lung)  # hepatised lung
        spec += 1.2 * (1.0 + 0.5 * rough) * _gauss(u - deep, 0.06) * (lat > 0.05)  # the shred
        # air bronchograms: bright dots and short branches, moving a little frame to frame
        pts = []
        for _ in range(int(4 + 14 * scene.severity)):
            fx, fu = rng.uniform(-0.8, 0.8), rng.uniform(0.2, 0.75)
            length = rng.uniform(0.1, 0.4) if rng.random() < 0.4 else 0.0
            ang, amp = rng.uniform(-1.0, 1.0), rng.uniform(2.0, 5.0)
            jit = 0.03 * rng.standard_normal(n_frames)
            bx, bu = xc + fx * half, fu * hc * np.sqrt(1 - fx**2)
            for s in np.linspace(0.0, 1.0, 1 + int(length / 0.06)):
                pts.append((bx + s * length * np.sin(ang) + jit, bu + s * length * np.cos(ang), amp))
        tt = np.repeat(np.arange(n_frames)[None], len(pts), 0).ravel()
        xs = np.concatenate([q[0] for q in pts]) + np.tile(slide, len(pts))  # probe frame
        us = np.repeat([q[1] for q in pts], n_frames)
        amps = np.repeat([q[2] for q in pts], n_frames)
        theta_dot = xs / arc
        r_dot = pleura_depth(d_t[tt], theta_dot) + us
        gain = 2 * np.pi * max(p.axial_res_cm / dr, 0.7) * max(np.deg2rad(p.lateral_res_deg) / dth, 0.7)
        _splat(dots, tt, r_dot / dr, (theta_dot + a) / dth, amps * gain)
        pleura = pleura * (1.0 - 0.6 * _sigmoid((half - np.abs(Xs - xc)) / F32(0.1)))
        a_keep *= 1.0 - _sigmoid((half + 0.2 - np.abs(Xs - xc)) / F32(0.1))
    # A-lines: reverberations between probe and pleura at k times the pleural depth, fading
    k = 2
    while k * float(r_p.min()) < depth + 0.2:
        amp = p.pleura_amp * scene.a_line_strength * scene.a_line_decay ** (k - 2)
        spec += (amp * a_keep) * _gauss(R - k * r_p, 0.035 * np.sqrt(k))
        k += 1

    E = e_wall[None] + below * (e_lung - e_wall[None])
    S = s_wall[None] + below * (spec - s_wall[None]) + pleura * _gauss(u, 0.045) + dots

    # ---- ribs: bright convex surface just above the pleura, total shadow below (bat sign)
    if scene.ribs is not None:
        for xr in scene.ribs:
            half_rib = rng.uniform(0.8, 1.1)
            lat = np.maximum(1.0 - ((X - xr) / half_rib) ** 2, 0.0)
            top = pleura_depth(d0 - 0.45 - 0.35 * np.sqrt(lat), th[None, None, :]).astype(F32)
            in_rib = lat > 0
            shadow = np.where(in_rib & (R > top + 0.05), F32(0.02), F32(1.0))
            E *= shadow
            S = S * shadow + 5.0 * _gauss(R - top, 0.05) * in_rib

    # ---- speckle: scatterers x sqrt(E) + specular, through a Gaussian axial x lateral PSF
    sig = (0.0, p.axial_res_cm / dr, np.deg2rad(p.lateral_res_deg) / dth)
    pad = int(np.ceil(np.abs(slide_px).max())) + 4
    lung_sc = _fourier_shift(_cgauss(rng, (n_r, n_a + 2 * pad)), slide_px, axis=1)
    wall_sc = _cgauss(rng, (1, n_r, n_a))  # the chest wall stays fixed to the probe
    sc = wall_sc + below * (lung_sc[:, :, pad:pad + n_a].astype(np.complex64) - wall_sc)
    # a fraction of the scatterers is re-drawn every frame: much more in the lung than the wall
    eps = F32(scene.decorrelation) * (F32(0.05) + F32(0.95) * below)
    sc = np.sqrt(1 - eps) * sc + np.sqrt(eps) * _cgauss(rng, u.shape)
    z = F32(np.sqrt(4 * np.pi * sig[1] * sig[2])) * sc * np.sqrt(E) + S  # unit-RMS speckle
    z = ndimage.gaussian_filter(z.real, sig) + 1j * ndimage.gaussian_filter(z.imag, sig)
    z *= (10 ** (-p.attenuation_db_cm * R / 20)).astype(F32)  # net of TGC
    z += p.noise * _cgauss(rng, u.shape)
    db = 20 * np.log10(np.abs(z) + F32(1e-6)) + F32(scene.gain_db)
    dyn = p.dynamic_range_db
    return np.clip((db - F32(20.0 - dyn)) / F32(dyn), 0.0, 1.0)


def scan_convert(polar: np.ndarray, fan: Fan) -> np.ndarray:
    """Polar ``[T, R, A]`` in [0, 1] -> uint8 Cartesian ``[T, size, size]``, zero outside the fan.

    Bilinear interpolation, with the 4 taps and weights computed once for all frames."""
    n_t, n_r, n_a = polar.shape
    depth, theta = fan.polar_of_pixels()
    inside = ((depth >= 0) & (depth <= fan.depth_cm) & (np.abs(theta) <= fan.half_angle)).ravel()
    ri = np.clip(depth / fan.depth_cm * (n_r - 1), 0, n_r - 1).ravel()[inside]
    ai = np.clip((theta / fan.half_angle + 1) / 2 * (n_a - 1), 0, n_a - 1).ravel()[inside]
    r0 = np.minimum(ri.astype(int), n_r - 2)
    a0 = np.minimum(ai.astype(int), n_a - 2)
    fr, fa = (ri - r0).astype(F32), (ai - a0).astype(F32)
    flat = polar.reshape(n_t, -1)
    i00 = r0 * n_a + a0
    val = ((1 - fr) * ((1 - fa) * flat[:, i00] + fa * flat[:, i00 + 1])
           + fr * ((1 - fa) * flat[:, i00 + n_a] + fa * flat[:, i00 + n_a + 1]))
    out = np.zeros((n_t, fan.size * fan.size), np.uint8)
    out[:, inside] = np.round(val * 255).astype(np.uint8)
    return out.reshape(n_t, fan.size, fan.size)


def render_video(scene: Scene, n_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one video: uint8 ``[n_frames, size, size]``."""
    polar = render_polar(scene, n_frames, size, rng)
    return scan_convert(polar, Fan.of(scene, size))


# --------------------------------------------------------------------------- dataset
def patient_rng(seed: int, patient: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 1, patient]))


def video_rng(seed: int, patient: int, video: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 2, patient, video]))


def simulate_video(seed: int, patient: int, video: int, n_frames: int, size: int
                   ) -> tuple[np.ndarray, Scene]:
    """Frames and scene of video ``video`` of patient ``patient``; independent of the others."""
    label = CLASSES[patient % len(CLASSES)]
    pat = sample_patient(patient_rng(seed, patient), label)
    rng = video_rng(seed, patient, video)
    scene = sample_scene(rng, pat)
    return render_video(scene, n_frames, size, rng), scene


def simulate(
    out_root: str | Path,
    name: str = "synthetic_lus",
    n_patients: int = 48,
    videos_per_patient: int = 2,
    n_frames: int = 16,
    size: int = 128,
    seed: int = 0,
    store_size: int | None = None,
) -> Path:
    """Write a synthetic LUS dataset in the standard format to ``out_root/name``; return its path.

    ``n_patients`` is the total number of patients, assigned to :data:`CLASSES` round-robin
    (so a multiple of 3 gives balanced classes); each has ``videos_per_patient`` videos of
    ``n_frames`` frames of ``size x size`` pixels. ``store_size=None`` stores at ``size``.
    """
    for arg, val, low in (("n_patients", n_patients, len(CLASSES)), ("videos_per_patient",
                          videos_per_patient, 1), ("n_frames", n_frames, 1), ("size", size, 16)):
        if int(val) < low:
            raise ValueError(f"simulate: {arg}={val} must be >= {low}")
    info = {
        "source": SOURCE,
        "version": VERSION,
        "license": LICENSE,
        "spec": (__doc__ or "").split("\n\n")[0],
        "params": {"n_patients": n_patients, "videos_per_patient": videos_per_patient,
                   "n_frames": n_frames, "size": size, "seed": seed},
    }
    writer = DatasetWriter(out_root, name, list(CLASSES), store_size=store_size, info=info)
    try:
        for p in range(n_patients):
            for v in range(videos_per_patient):
                frames, scene = simulate_video(seed, p, v, n_frames, size)
                writer.add_video(
                    f"syn-p{p:03d}-v{v}", f"syn-p{p:03d}", scene.patient.label, frames,
                    source_file=f"simulate(seed={seed}, patient={p}, video={v})",
                    license=LICENSE, severity=round(scene.severity, 4), fps=scene.fps,
                )
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hico simulate``: write the synthetic dataset and print where."""
    ap = argparse.ArgumentParser(prog="hico simulate", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--out", default="data", help="data root; the dataset goes to OUT/NAME")
    ap.add_argument("--name", default="synthetic_lus")
    ap.add_argument("--n-patients", type=int, default=48, help="total, round-robin over classes")
    ap.add_argument("--videos-per-patient", type=int, default=2)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--store-size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    path = simulate(args.out, args.name, args.n_patients, args.videos_per_patient, args.frames,
                    args.size, args.seed, args.store_size)
    log.info(f"wrote {path} ({args.n_patients * args.videos_per_patient} videos) "
             f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # `python -m hico simulate` configures logging itself; this entry does the same
    from hico.log_config import configure_logging

    configure_logging(logging.INFO)
    raise SystemExit(main())


__all__ = ["CLASSES", "Fan", "Patient", "Scene", "main", "render_polar", "render_video",
           "sample_patient", "sample_scene", "scan_convert", "simulate", "simulate_video"]
