"""``python -m hico export``: plain timm loads the exported encoder and gives its features; the
model card states recipe, data licences, seed, compute and scores; ``--push`` speaks the Hub's
HTTP API (mocked at the transport, nothing leaves the machine)."""

from __future__ import annotations

import base64
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml

from hico.cli import main
from hico.config import resolve_pretrain_config
from hico.data.standard import DatasetWriter
from hico.export import ExportError, export_encoder, matching_readout, push_export, timm_state_dict
from hico.layout import EXPORT_CARD, EXPORT_CONFIG, EXPORT_FILES, EXPORT_WEIGHTS
from hico.model_card import licence_id, licence_terms
from hico.models.backbone import Backbone, save_encoder
from hico.provenance import provenance

IMAGE_SIZE = 64
NC_ND = "CC BY-NC-ND 4.0 (Creative Commons Attribution-NonCommercial-NoDerivatives 4.0)"


def randomised(backbone: Backbone, seed: int = 0) -> Backbone:
    """Every tensor random (BatchNorm statistics too), so a wrong key mapping cannot go unseen:
    at timm's init all BatchNorm layers of a width are alike."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in backbone.state_dict().items():
        if not v.is_floating_point():
            state[k] = torch.randint(1, 1000, v.shape, generator=gen, dtype=v.dtype)
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=gen) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=gen) * 0.1
    backbone.load_state_dict(state)
    return backbone.eval()


def _dataset(root: Path, name: str, licences: list[str], info_licence: str) -> Path:
    with DatasetWriter(root, name, ["a", "b"], store_size=None,
                       info={"license": info_licence, "citation": f"{name} et al. 2024", "homepage": f"https://{name}.example"}) as w:
        for i, lic in enumerate(licences):
            w.add_video(f"{name}-v{i}", f"p{i}", "ab"[i % 2], np.full((2, 32, 32), 10 * i, np.uint8), license=lic)
    return root / name


def write_run(run: Path, datasets: list[Path], seed: int = 3) -> Path:
    """A pretraining run folder as hico.train leaves it: encoder.pt, config.json, train_log.csv."""
    cfg = resolve_pretrain_config("simclr", {"image_size": IMAGE_SIZE, "seed": seed, "augment": {"mean": 0.4, "std": 0.3}})
    run.mkdir(parents=True)
    info = {"run_name": "simclr_test", "method": "simclr", "seed": seed, "datasets": [str(d) for d in datasets],
            "labelled_fraction": 0.0, "config": cfg.to_dict(), "world_size": 1,
            **provenance(cfg.to_dict(), seed, "cpu")}
    (run / "config.json").write_text(json.dumps(info))
    with (run / "train_log.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", "step", "loss", "val_loss", "epoch_time_s", "images_per_s", "peak_mem_mb"])
        w.writeheader()
        w.writerow({"epoch": 1, "step": 10, "loss": 5.0, "val_loss": 5.1, "epoch_time_s": 1800, "images_per_s": 40, "peak_mem_mb": ""})
        w.writerow({"epoch": 2, "step": 20, "loss": 4.0, "val_loss": 4.2, "epoch_time_s": 1800, "images_per_s": 60, "peak_mem_mb": ""})
    torch.manual_seed(0)
    save_encoder(randomised(Backbone("resnet18")), run / "encoder.pt",
                 {"method": "simclr_test", "base_method": "simclr", "epoch": 2, "export": "best", "seed": seed,
                  "config_hash": info["config_hash"], "git_sha": info["git_sha"]})
    return run / "encoder.pt"


def write_tables(folder: Path) -> Path:
    folder.mkdir()
    cols = ["method", "dataset", "protocol", "selection", "level", "n_folds", "n_seeds", "accuracy_mean",
            "accuracy_std", "macro_f1_mean", "macro_f1_std", "optimistic"]
    rows = [["simclr_test", "lungs", "linear_probe", "selected", "frame", 5, 3, 0.8123, 0.0456, 0.7011, 0.05, "False"],
            ["simclr_test", "lungs", "finetune_released", "paper_protocol", "frame", 5, 3, 0.9999, 0.0, 0.99, 0.0, "True"],
            ["hico", "lungs", "linear_probe", "selected", "frame", 5, 3, 0.6543, 0.01, 0.6, 0.01, "False"]]
    with (folder / "main_comparison.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(rows)
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    lungs = _dataset(root / "data", "lungs", [NC_ND] * 3, NC_ND)
    pocus = _dataset(root / "data", "pocus_like", ["CC BY 4.0", "CC BY-NC 4.0", "CC BY-NC -SA 4.0", "CC BY 4.0"],
                     "per file (CC BY / CC BY-NC / CC BY-NC-SA; see the manifest's license column)")
    encoder = write_run(root / "run", [lungs, pocus])
    out = export_encoder(encoder, root / "out", tables=write_tables(root / "tables"))
    return {"root": root, "encoder": encoder, "out": out}


def _our_features(encoder: Path, x: torch.Tensor) -> torch.Tensor:
    from hico.models.backbone import load_encoder

    with torch.no_grad():
        return load_encoder(encoder).eval()(x)


def test_export_writes_the_three_files(exported):
    assert sorted(p.name for p in exported["out"].iterdir()) == sorted(EXPORT_FILES)


@pytest.mark.parametrize("how", ["local-dir", "file overlay", "config overlay"])
def test_plain_timm_loads_the_export_and_gives_the_encoders_features(exported, how):
    out = exported["out"]
    config = json.loads((out / EXPORT_CONFIG).read_text())
    if how == "local-dir":
        model = timm.create_model(f"local-dir:{out}", pretrained=True)
    elif how == "file overlay":
        model = timm.create_model("resnet18", pretrained=True,
                                  pretrained_cfg_overlay=dict(file=str(out / EXPORT_WEIGHTS), num_classes=0))
    else:
        model = timm.create_model(config["architecture"], pretrained=True,
                                  pretrained_cfg_overlay={**config["pretrained_cfg"], "file": str(out / EXPORT_WEIGHTS)})
    x = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = model.eval()(x)
    ours = _our_features(exported["encoder"], x)
    assert theirs.shape == ours.shape == (3, 512)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)
    assert float(ours.std()) > 1e-3  # the random weights give a non-trivial feature


def test_config_carries_the_training_preprocessing(exported):
    config = json.loads((exported["out"] / EXPORT_CONFIG).read_text())
    model = timm.create_model(f"local-dir:{exported['out']}", pretrained=True)
    data = timm.data.resolve_data_config({}, model=model)
    # the run trained with augment mean 0.4, std 0.3 on grayscale frames replicated to 3 channels
    assert tuple(data["input_size"]) == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert tuple(data["mean"]) == pytest.approx((0.4,) * 3) and tuple(data["std"]) == pytest.approx((0.3,) * 3)
    assert data["crop_pct"] == 1.0 and data["crop_mode"] == "squash" and data["interpolation"] == "bilinear"
    assert config["num_classes"] == 0 and model.num_classes == 0
    hico = config["hico"]
    assert hico["feature_readout"] == "pooled" and hico["untrained_keys"] == []
    assert hico["seed"] == 3 and hico["run_name"] == "simclr_test" and hico["base_method"] == "simclr"
    assert hico["unknown_licences"] == []
    assert hico["data_licences"] == ["non-commercial", "no-derivatives", "share-alike", "attribution"]
    assert config["pretrained_cfg"]["license"] == "other"  # three CC licences: no single hub id


def test_model_card_states_recipe_data_licences_compute_and_scores(exported):
    card = (exported["out"] / EXPORT_CARD).read_text()
    run_config = json.loads((exported["encoder"].parent / "config.json").read_text())
    front = card.split("---")[1]
    assert "library_name: timm" in front and "license: other" in front
    assert f"`{run_config['config_hash']}`" in card and "edited after training" not in card
    assert "Chen" in card  # SimCLR's citation from the recipe
    assert "| `lungs` | 3 | " + NC_ND + " (3) |" in card
    assert "CC BY 4.0 (2); CC BY-NC 4.0 (1); CC BY-NC-SA 4.0 (1)" in card
    assert "**Non-commercial use only:** `lungs`, `pocus_like`" in card
    assert "**No derivatives:** `lungs`" in card and "**Share-alike:** `pocus_like`" in card
    assert "Not for clinical use" in card
    assert "- Seed 3." in card
    assert "2 epochs, 20 steps on 1 x cpu" in card and "Training time 1.00 h" in card and "50.0 images/s" in card
    assert "| lungs | linear_probe | selected | frame | 0.812 ± 0.046 | 0.701 ± 0.050 | 5 x 3 |" in card
    assert "0.654" not in card  # another method's row
    assert "0.9999" not in card and "1.000" not in card  # the optimistic paper_protocol row is left out
    assert "`(x - 0.4) / 0.3`" in card


def test_tampered_recipe_is_flagged_in_the_card(tmp_path):
    encoder = write_run(tmp_path / "run", [])
    cfg_path = encoder.parent / "config.json"
    info = json.loads(cfg_path.read_text())
    info["config"]["epochs"] = 999
    cfg_path.write_text(json.dumps(info))
    card = (export_encoder(encoder, tmp_path / "out") / EXPORT_CARD).read_text()
    assert "edited after training" in card


def test_export_replaces_a_previous_export_but_nothing_else(exported, tmp_path):
    before = (exported["out"] / EXPORT_WEIGHTS).read_bytes()
    export_encoder(exported["encoder"], exported["out"], tables=exported["root"] / "tables")
    assert (exported["out"] / EXPORT_WEIGHTS).read_bytes() == before  # deterministic, replaced in place
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="notes.txt"):
        export_encoder(exported["encoder"], foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_unknown_licence_is_stated_and_blocks_the_push(tmp_path):
    encoder = write_run(tmp_path / "run", [tmp_path / "gone" / "lungs"])
    out = export_encoder(encoder, tmp_path / "out")
    card = (out / EXPORT_CARD).read_text()
    assert "**UNKNOWN:" in card and "**Unknown licence:** `lungs`" in card
    assert json.loads((out / EXPORT_CONFIG).read_text())["hico"]["unknown_licences"] == ["lungs"]
    with pytest.raises(ExportError, match="unknown"):
        push_export(out, "user/repo")
    # --data-root finds a dataset that moved
    _dataset(tmp_path / "moved", "lungs", [NC_ND], NC_ND)
    out2 = export_encoder(encoder, tmp_path / "out2", data_root=tmp_path / "moved")
    assert json.loads((out2 / EXPORT_CONFIG).read_text())["hico"]["unknown_licences"] == []


def test_control_card_says_not_pretrained(tmp_path):
    from hico.train import export_initial_encoder

    encoder = export_initial_encoder("random_init", tmp_path / "run", [{"image_size": IMAGE_SIZE}])
    out = export_encoder(encoder, tmp_path / "out")
    card = (out / EXPORT_CARD).read_text()
    assert "not pretrained (a control)" in card and "None: this encoder is a control" in card
    assert "license: mit" in card and "Sampler" not in card


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.pt", "does not exist"),
    (lambda d: (d / "junk.pt").write_bytes(b"not a checkpoint") and d / "junk.pt", "not a readable encoder"),
    (lambda d: torch.save({"x": 1}, d / "other.pt") or d / "other.pt", "not an encoder written by hico"),
])
def test_bad_encoder_is_a_user_error(tmp_path, make, message):
    with pytest.raises(ExportError, match=message):
        export_encoder(make(tmp_path), tmp_path / "out")


def test_encoder_without_its_run_config_is_a_user_error(tmp_path):
    save_encoder(Backbone("resnet18"), tmp_path / "encoder.pt", {})
    with pytest.raises(ExportError, match="config.json does not exist"):
        export_encoder(tmp_path / "encoder.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_export(exported, tmp_path, capsys):
    assert main(["export", str(exported["encoder"]), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / EXPORT_CARD).is_file()
    capsys.readouterr()  # the successful export's status lines (stderr) are not the error's
    assert main(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hico export: error:")


@pytest.mark.parametrize("text, hub_id, terms", [
    (NC_ND, "cc-by-nc-nd-4.0", ["non-commercial", "no-derivatives", "attribution"]),
    ("CC BY-NC -SA 3.0", "cc-by-nc-sa-3.0", ["non-commercial", "share-alike", "attribution"]),
    ("CC BY 4.0", "cc-by-4.0", ["attribution"]),
    ("CC0-1.0", "cc0-1.0", []),
    ("none stated (data article CC BY 4.0; Kaggle lists CC0)", None, ["unknown"]),
    ("UDIAT Dataset B licence agreement (research use, no redistribution)", None,
     ["non-commercial", "no-redistribution"]),
    ("COVID-19 emergency license", None, ["unknown"]),
    ("", None, ["unknown"]),
])
def test_licence_terms(text, hub_id, terms):
    assert licence_id(text) == hub_id
    assert licence_terms(text) == terms


def test_the_shipped_sources_licences_are_read():
    from hico.data.sources import get_source

    assert "no-derivatives" in licence_terms(get_source("covid_blues").license)
    assert licence_terms(get_source("busi").license) == ["unknown"]
    assert "non-commercial" in licence_terms(get_source("clust").license)


@pytest.mark.slow
@pytest.mark.parametrize("arch, readout, untrained", [
    ("convnext_atto", "forward_features_mean", ["head.norm.weight", "head.norm.bias"]),
    ("efficientnet_b0", "features_only", ["conv_head.weight", "bn2.weight", "bn2.bias", "bn2.running_mean",
                                          "bn2.running_var", "bn2.num_batches_tracked"]),
])
def test_key_mapping_is_timms_own_for_other_architectures(tmp_path, arch, readout, untrained):
    from safetensors.torch import save_file

    encoder = randomised(Backbone(arch))
    plain, missing = timm_state_dict(arch, encoder.state_dict())
    assert missing == untrained
    save_file(plain, str(tmp_path / EXPORT_WEIGHTS))
    name, diff = matching_readout(encoder, tmp_path / EXPORT_WEIGHTS, IMAGE_SIZE)
    assert name == readout and diff <= 1e-5


def test_a_body_that_timm_cannot_map_is_refused():
    state = randomised(Backbone("resnet18")).state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ExportError, match="outside the timm body"):
        timm_state_dict("resnet18", state)
    del state["extra.weight"], state["body.layer4.1.bn2.weight"]
    with pytest.raises(ExportError, match="keys differ"):
        timm_state_dict("resnet18", state)


# ------------------------------------------------------------------------------------------
# --push: the Hub's HTTP API, answered by a mock transport


HUB_LICENCES = {"mit", "apache-2.0", "cc0-1.0", "cc-by-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0"}


class FakeHub:
    """Answers create-repo, preupload and commit like huggingface.co; records what was sent."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[tuple[str, str]] = []
        self.committed: dict[str, bytes] = {}

    def __call__(self, request):
        httpx = sys.modules[type(request).__module__.split(".")[0]]
        path = request.url.path
        self.requests.append((request.method, path))
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "Invalid credentials in Authorization header"})
        if path == "/api/validate-yaml":  # the card's metadata, checked before the commit
            meta = yaml.safe_load(json.loads(request.content)["content"].split("---")[1])
            ok = meta["license"] in HUB_LICENCES or (meta["license"] == "other" and meta.get("license_name"))
            return httpx.Response(200 if ok else 400, json={"errors": [] if ok else [{"message": "bad license"}],
                                                            "warnings": []})
        if path == "/api/repos/create":
            body = json.loads(request.content)
            return httpx.Response(200, json={"url": f"https://huggingface.co/{body['organization']}/{body['name']}"
                                             if body.get("organization") else f"https://huggingface.co/{body['name']}"})
        if path.endswith("/preupload/main"):
            files = json.loads(request.content)["files"]
            return httpx.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                       for f in files]})
        if path.endswith("/commit/main"):
            for line in request.content.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.committed[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return httpx.Response(200, json={"commitUrl": "https://huggingface.co/user/repo/commit/abc123",
                                             "commitOid": "abc123"})
        return httpx.Response(404, json={"error": f"not faked: {request.method} {path}"})


@pytest.fixture()
def fake_hub(monkeypatch):
    hub_http = pytest.importorskip("huggingface_hub.utils._http",
                                   reason="huggingface_hub (extra `hub`) is not installed")
    if not hasattr(hub_http, "set_client_factory"):
        pytest.skip("huggingface_hub < 1.0 has no client factory to mock the transport with")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    httpx = sys.modules[type(hub_http.get_session()).__module__.split(".")[0]]
    hub = FakeHub()
    hub_http.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(hub)))
    yield hub
    hub_http.set_client_factory(hub_http.default_client_factory)


def test_push_uploads_the_three_files(exported, fake_hub):
    url = push_export(exported["out"], "user/repo", token="hf_fake")
    assert url == "https://huggingface.co/user/repo/commit/abc123"
    assert ("POST", "/api/repos/create") in fake_hub.requests and ("POST", "/api/validate-yaml") in fake_hub.requests
    assert sorted(fake_hub.committed) == sorted(EXPORT_FILES)
    for name in EXPORT_FILES:
        assert fake_hub.committed[name] == (exported["out"] / name).read_bytes()


def test_push_refused_by_the_hub_is_a_user_error(exported, fake_hub):
    fake_hub.status = 401
    with pytest.raises(ExportError, match="hf auth login"):
        push_export(exported["out"], "user/repo", token="hf_wrong")
    assert fake_hub.committed == {}
