"""The naming rules of hico.layout: stdlib-only, wildcard-transparent, and round-trip exact."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hico import layout


def test_layout_imports_with_the_standard_library_only():
    # The workflow imports it inside Snakemake: no torch, numpy or pandas may come with it.
    code = ("import sys; import hico.layout; "
            "bad = sorted(m for m in ('torch', 'numpy', 'pandas', 'timm', 'yaml') if m in sys.modules); "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_paths_pass_snakemake_wildcards_through():
    run = layout.pretrain_run_dir("runs", "{pool}", "{method}", "{seed}")
    assert run == "runs/pretrain/{pool}/{method}/seed{seed}"
    assert layout.encoder_file(run, "epoch20") == "runs/pretrain/{pool}/{method}/seed{seed}/encoder_epoch20.pt"
    assert layout.encoder_file(run, "frac10").endswith("/encoder.pt")
    assert layout.metrics_path("r", "{dataset}", "knn", "simclr", 2, 3, "full") == \
        "r/eval/{dataset}/knn/simclr/seed2/fold3/full/metrics.json"


@pytest.mark.parametrize("variant, parsed", [("full", ("full", None)), ("frac10", ("fraction", 10)),
                                             ("epoch200", ("epoch", 200))])
def test_variants_round_trip(variant, parsed):
    assert layout.parse_variant(variant) == parsed
    kind, value = parsed
    rebuilt = {"full": lambda v: layout.FULL, "fraction": layout.fraction_variant, "epoch": layout.epoch_variant}[kind](value)
    assert rebuilt == variant


@pytest.mark.parametrize("bad", ["frac", "epoch-1", "Full", "frac10x", ""])
def test_unknown_variant_is_an_error(bad):
    with pytest.raises(ValueError, match="evaluation variant"):
        layout.parse_variant(bad)


def test_checkpoint_names_round_trip():
    assert layout.checkpoint_epoch(layout.checkpoint_name(30)) == 30
    assert layout.checkpoint_epoch("a/b/encoder_epoch7.pt") == 7
    assert layout.checkpoint_epoch("encoder.pt") is None


def test_protocol_ids_and_figures():
    assert layout.protocol_id("finetune", {"variant": "full"}) == "finetune_full"
    assert layout.protocol_id("finetune") == "finetune_released"
    assert layout.protocol_id("knn", {"variant": "full"}) == "knn"
    assert layout.confusion_figure("covid blues", "knn") == "confusion_covid_blues_knn"
    figs = layout.declared_figures([("pocus", "linear_probe"), ("pocus", "finetune_released"), ("busi", "linear_probe")],
                                   convergence=True, label_fractions=False)
    assert figs == ["main_comparison", "convergence", "finetune_curves", "main_comparison_paper_protocol",
                    "confusion_pocus_linear_probe", "confusion_pocus_finetune_released", "confusion_busi_linear_probe"]


def test_recipe_lookup(tmp_path):
    assert layout.requires_pretraining("simclr") is True
    assert layout.requires_pretraining("random_init") is False
    assert "hico" in layout.recipe_names() and "simclr" in layout.recipe_names()
    (tmp_path / "ctrl.yaml").write_text("name: ctrl\nrequires_pretraining: false\n")
    assert layout.requires_pretraining("ctrl", [tmp_path]) is False
    with pytest.raises(LookupError, match="no recipe nothere.yaml"):
        layout.requires_pretraining("nothere")


def test_recipe_answers_are_kept_until_the_recipe_changes(tmp_path, monkeypatch):
    """The workflow asks once per planned job: the YAML is parsed once per recipe version."""
    import yaml

    recipe = tmp_path / "ctrl.yaml"
    recipe.write_text("name: ctrl\nrequires_pretraining: false\n")
    parses = []
    real = yaml.safe_load
    monkeypatch.setattr(yaml, "safe_load", lambda text: parses.append(1) or real(text))
    assert [layout.requires_pretraining("ctrl", [tmp_path]) for _ in range(50)] == [False] * 50
    assert len(parses) == 1
    recipe.write_text("name: ctrl\nrequires_pretraining: true  # edited\n")
    assert layout.requires_pretraining("ctrl", [tmp_path]) is True
    assert len(parses) == 2
