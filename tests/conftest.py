"""Shared fixtures: paths to ../shared, tiny datasets in the standard format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared; the test is skipped when it is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is only beside the project in CI and dev)")
    return path


def write_pattern_dataset(root: Path, name: str = "toy", n_patients: int = 9, videos: int = 2,
                          frames: int = 4, size: int = 40, seed: int = 0) -> Path:
    """A small dataset whose classes differ by a bright band's position (learnable, fast)."""
    from hico.data.standard import DatasetWriter

    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    with DatasetWriter(root, name, classes, store_size=None) as w:
        for p in range(n_patients):
            label = p % 3
            for v in range(videos):
                arr = rng.integers(0, 60, (frames, size, size), dtype=np.uint8)
                band = slice(label * size // 3, (label + 1) * size // 3)
                arr[:, band, :] += 150
                w.add_video(f"{name}-p{p}-v{v}", f"p{p}", classes[label], arr,
                            source_sha256=f"{name}-{seed}-{p}-{v}")
    return root / name


@pytest.fixture
def toy_dataset(tmp_path) -> Path:
    return write_pattern_dataset(tmp_path)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny convolutions are many times slower with intra-op threads fighting on a busy 2-core
    box: a module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
