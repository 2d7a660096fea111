"""US-4: the paper's pretraining set (USCL), 1,051 videos / 23,231 frames, from the user's disk.

Source (restricted)
    Not public. Of its four parts, Butterfly is the ``butterfly_uscl`` source, CLUST needs the
    challenge licence (``clust`` source), and Liver Fibrosis (296 videos) and COVID19-LUSMS
    (670 videos) were collected by the USCL authors and never released: ask them
    (Chen Y., Zhang C., Liu L. -- zhangchunhui@iie.ac.cn, liuli@cuhk.edu.cn; USCL GitHub
    issue #4). Point ``--raw`` at the folder as released: one folder per video, named
    ``<Cls><rest>`` and holding its frames (``US-4/<part>/<Cls>-<name>/<..>_frame<N>.jpg``),
    at any depth; a video file with such a name is read too.
Licence
    As granted by the authors (not redistributable).
Citation
    Chen Y., Zhang C., Liu L., et al. USCL: Pretraining Deep Ultrasound Image Diagnosis Model
    through Video Contrastive Representation Learning. MICCAI 2021.
Label map (as released in HiCo ``dataset_wrapper_Ultrasound_Video_Mixup.py``)
    First 3 characters of the video folder name, option ``label_map``:
    ``us4`` (default): Rb1..Rb5 -> 0..4 (CLUST), F0_..F4_ -> 5..9 (Liver Fibrosis),
    Reg/Ali -> 10 (lung_regular), Cov/Bli/Ple/Oth -> 11 (lung_abnormal);
    ``clust``: Rb1..Rb5 -> 0..4; ``liver``: F0_..F4_ -> 0..4; ``butterfly``: Reg 0, Cov 1;
    ``covid19_lusms``: Ali 0, Bli 1, Ple 2, Oth 3. The 3 characters are kept as column
    ``prefix``; folders outside the map are skipped (reported).
Sampling
    The frames were sampled by the authors: all are kept (``max_frames`` None); with
    ``source_fps`` set, ``fps`` resampling applies. Video files: ``fps`` / ``max_frames``.
Grouping
    ``patient_id`` = the video folder (no patient ids are released).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hico.data.download import iter_files
from hico.data.sources._common import (
    DataNotFoundError,
    Listing,
    RestrictedSource,
    SourceError,
    file_item,
    find_frame_folders,
    unique_ids,
)
from hico.data.video import is_video

_US4 = {"Rb1": 0, "Rb2": 1, "Rb3": 2, "Rb4": 3, "Rb5": 4, "F0_": 5, "F1_": 6, "F2_": 7, "F3_": 8, "F4_": 9,
        "Reg": 10, "Cov": 11, "Ali": 10, "Bli": 11, "Ple": 11, "Oth": 11}
LABEL_MAPS: dict[str, tuple[list[str], dict[str, int]]] = {
    "us4": (["Rb1", "Rb2", "Rb3", "Rb4", "Rb5", "F0", "F1", "F2", "F3", "F4", "lung_regular", "lung_abnormal"], _US4),
    "clust": (["Rb1", "Rb2", "Rb3", "Rb4", "Rb5"], {"Rb1": 0, "Rb2": 1, "Rb3": 2, "Rb4": 3, "Rb5": 4}),
    "liver": (["F0", "F1", "F2", "F3", "F4"], {"F0_": 0, "F1_": 1, "F2_": 2, "F3_": 3, "F4_": 4}),
    "butterfly": (["regular", "covid"], {"Reg": 0, "Cov": 1}),
    "covid19_lusms": (["A-lines", "B-lines", "pleural", "other"], {"Ali": 0, "Bli": 1, "Ple": 2, "Oth": 3}),
}


class US4(RestrictedSource):
    name = "us4"
    classes = LABEL_MAPS["us4"][0]
    enabled_by_default = False
    license = "as granted by the USCL authors (not redistributable)"
    citation = (
        "Chen Y. et al. USCL: Pretraining Deep Ultrasound Image Diagnosis Model through Video "
        "Contrastive Representation Learning. MICCAI 2021."
    )
    homepage = "https://github.com/983632847/USCL"
    options = {"label_map": "us4", "max_frames": None, "source_fps": None}
    how_to_get = (
        "US-4 is not public. Butterfly: `hico download butterfly_uscl`; CLUST: https://clust.ethz.ch "
        "(licence); Liver Fibrosis and COVID19-LUSMS: ask the USCL authors (zhangchunhui@iie.ac.cn, "
        "liuli@cuhk.edu.cn; https://github.com/983632847/USCL/issues/4)."
    )
    expect = "one folder per video named <Cls>... (Rb1..Rb5, F0_..F4_, Reg, Cov, Ali, Bli, Ple, Oth) holding its frames"

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        self.user_folder(raw)
        if cfg["label_map"] not in LABEL_MAPS:
            raise SourceError(f"us4: label_map {cfg['label_map']!r} is not one of {sorted(LABEL_MAPS)}")
        classes, mapping = LABEL_MAPS[cfg["label_map"]]
        candidates = find_frame_folders(raw) + [p for p in iter_files(raw) if is_video(p)]
        keep, skipped = [], []
        for p in sorted(candidates):
            prefix = p.name[:3]
            rel = p.relative_to(raw).as_posix()
            if prefix in mapping:
                keep.append((p, classes[mapping[prefix]], prefix))
            else:
                skipped.append({"source_file": rel, "reason": f"prefix {prefix!r} not in label map {cfg['label_map']!r}"})
        if not keep:
            raise DataNotFoundError(
                f"dataset 'us4': no video folder under {raw} starts with a known prefix "
                f"({', '.join(mapping)}). Expected {self.expect}."
            )
        ids = unique_ids(p.stem if p.is_file() else p.name for p, _, _ in keep)
        items = [
            file_item(vid, label, p, raw, cfg, license=self.license, extra={"prefix": prefix})
            for vid, (p, label, prefix) in zip(ids, keep)
        ]
        return Listing(
            items, classes=classes, skipped=skipped,
            info={"version": f"local folder {raw}", "label_map": cfg["label_map"]},
            expected={"videos": 1051, "frames": 23231} if cfg["label_map"] == "us4" else None,
        )


SOURCE = US4()
