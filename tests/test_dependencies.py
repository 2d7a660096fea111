"""The declared dependencies match what the package imports, and every pin file agrees with
requirements.lock (issue 16 item 6). A fresh-venv install is .ci/check_deps.sh (minutes)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: declared but imported by neither hico/ nor baselines/, each with its reason
DECLARED_NOT_IMPORTED: dict[str, str] = {}
#: imported only by an optional feature: distribution -> the extra that declares it
OPTIONAL_IMPORTS = {"huggingface-hub": "hub",  # python -m hico export --push
                    "tensorboard": "trackers", "mlflow": "trackers"}  # logger: tensorboard | mlflow
#: pinned in requirements.lock without being a direct dependency, each with its reason
LOCKED_TRANSITIVE = {"torchvision": "timm's dependency; pinned with torch (their versions pair)",
                     "snakemake-executor-plugin-slurm-jobstep": "the SLURM executor's dependency (its job steps)"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_top_modules(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def _third_party_distributions() -> dict[str, str]:
    """``{distribution: module}`` of what hico/ and baselines/ import, lazily or not."""
    modules = _imported_top_modules(REPO / "hico") | _imported_top_modules(REPO / "baselines")
    modules -= set(sys.stdlib_module_names) | {"hico", "baselines", "__future__"}
    dists = packages_distributions()
    missing = sorted(m for m in modules if m not in dists)
    assert not missing, f"imported but not installed here: {missing}"
    # a module several distributions install files into (mlflow: mlflow, mlflow-skinny and
    # mlflow-tracing, in no fixed order) is the declared one's
    declared = {_name(r) for r in PROJECT["dependencies"]}
    declared |= {_name(r) for extra in PROJECT["optional-dependencies"].values() for r in extra}
    out = {}
    for m in modules:
        candidates = [d.lower().replace("_", "-") for d in dists[m]]
        out[next((d for d in candidates if d in declared), candidates[0])] = m
    return out


#: the pin files: what `make demo`/`make lung` install, and what `make test` adds
LOCK_FILES = ("requirements.lock", "requirements-extras.lock")


def read_lock(name: str) -> dict[str, str]:
    """``{distribution: version}`` pinned by one lock file (its ``-r`` include not followed)."""
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r "):
            dist, version = line.split("==")
            pins[dist.lower().replace("_", "-")] = version
    return pins


def all_pins() -> dict[str, str]:
    """Every pin of the suite: both lock files."""
    return {k: v for name in LOCK_FILES for k, v in read_lock(name).items()}


def _env_pins(path: Path) -> dict[str, str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    # a CUDA build's local version (torch==2.14.1+cu128) pins the locked release
    return {p.split("==")[0].lower().replace("_", "-"): p.split("==")[1].split("+")[0] for p in pip if "==" in p}


def test_every_import_is_declared_and_every_declared_package_is_imported():
    imported = _third_party_distributions()
    declared = {_name(r) for r in PROJECT["dependencies"]}
    extras = PROJECT["optional-dependencies"]
    for dist, extra in OPTIONAL_IMPORTS.items():
        assert dist in {_name(r) for r in extras[extra]}, f"{dist} is not in the extra {extra!r}"
    undeclared = set(imported) - declared - set(OPTIONAL_IMPORTS)
    assert sorted(undeclared) == [], "imported by the package but not in pyproject dependencies"
    unused = declared - set(imported) - set(DECLARED_NOT_IMPORTED)
    assert sorted(unused) == [], "declared in pyproject but imported by neither hico/ nor baselines/"
    for gone in ("imageio", "jsonschema"):  # issue 16: unused by the package
        assert gone not in declared


def test_the_workflows_schema_validator_is_in_the_workflow_extra():
    assert "jsonschema" in {_name(r) for r in PROJECT["optional-dependencies"]["workflow"]}
    assert "huggingface-hub" in {_name(r) for r in PROJECT["optional-dependencies"]["hub"]}


def test_the_lock_pins_every_declared_package_and_nothing_unexplained():
    lock = all_pins()
    wanted = {_name(r) for r in PROJECT["dependencies"]}
    wanted |= {_name(r) for extra in PROJECT["optional-dependencies"].values() for r in extra}
    assert sorted(wanted - set(lock)) == []
    assert sorted(set(lock) - wanted - set(LOCKED_TRANSITIVE)) == []


@pytest.mark.parametrize("env", ["environment.yml", *sorted(p.relative_to(REPO).as_posix()
                                                            for p in (REPO / "workflows/envs").glob("*.yaml"))])
def test_env_files_pin_the_locked_versions(env):
    pins, lock = _env_pins(REPO / env), all_pins()
    assert {k: v for k, v in pins.items() if lock.get(k) != v} == {}, f"{env} disagrees with the lock files"
    assert "imageio" not in pins
    if env == "environment.yml":
        assert set(pins) == set(lock), "the whole-suite env installs exactly the locked set"


def test_the_demo_lock_holds_what_the_package_and_workflow_need_and_the_extras_only_add():
    """`make demo` installs requirements.lock alone: every dependency of the package and of the
    workflow (Snakemake, its schema validator, the Hub export), no tracker, executor plugin or test
    tool; requirements-extras.lock includes it and pins nothing twice."""
    runtime, extras = read_lock("requirements.lock"), read_lock("requirements-extras.lock")
    needed = {_name(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["hub"]}
    needed |= {"snakemake", "jsonschema", "torchvision"}
    assert sorted(needed - set(runtime)) == []
    for extra in ("trackers", "dev"):
        optional = {_name(r) for r in PROJECT["optional-dependencies"][extra]} - needed
        assert sorted(optional & set(runtime)) == [], f"the {extra} extra belongs in requirements-extras.lock"
    assert sorted(set(runtime) & set(extras)) == []
    assert "-r requirements.lock" in (REPO / "requirements-extras.lock").read_text().splitlines()
