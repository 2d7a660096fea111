"""The synthetic LUS simulator: determinism, format, geometry, motion and the class signs."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from hico.data import synthetic as syn
from hico.data.standard import load_dataset

SIZE = 96  # large enough to resolve A-lines, small enough to be fast


def scene_of(label: str, seed: int = 0, **changes) -> syn.Scene:
    patient = replace(syn.sample_patient(np.random.default_rng(seed), label), slide_cm=0.0)
    scene = syn.sample_scene(np.random.default_rng(seed + 1), patient)
    return replace(scene, **changes)


def render(scene: syn.Scene, n_frames: int = 2, seed: int = 0) -> tuple[np.ndarray, syn.Fan]:
    frames = syn.render_video(scene, n_frames, SIZE, np.random.default_rng(seed))
    return frames.astype(np.float32), syn.Fan.of(scene, SIZE)


def band_mean(frames, fan, depth_range, lateral=None, x_cm=None):
    """Mean of all frames over pixels in a depth range (cm below the skin) and lateral set."""
    depth, theta = fan.polar_of_pixels()
    sel = fan.mask() & (depth >= depth_range[0]) & (depth < depth_range[1])
    if lateral is not None:
        sel &= lateral(theta if x_cm is None else theta * x_cm)
    assert sel.sum() > 5, "test selects too few pixels"
    return float(frames[:, sel].mean())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return syn.simulate(root, n_patients=6, videos_per_patient=2, n_frames=3, size=48, seed=7)


def test_dataset_format_balance_and_frames(dataset):
    ds = load_dataset(dataset)
    m = ds.manifest
    assert ds.classes == list(syn.CLASSES)
    assert len(m) == 12 and m["patient_id"].nunique() == 6
    assert m["label_name"].value_counts().to_dict() == {c: 4 for c in syn.CLASSES}
    assert (m.groupby("patient_id")["label"].nunique() == 1).all()  # a patient has one diagnosis
    assert {"severity", "fps"} <= set(m.columns)
    assert m["severity"].between(0, 1).all() and (m["fps"] > 0).all()
    for vid in m["video_id"]:
        arr = ds.frames(vid)
        assert arr.shape == (3, 48, 48) and arr.dtype == np.uint8


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    again = syn.simulate(tmp_path, n_patients=6, videos_per_patient=2, n_frames=3, size=48, seed=7)
    other = syn.simulate(tmp_path, "other", n_patients=6, videos_per_patient=2, n_frames=3, size=48,
                         seed=8)
    a, b, c = load_dataset(dataset), load_dataset(again), load_dataset(other)
    for vid in a.manifest["video_id"]:
        assert np.array_equal(a.frames(vid), b.frames(vid))
        assert not np.array_equal(a.frames(vid), c.frames(vid))
    assert a.manifest.equals(b.manifest)


def test_store_size_and_argument_checks(tmp_path):
    out = syn.simulate(tmp_path, n_patients=3, videos_per_patient=1, n_frames=2, size=48,
                       store_size=32)
    assert load_dataset(out).frames("syn-p000-v0").shape == (2, 32, 32)
    with pytest.raises(ValueError, match="n_patients"):
        syn.simulate(tmp_path, n_patients=2)


def test_cli_main_writes_dataset(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hico")
    assert syn.main(["--out", str(tmp_path), "--n-patients", "3", "--videos-per-patient", "1",
                     "--frames", "2", "--size", "32", "--seed", "1"]) == 0
    assert len(load_dataset(tmp_path / "synthetic_lus")) == 3
    assert "wrote" in caplog.text


@pytest.mark.parametrize("label", syn.CLASSES)
def test_zero_outside_the_fan_and_textured_inside(label):
    frames, scene = syn.simulate_video(3, syn.CLASSES.index(label), 0, 2, SIZE)
    mask = syn.Fan.of(scene, SIZE).mask()
    assert 0.3 < mask.mean() < 0.95  # a sector, not the whole square
    assert (frames[:, ~mask] == 0).all()
    inside = frames[:, mask].astype(np.float32)
    assert inside.mean() > 20 and inside.std() > 15  # speckle, not a flat fill


@pytest.mark.parametrize("patient", [0, 1, 2])  # one per class
def test_lung_sliding_moves_the_lung_more_than_the_chest_wall(patient):
    frames, scene = syn.simulate_video(0, patient, 0, 6, SIZE)
    fan = syn.Fan.of(scene, SIZE)
    f = frames.astype(np.float32)
    change = np.abs(f[1:] - f[:-1]).mean(0)  # mean absolute frame-to-frame change
    depth, _ = fan.polar_of_pixels()
    d0 = scene.patient.chest_wall_cm
    wall = fan.mask() & (depth > 0.2) & (depth < 0.8 * d0)
    lung = fan.mask() & (depth > d0 + 0.3) & (depth < d0 + 3.0)
    assert 0.5 < change[lung].mean() < 40  # moving, but the same scene frame to frame
    assert change[wall].mean() < 10  # the chest wall is fixed to the probe
    relative = lambda sel: change[sel].mean() / f[:, sel].mean()  # noqa: E731
    assert relative(lung) > 1.3 * relative(wall)


def test_regular_has_a_lines_at_multiples_of_the_pleural_depth():
    scene = scene_of("regular", ribs=None, b_lines=(), a_line_strength=0.5, a_line_decay=0.6,
                     pleura_tilt_cm=0.0)
    frames, fan = render(scene, n_frames=4)
    d = scene.patient.chest_wall_cm  # pleura depth on the central beam
    central = lambda th: np.abs(th) < 0.12  # noqa: E731
    at = lambda k: band_mean(frames, fan, (k * d - 0.12, k * d + 0.12), central)  # noqa: E731
    assert at(1) > at(1.5) + 40  # the pleural line
    assert at(2) > at(1.5) + 15 and at(2) > at(2.5) + 15  # first A-line
    if 3 * d < scene.depth_cm - 0.3:
        assert at(3) > at(2.5) + 5 and at(3) > at(3.5) + 5  # second A-line
    assert at(2) < at(1)  # reverberations fade


def test_b_line_columns_are_brighter_below_the_pleura():
    scene = scene_of("b_lines", ribs=None, b_lines=((0.0, 0.25, 0.9),), pleura_tilt_cm=0.0)
    frames, fan = render(scene)
    d, arc = scene.patient.chest_wall_cm, scene.patient.probe_radius_cm + scene.patient.chest_wall_cm
    below = (d + 0.5, scene.depth_cm - 0.5)
    on = band_mean(frames, fan, below, lambda x: np.abs(x) < 0.2, x_cm=arc)
    off = band_mean(frames, fan, below, lambda x: np.abs(x) > 1.2, x_cm=arc)
    assert on > off + 30
    above_on = band_mean(frames, fan, (0.3, d - 0.3), lambda x: np.abs(x) < 0.2, x_cm=arc)
    above_off = band_mean(frames, fan, (0.3, d - 0.3), lambda x: np.abs(x) > 1.2, x_cm=arc)
    assert abs(above_on - above_off) < 20  # the comet tail starts at the pleura


def test_consolidation_is_tissue_like_under_the_pleura():
    scene = scene_of("consolidation", ribs=None, b_lines=(), consolidation=(0.0, 1.2, 2.5),
                     pleura_tilt_cm=0.0)
    frames, fan = render(scene)
    d, arc = scene.patient.chest_wall_cm, scene.patient.probe_radius_cm + scene.patient.chest_wall_cm
    under = (d + 0.5, d + 2.0)
    inside = band_mean(frames, fan, under, lambda x: np.abs(x) < 0.6, x_cm=arc)
    outside = band_mean(frames, fan, under, lambda x: np.abs(x) > 1.8, x_cm=arc)
    assert inside > outside + 25


def test_severity_scales_the_b_lines():
    rng = np.random.default_rng(0)
    counts = {}
    for sev in (0.0, 1.0):
        patient = replace(syn.sample_patient(rng, "b_lines"), severity=sev)
        scenes = [syn.sample_scene(np.random.default_rng(i), patient) for i in range(20)]
        counts[sev] = np.mean([sum(w for _, w, _ in s.b_lines) for s in scenes])
    assert counts[1.0] > 3 * counts[0.0]
