"""The leakage guard: no source video may be both pretrained on and tested on.

Videos are compared by the sha256 of their source file (``source_sha256`` in each manifest),
so the same clip reached through two datasets (e.g. POCUS and a mirror of it) is caught too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hico.data.standard import load_dataset
from hico.errors import HicoError
from hico.io import atomic_write_json

log = logging.getLogger(__name__)


class LeakageError(HicoError, RuntimeError):
    pass


def check_overlap(pretrain_dirs: list[str | Path], eval_dir: str | Path, allow_overlap: bool = False) -> dict:
    """Raise :class:`LeakageError` if any evaluation video shares a source sha256 with a
    pretraining video (unless ``allow_overlap``); returns a summary either way."""
    test = load_dataset(eval_dir, check_frames=False)
    test_hashes = {h: v for h, v in zip(test.manifest["source_sha256"], test.manifest["video_id"]) if h}
    summary = {"eval": str(eval_dir), "pretrain": [str(d) for d in pretrain_dirs], "overlaps": [],
               "eval_videos_without_hash": int((test.manifest["source_sha256"] == "").sum())}
    for d in pretrain_dirs:
        pool = load_dataset(d, check_frames=False)
        for h, vid in zip(pool.manifest["source_sha256"], pool.manifest["video_id"]):
            if h and h in test_hashes:
                summary["overlaps"].append({"pretrain_dataset": pool.name, "pretrain_video": vid,
                                            "eval_video": test_hashes[h], "sha256": h})
    summary["n_overlaps"] = len(summary["overlaps"])
    if summary["overlaps"] and not allow_overlap:
        shown = "; ".join(f"{o['pretrain_dataset']}/{o['pretrain_video']} = {test.name}/{o['eval_video']}"
                          for o in summary["overlaps"][:5])
        raise LeakageError(
            f"{len(summary['overlaps'])} evaluation videos of {eval_dir} are also in the pretraining pool "
            f"({shown}{' ...' if len(summary['overlaps']) > 5 else ''}). Remove the evaluation dataset from "
            "the pool in the config (pretrain.pools), or set `allow_overlap: true` to accept the leakage."
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="hico check-overlap", description=__doc__.splitlines()[0])
    p.add_argument("--pretrain", nargs="+", required=True, help="pretraining dataset folders")
    p.add_argument("--eval", required=True, help="evaluation dataset folder")
    p.add_argument("--allow-overlap", action="store_true")
    p.add_argument("--out", help="write the summary JSON here when the check passes")
    a = p.parse_args(argv)
    summary = check_overlap(a.pretrain, a.eval, a.allow_overlap)
    if a.out:
        atomic_write_json(Path(a.out), summary)
    log.info(f"[check-overlap] {a.eval}: {summary['n_overlaps']} overlapping videos")
    return 0
