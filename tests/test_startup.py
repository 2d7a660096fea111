"""Start-up (issue 15 item 2): a command imports only what it needs. The report commands, the
folds, the method list and the frozen-feature evaluations load no torch and no timm."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_evaluate import write_tiny_dataset, write_tiny_encoder

HEAVY = ("torch", "timm")


def loaded_by(args: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The ``heavy`` modules ``python -m hico <args>`` has imported when it ends (its own process)."""
    code = "\n".join([
        "import sys",
        "from hico.cli import main",
        "try:",
        "    rc = main(sys.argv[1:])",
        "except SystemExit as e:",
        "    rc = e.code",
        f"print('HEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules), 'RC=' + str(rc))",
    ])
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    line = next(x for x in r.stdout.splitlines() if x.startswith("HEAVY="))
    heavy, rc = line.split(" RC=")
    assert rc in ("0", "None"), r.stdout + r.stderr
    return [m for m in heavy[len("HEAVY="):].split(",") if m]


@pytest.mark.parametrize("command", ["aggregate", "folds", "plot", "methods", "evaluate", "features"])
def test_help_imports_no_torch_or_timm(command):
    assert loaded_by([command, "--help"]) == []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("startup")
    data = write_tiny_dataset(root, per_class=4, frames=2)
    enc = write_tiny_encoder(root / "run" / "encoder.pt")
    from hico.evaluation.features import write_features

    feats, _ = write_features(root / "frozen.npz", enc, data, image_size=32, max_frames=2, device="cpu")
    return {"root": root, "data": data, "encoder": enc, "features": feats}


def test_real_light_commands_import_no_torch_or_timm(tiny, tmp_path):
    data, feats = str(tiny["data"]), str(tiny["features"])
    assert loaded_by(["folds", data, "--k", "2", "--out", str(tmp_path / "folds.csv")]) == []
    assert loaded_by(["methods"]) == []
    assert loaded_by(["plot", "--figures", "tsne", "--out-dir", str(tmp_path), "--data", data,
                      "--features", f"a={feats}"]) == []
    assert (tmp_path / "tsne.png").exists()


def test_evaluation_from_a_feature_file_imports_no_torch_or_timm(tiny, tmp_path):
    out = tmp_path / "m.json"
    args = ["evaluate", "--encoder", str(tiny["encoder"]), "--data", str(tiny["data"]), "--folds",
            str(tiny["data"] / "folds.csv"), "--fold", "0", "--protocol", "linear_probe", "--image-size", "32",
            "--max-frames", "2", "--features", str(tiny["features"]), "--out", str(out)]
    assert loaded_by(args) == []
    assert json.loads(out.read_text())["frame"]["n"] > 0
    # without the file the encoder runs here: torch and timm are needed, and loaded
    assert loaded_by(args[:-4] + ["--out", str(out)]) == ["torch", "timm"]


def test_feature_extraction_imports_no_sklearn_or_scipy(tiny, tmp_path):
    """A features job (hundreds in the lung run) reads folds but never splits them: sklearn and
    scipy (about 1.5 s of start-up) stay unloaded."""
    args = ["features", "--encoder", str(tiny["encoder"]), "--data", str(tiny["data"]), "--image-size", "32",
            "--max-frames", "2", "--device", "cpu", "--out", str(tmp_path / "f.npz")]
    assert loaded_by(args, heavy=("sklearn", "scipy", "torch")) == ["torch"]
    assert (tmp_path / "f.npz").exists()
