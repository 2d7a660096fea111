"""CLUST: 2D liver ultrasound sequences of the MICCAI CLUST challenge (US-4's liver part).

Source (restricted)
    https://clust.ethz.ch/data.html: a username and password are given on request from an
    institutional e-mail, and the data may be used only for the challenge and not be
    redistributed. Point ``--raw`` at the 2D data: one folder per sequence named
    ``<CENTER>-<nn>[-<k>]`` (CIL, ETH, ICR, MED, SMT) with its PNG frames, directly or in a
    ``Data/`` subfolder; annotation files and 3D (.mha) volumes are ignored. For the renamed
    ``Rb1..Rb5`` folders of the USCL release, use the ``us4`` source with ``label_map=clust``.
Licence
    CLUST challenge terms: challenge use only, no redistribution.
Citation
    De Luca V., Benz T., Kondo S., et al. The 2014 liver ultrasound tracking benchmark.
    Physics in Medicine and Biology 60(14):5571-5599, 2015. doi:10.1088/0031-9155/60/14/5571
    (and De Luca et al., Medical Physics 45(11):4986-5003, 2018, for the 2015 edition).
Label map
    The acquisition centre from the folder name: CIL (0), ETH (1), ICR (2), MED (3), SMT (4).
    USCL's five CLUST classes ``Rb1..Rb5`` are presumably these groups (UNVERIFIED).
Sampling
    Frame rates differ per centre and are not in the folder: every frame is read in order up
    to ``max_frames`` (30); with ``source_fps`` set, ``fps`` resampling applies.
Grouping
    ``patient_id`` = ``<CENTER>-<nn>`` (the volunteer); its sequences ``-1``, ``-2`` share a fold.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hico.data.sources._common import (
    DataNotFoundError,
    Listing,
    RestrictedSource,
    file_item,
    find_frame_folders,
    unique_ids,
)

_SEQ = re.compile(r"^(CIL|ETH|ICR|MED|SMT)-(\d+)(?:-(\d+))?", re.IGNORECASE)


class Clust(RestrictedSource):
    name = "clust"
    classes = ["CIL", "ETH", "ICR", "MED", "SMT"]
    enabled_by_default = False
    license = "CLUST challenge terms (challenge use only, no redistribution)"
    citation = (
        "De Luca V. et al. The 2014 liver ultrasound tracking benchmark. Phys Med Biol 60(14):5571-5599, "
        "2015. doi:10.1088/0031-9155/60/14/5571"
    )
    homepage = "https://clust.ethz.ch/data.html"
    options = {"source_fps": None}
    how_to_get = (
        "request a login at https://clust.ethz.ch/data.html (institutional e-mail; challenge use only)"
    )
    expect = "the 2D sequences, one folder per sequence named <CENTER>-<nn>[-<k>] holding its PNG frames (or Data/ with them)"

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        self.user_folder(raw)
        keep, skipped = [], []
        for folder in find_frame_folders(raw):
            seq = folder.parent if folder.name.lower() == "data" else folder
            m = _SEQ.match(seq.name)
            if not m:
                rel = folder.relative_to(raw).as_posix()
                skipped.append({"source_file": rel, "reason": "not a <CENTER>-<nn> sequence folder"})
                continue
            keep.append((folder, seq.name, m.group(1).upper(), f"{m.group(1).upper()}-{m.group(2)}"))
        if not keep:
            raise DataNotFoundError(f"dataset 'clust': no sequence folder under {raw}. Expected {self.expect}.")
        ids = unique_ids(seq for _, seq, _, _ in keep)
        items = [
            file_item(vid, center, folder, raw, cfg, patient_id=patient, license=self.license)
            for vid, (folder, _, center, patient) in zip(ids, keep)
        ]
        return Listing(items, skipped=skipped, info={"version": f"local folder {raw}"})


SOURCE = Clust()
