"""One module per dataset source; each turns its raw files into the standard dataset format.

A source module ``hico/data/sources/<name>.py`` has a docstring that is its spec (source,
licence, citation, label map, sampling, grouping) and defines ``SOURCE``, an instance of a
:class:`~hico.data.sources._common.Source` subclass (``RestrictedSource`` for a set the user
supplies, ``ArchiveSource`` for one archive without a published checksum) with:

- ``name`` (= the module name), ``classes``, ``access`` (``"public"`` or ``"restricted"``),
  ``enabled_by_default``, ``license``, ``citation``, ``homepage``, ``options`` (its options and
  defaults; the common ones are in :data:`hico.data.sources._common.COMMON_OPTIONS`);
- ``remote_files(config) -> list[RemoteFile]`` (empty for restricted sets);
- ``download(raw_dir, config) -> Path`` (fetch and verify; for a restricted set: check the
  user's folder and say where to get the data);
- ``prepare(raw_dir, out_root, config, name=None) -> Path``: write ``<out_root>/<name>/``
  with :class:`~hico.data.standard.DatasetWriter`, ``prepare_report.json`` inside.

``raw_dir`` is the dataset's own folder (``data/raw/<dataset>``, or the user's copy of a
restricted set). Modules are found by file name, so adding a source edits no list here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
from pathlib import Path
from typing import Any

from hico.data.sources._common import Source, SourceError
from hico.overrides import parse_set

log = logging.getLogger(__name__)


def list_sources(access: str | None = None, default_only: bool = False) -> list[str]:
    """Names of every source module (``access``: only "public" or "restricted" ones;
    ``default_only``: only those the default configuration uses)."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    out = []
    for n in names:
        src = get_source(n)
        if access is not None and src.access != access:
            continue
        if default_only and not src.enabled_by_default:
            continue
        out.append(n)
    return out


def get_source(name: str) -> Source:
    """``SOURCE`` of the module ``hico.data.sources.<name>``, checked to be a :class:`Source` of that name."""
    if not name.isidentifier() or name.startswith("_"):
        raise SourceError(f"{name!r} is not a source name")
    try:
        mod = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        known = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
        raise SourceError(f"unknown dataset source {name!r}; known sources: {', '.join(known)}") from None
    src = getattr(mod, "SOURCE", None)
    if not isinstance(src, Source) or src.name != name:
        raise TypeError(
            f"{mod.__file__}: a source module must define SOURCE, an instance of a Source subclass "
            f"with name == {name!r} (found {src!r})"
        )
    return src


def download(name: str, raw_dir: str | Path, config: dict[str, Any] | None = None) -> Path:
    return get_source(name).download(Path(raw_dir), config or {})


def prepare(name: str, raw_dir: str | Path, out_root: str | Path, config: dict[str, Any] | None = None, dataset_name: str | None = None) -> Path:
    return get_source(name).prepare(Path(raw_dir), Path(out_root), config or {}, name=dataset_name)


# --------------------------------------------------------------------------------------------
# command line: python -m hico download / prepare


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.options:
        value = json.loads(args.options)
        if not isinstance(value, dict):
            raise SystemExit(f"--options must be a JSON object, got {args.options!r}")
        opts.update(value)
    opts.update(parse_set(args.set))
    return opts


def _parser(prog: str, out: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").splitlines()[0])
    p.add_argument("source", help="dataset source: " + ", ".join(list_sources()))
    p.add_argument("--raw", required=True, help="the dataset's raw folder (downloads go here; restricted sets: your copy)")
    if out:
        p.add_argument("--out", required=True, help="data root; the dataset is written to <out>/<name>/")
        p.add_argument("--name", help="dataset folder name (default: the source name)")
    p.add_argument("--options", help="JSON object of source options, e.g. '{\"fps\": 3}'")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="one source option (YAML-typed); repeatable")
    return p


def _source_or_exit(parser: argparse.ArgumentParser, name: str) -> Source:
    try:
        return get_source(name)
    except ValueError as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits


def main_download(argv: list[str] | None = None) -> int:
    p = _parser("hico download", out=False)
    a = p.parse_args(argv)
    mod = _source_or_exit(p, a.source)

    def go(raw, opts):
        path = mod.download(raw, opts)
        log.info(f"[download] {a.source}: files verified in {path}")

    go(Path(a.raw), _options(a))
    return 0


def main_prepare(argv: list[str] | None = None) -> int:
    p = _parser("hico prepare", out=True)
    a = p.parse_args(argv)
    mod = _source_or_exit(p, a.source)

    def go(raw, out, opts, name):
        path = mod.prepare(raw, out, opts, name=name)
        log.info(f"[prepare] {a.source}: wrote {path}")

    go(Path(a.raw), Path(a.out), _options(a), a.name)
    return 0
