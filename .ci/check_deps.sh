#!/usr/bin/env bash
# The declared dependencies are enough (issue 16 item 6): a fresh venv without system
# site-packages, `pip install -e .` (pinned to requirements.lock, no extras), then every module of
# hico and baselines imports and the CLI answers. Minutes (it installs torch): run it from .ci/run,
# not from pytest. tests/test_dependencies.py checks statically that each import is declared.
# Usage: .ci/check_deps.sh [VENV_DIR]   (default: a temporary folder, removed afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -ge 1 ]]; then venv="$1"; else tmp="$(mktemp -d)"; venv="$tmp/venv"; trap 'rm -rf "$tmp"' EXIT; fi
start=$SECONDS
python3 -m venv "$venv"
# (the grep drops pip's notes on this machine's local index folders; pip's exit status is kept)
"$venv/bin/python" -m pip install -q -c requirements.lock -e . 2> >(grep -v "is ignored: it is neither" >&2)
"$venv/bin/python" - <<'PY'
import importlib
import pkgutil

import baselines
import hico

names = [m.name for pkg in (hico, baselines) for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
         if not m.name.endswith(".__main__")]  # importing __main__ would run the CLI
for name in names:
    importlib.import_module(name)
print(f"[check_deps] imported hico, baselines and their {len(names)} modules")
PY
"$venv/bin/python" -m pip check
"$venv/bin/python" -m hico --version
"$venv/bin/python" -m hico methods > /dev/null
echo "[check_deps] fresh venv with only the declared dependencies: ok ($((SECONDS - start)) s)"
