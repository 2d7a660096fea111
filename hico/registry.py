"""The method registry: ``@register_method("name")``, ``get_method``, ``list_methods``.

A method is two files: a module that defines a :class:`~hico.methods.base.PretrainMethod`
subclass decorated with ``@register_method("<name>")`` and a YAML recipe ``<name>.yaml`` beside
it. Modules are found by name (``hico.methods.<name>`` first, then ``baselines.<name>``) and
imported only when asked for, so adding a baseline edits no central list (the habit of timm's
``@register_model``; solo-learn's hand-edited ``METHODS`` dict is what we avoid).

Controls that train nothing (``random_init``, ``imagenet``) are a YAML alone with
``requires_pretraining: false``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml

from hico import layout
from hico.errors import HicoError

_REGISTRY: dict[str, type] = {}

PACKAGE_ROOT = layout.REPO_ROOT / "hico"
#: (package, folder) pairs searched for ``<name>.py`` / ``<name>.yaml``, in order (tests add one)
METHOD_DIRS: tuple[tuple[str, Path], ...] = tuple(zip((pkg for pkg, _ in layout.RECIPE_DIRS), layout.recipe_dirs()))


class RegistryError(HicoError, LookupError):
    """A method name, class or recipe that does not fit the registry's rules."""


def register_method(name: str):
    """Class decorator: make ``cls`` the implementation of method ``name``."""

    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RegistryError(
                f"method {name!r} is registered twice: by {_REGISTRY[name].__module__}."
                f"{_REGISTRY[name].__qualname__} and by {cls.__module__}.{cls.__qualname__}; "
                "rename one of them"
            )
        _REGISTRY[name] = cls
        cls.method_name = name
        return cls

    return decorate


def method_yaml_path(name: str) -> Path:
    """Path of the recipe ``<name>.yaml`` (hico/methods first, then baselines/)."""
    path = layout.recipe_path(name, [d for _, d in METHOD_DIRS])
    if path is not None:
        return path
    raise RegistryError(
        f"no recipe for method {name!r}: expected {name}.yaml in "
        + " or ".join(str(d) for _, d in METHOD_DIRS)
        + f". Known methods: {', '.join(list_methods()) or '(none)'}"
    )


def load_method_config(name: str) -> dict[str, Any]:
    """The method's YAML recipe as a dict (validated against its schema by ``hico.config``)."""
    path = method_yaml_path(name)
    with open(path) as fh:
        recipe = yaml.safe_load(fh) or {}
    if not isinstance(recipe, dict):
        raise RegistryError(f"{path}: expected a mapping of recipe keys, got {type(recipe).__name__}")
    declared = recipe.get("name", name)
    if declared != name:
        raise RegistryError(f"{path}: 'name: {declared}' does not match the file name; rename one")
    recipe["name"] = name
    recipe["_path"] = str(path)
    return recipe


def list_methods(include_controls: bool = True) -> list[str]:
    """Every method with a recipe, sorted. Controls (no pretraining) optionally left out."""
    names = set(layout.recipe_names([d for _, d in METHOD_DIRS]))
    if not include_controls:
        names = {n for n in names if requires_pretraining(n)}
    return sorted(names)


def requires_pretraining(name: str) -> bool:
    return bool(load_method_config(name).get("requires_pretraining", True))


def import_method_modules() -> list[str]:
    """Import the module of every method with a recipe (``<name>.py`` beside ``<name>.yaml``),
    so that what they register (methods, view samplers) is known whatever was imported before.
    Returns the module names, in search order."""
    modules, seen = [], set()
    for package, directory in METHOD_DIRS:
        for name in layout.recipe_names([directory]):
            if name not in seen and (directory / f"{name}.py").exists():  # the first one wins, as in get_method
                seen.add(name)
                modules.append(f"{package}.{name}")
                importlib.import_module(modules[-1])
    return modules


def get_method(name: str) -> type:
    """The registered class of ``name``, importing its module on first use."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_found = False
    for package, directory in METHOD_DIRS:
        if (directory / f"{name}.py").exists():
            module_found = True
            importlib.import_module(f"{package}.{name}")
            break
    if name in _REGISTRY:
        return _REGISTRY[name]
    known = ", ".join(list_methods())
    if module_found:
        raise RegistryError(
            f"module for method {name!r} was imported but registered no class: decorate the "
            f"PretrainMethod subclass with @register_method({name!r})"
        )
    try:
        recipe_path = method_yaml_path(name)
    except RegistryError:
        raise RegistryError(f"unknown method {name!r}. Known methods: {known}") from None
    if not requires_pretraining(name):
        raise RegistryError(
            f"method {name!r} is a control without pretraining ({recipe_path}); it has no class"
        )
    raise RegistryError(
        f"method {name!r} has a recipe ({recipe_path}) but no module: add {name}.py beside it "
        f"with a PretrainMethod subclass decorated @register_method({name!r})"
    )
