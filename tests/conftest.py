"""Shared fixtures: paths to ../shared, tiny datasets in the standard format."""

from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread for every test and every process a test starts (they inherit it). The
# tests' steps are batch-4, 32 px: too small to gain from threads, and on a 2-core runner with two
# xdist workers each worker's OpenMP threads spin against the other's: a Meta-USCL resume test took
# 135 s instead of 79 s beside two busy processes, burning 124 s of CPU instead of 29 s. Set before
# torch is imported (the pool size is read once); workflow jobs still get OMP_NUM_THREADS={threads}.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread policy)
import pytest  # noqa: E402

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


# The longest files first: with `--dist loadfile --no-loadscope-reorder` (the Makefile's) xdist
# hands files to its two workers in this order, each worker taking the next file as it frees up
# (greedy, longest first). Without it a long file collected late ran alone at the end: the lung
# run (~110 s, late in the alphabet, and xdist's default order is by number of tests) while the
# other worker idled. Ranked by each file's wall time in a full run on the 2-core CI kind of
# machine (2026-12); the lung run (2 cores) and the SLURM run (mostly waiting) go first, side by
# side. A file not named here keeps its place after these.
RUN_FIRST = ("test_lung.py", "test_cluster.py", "test_run_folder.py", "test_workflow.py", "test_bench_scripts.py",
             "test_train.py", "test_methods.py", "test_train_meta.py", "test_warm.py", "test_workflow_config.py",
             "test_features.py", "test_startup.py", "test_plots.py", "test_sources.py", "test_trackers.py")


def pytest_collection_modifyitems(config, items):
    missing = [name for name in RUN_FIRST if not (REPO / "tests" / name).exists()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py RUN_FIRST names {missing}, which are not in tests/: "
                                "rename or remove them there")
    rank = {name: i for i, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(RUN_FIRST)))  # stable: the rest keep their order
