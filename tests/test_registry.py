"""The method registry and recipe checks: every mistake a new method can make fails with a
message that names the file and the fix; every shipped recipe has the documented keys."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import hico.registry as registry
from hico.config import ConfigError, resolve_pretrain_config
from hico.data.pairs import build_sampler
from hico.data.transforms import AugmentConfig
from hico.methods.base import build_method, method_params
from hico.registry import RegistryError, get_method, list_methods, load_method_config

SHIPPED = {"simclr", "moco_v2", "byol", "simsiam", "uscl", "ivpp", "ucl", "supervised"}
CONTROLS = {"random_init", "imagenet"}
RECIPE_KEYS = {"name", "citation", "reference_code", "backbone", "sampler", "augment", "optimizer",
               "schedule", "epochs", "batch_size", "image_size", "params", "export", "deviations"}

TOY_MODULE = '''
from hico.losses import nt_xent
from hico.methods.base import PretrainMethod
from hico.registry import register_method


@register_method("{name}")
class Toy(PretrainMethod):
    def __init__(self, temperature: float = 0.5, **base):
        super().__init__(**base)
        self.temperature = temperature

    def training_step(self, batch):
        x_i, x_j = batch["views"]
        return {{"loss": nt_xent(self.backbone(x_i), self.backbone(x_j), self.temperature)}}
'''


@pytest.fixture
def method_dir(tmp_path, monkeypatch):
    """A temporary method package searched after the real ones, with an isolated registry."""
    package = f"toy_methods_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "METHOD_DIRS", (*registry.METHOD_DIRS, (package, root)))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    yield root
    for mod in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[mod]


def write_recipe(directory: Path, name: str, **extra) -> Path:
    recipe = {"name": name, "citation": "toy", "backbone": "resnet18", "sampler": "same_frame",
              "params": {"temperature": 0.5}, **extra}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


# ---------------------------------------------------------------- what a user gets wrong


def test_yaml_without_a_class(method_dir):
    write_recipe(method_dir, "toy_noclass")
    assert "toy_noclass" in list_methods()
    with pytest.raises(RegistryError, match=r"toy_noclass.*has a recipe .*toy_noclass\.yaml.* but no module: "
                                            r"add toy_noclass\.py .*@register_method\('toy_noclass'\)"):
        get_method("toy_noclass")


def test_module_that_registers_nothing(method_dir):
    write_recipe(method_dir, "toy_undecorated")
    (method_dir / "toy_undecorated.py").write_text("X = 1\n")
    with pytest.raises(RegistryError, match=r"registered no class: decorate .*@register_method\('toy_undecorated'\)"):
        get_method("toy_undecorated")


def test_class_without_a_yaml(method_dir):
    (method_dir / "toy_noyaml.py").write_text(TOY_MODULE.format(name="toy_noyaml"))
    assert "toy_noyaml" not in list_methods()  # never benchmarked: the recipe is what lists it
    with pytest.raises(RegistryError, match=r"no recipe for method 'toy_noyaml': expected toy_noyaml\.yaml in"):
        resolve_pretrain_config("toy_noyaml")


def test_a_complete_toy_method_is_listed_and_builds(method_dir):
    (method_dir / "toy_ok.py").write_text(TOY_MODULE.format(name="toy_ok"))
    write_recipe(method_dir, "toy_ok")
    assert "toy_ok" in list_methods(include_controls=False)
    cfg = resolve_pretrain_config("toy_ok", {"image_size": 32})
    model = build_method("toy_ok", cfg.params, num_classes=0, image_size=32)
    assert type(model).method_name == "toy_ok" and model.temperature == 0.5


def test_recipe_name_must_match_the_file(method_dir):
    write_recipe(method_dir, "toy_named").write_text(yaml.safe_dump({"name": "something_else"}))
    with pytest.raises(RegistryError, match=r"toy_named\.yaml: 'name: something_else' does not match the file name"):
        load_method_config("toy_named")


def test_unknown_params_key():
    cfg = resolve_pretrain_config("simclr", {"params": {"temprature": 0.1}})
    with pytest.raises(ValueError, match=r"method simclr: unknown params \['temprature'\] in .*simclr\.yaml.*"
                                         r"SimCLR accepts: \[.*'temperature'.*\]"):
        build_method("simclr", cfg.params, image_size=32)


def test_unknown_params_key_in_a_recipe_file(method_dir):
    (method_dir / "toy_badparam.py").write_text(TOY_MODULE.format(name="toy_badparam"))
    write_recipe(method_dir, "toy_badparam", params={"temperature": 0.5, "queue": 7})
    cfg = resolve_pretrain_config("toy_badparam")
    with pytest.raises(ValueError, match=r"unknown params \['queue'\] in .*toy_badparam\.yaml.* accepts: \['temperature'\]"):
        build_method("toy_badparam", cfg.params, image_size=32)


def test_unknown_top_level_key_in_an_override():
    with pytest.raises(ConfigError, match=r"simclr\.yaml: unknown keys \['learning_rate'\]; valid keys: \[.*'optimizer'"):
        resolve_pretrain_config("simclr", {"learning_rate": 0.1})


def test_unknown_top_level_key_in_a_recipe_file(method_dir):
    write_recipe(method_dir, "toy_badkey", epoch=3)
    with pytest.raises(ConfigError, match=r"toy_badkey\.yaml: unknown keys \['epoch'\]; valid keys: \[.*'epochs'"):
        resolve_pretrain_config("toy_badkey")


def test_unknown_nested_optimizer_key():
    with pytest.raises(ConfigError, match=r"simclr\.yaml\.optimizer: unknown keys \['learning_rate'\]"):
        resolve_pretrain_config("simclr", {"optimizer": {"learning_rate": 0.1}})


def test_unknown_method_name():
    with pytest.raises(RegistryError, match=r"unknown method 'simclrr'\. Known methods: .*simclr"):
        get_method("simclrr")
    with pytest.raises(RegistryError, match=r"no recipe for method 'simclrr': expected simclrr\.yaml"):
        resolve_pretrain_config("simclrr")


def test_control_has_no_class():
    with pytest.raises(RegistryError, match=r"'random_init' is a control without pretraining"):
        get_method("random_init")


def test_registering_a_name_twice(method_dir):
    exec(textwrap.dedent(TOY_MODULE.format(name="toy_twice")), {"__name__": "toy_first"})
    with pytest.raises(RegistryError, match=r"'toy_twice' is registered twice: by toy_first\.Toy and by "
                                            r"toy_second\.Toy; rename one"):
        exec(textwrap.dedent(TOY_MODULE.format(name="toy_twice")), {"__name__": "toy_second"})


# ---------------------------------------------------------------- what ships


def test_list_methods_includes_every_shipped_method():
    assert SHIPPED | CONTROLS <= set(list_methods())
    pretrained = set(list_methods(include_controls=False))
    assert SHIPPED <= pretrained and not CONTROLS & pretrained


def test_every_baseline_module_has_a_recipe():
    baselines = Path(registry.PACKAGE_ROOT.parent / "baselines")
    modules = {p.stem for p in baselines.glob("*.py") if not p.stem.startswith("_")}
    missing = sorted(m for m in modules if not (baselines / f"{m}.yaml").exists())
    assert not missing, f"baselines/{missing}.py have no recipe: add <name>.yaml beside each"


@pytest.mark.parametrize("name", sorted(list_methods()))
def test_shipped_recipe_is_complete(name):
    recipe = load_method_config(name)
    cfg = resolve_pretrain_config(name)
    deviations = recipe.get("deviations")
    assert isinstance(deviations, list), f"{name}.yaml: deviations must be a list (may be empty)"
    for d in deviations:
        assert isinstance(d, dict) and set(d) == {"what", "why"} and all(d.values()), \
            f"{name}.yaml: each deviation is {{what, why}}, got {d}"
    if not cfg.requires_pretraining:
        return
    assert RECIPE_KEYS <= set(recipe), f"{name}.yaml lacks {sorted(RECIPE_KEYS - set(recipe))}"
    assert cfg.citation and cfg.reference_code
    accepted = method_params(get_method(name))
    assert set(cfg.params) <= set(accepted), f"{name}.yaml params {sorted(set(cfg.params) - set(accepted))} unknown"
    AugmentConfig.from_dict(cfg.augment, cfg.image_size)
    build_sampler(cfg.sampler)


def test_a_baselines_own_sampler_is_found_without_importing_its_method_first():
    """Sampler lookup does not depend on import order: in a fresh interpreter that imported no
    method, ``ucl_hard_negatives`` (defined in baselines/ucl.py) is found by name."""
    import subprocess

    code = ("import sys; from hico.data.pairs import build_sampler; "
            "assert 'baselines.ucl' not in sys.modules; "
            "s = build_sampler({'name': 'ucl_hard_negatives', 'n_negatives': 2}); "
            "print(type(s).__module__, s.n_frames)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["baselines.ucl", "4"]
    with pytest.raises(ValueError, match=r"unknown view sampler 'no_such'; registered: \[.*'ucl_hard_negatives'"):
        build_sampler("no_such")
