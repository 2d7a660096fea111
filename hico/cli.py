"""``python -m hico <command>``: every box of the workflow, runnable by hand.

Commands: simulate, download, prepare, folds, check-overlap, pretrain, features, evaluate, aggregate, plot,
methods.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from hico.errors import USER_ERROR_EXIT, HicoError


def _set_to_dict(pairs: list[str]) -> dict[str, Any]:
    """``["optimizer.lr=0.1", "epochs=2"]`` -> nested dict with YAML-typed values."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def _overrides(args) -> list[dict[str, Any]]:
    """Each --overrides is a JSON dict or a JSON list of dicts (merged in order)."""
    found: list[dict[str, Any]] = []
    for text in args.overrides or []:
        value = json.loads(text)
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict):
                raise SystemExit(f"--overrides must be a JSON object or a list of objects, got {text!r}")
            found.append(item)
    if args.set:
        found.append(_set_to_dict(args.set))
    return found


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise HicoError(f"{flag} is not valid JSON ({e}): {text!r}; give an object such as '{{\"k\": 20}}'") from e
    if not isinstance(value, dict):
        raise HicoError(f"{flag} must be a JSON object of named arguments, got {text!r}")
    return value


def _device(name: str | None) -> str | None:
    return None if name in (None, "", "auto") else name


def cmd_simulate(argv: list[str]) -> int:
    from hico.data.synthetic import main as simulate_main

    return simulate_main(argv) or 0


def cmd_download(argv: list[str]) -> int:
    from hico.data.sources import main_download

    return main_download(argv) or 0


def cmd_prepare(argv: list[str]) -> int:
    from hico.data.sources import main_prepare

    return main_prepare(argv) or 0


def cmd_check_overlap(argv: list[str]) -> int:
    from hico.data.leakage import main as leakage_main

    return leakage_main(argv)


def cmd_folds(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hico folds", description="patient-grouped stratified folds -> folds.csv")
    p.add_argument("dataset", help="standard dataset folder")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output CSV (default: <dataset>/folds.csv)")
    a = p.parse_args(argv)
    from hico.data.folds import write_folds
    from hico.data.standard import load_dataset

    ds = load_dataset(a.dataset)
    out = Path(a.out) if a.out else Path(a.dataset) / "folds.csv"
    folds = write_folds(ds.manifest, out, a.k, a.seed)
    print(f"[folds] {ds.name}: {len(folds)} videos in {a.k} folds -> {out}")
    return 0


def cmd_pretrain(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hico pretrain", description="pretrain one method (or export a control's init)")
    p.add_argument("method")
    p.add_argument("--data", nargs="*", default=[], help="standard dataset folders (the pretraining pool)")
    p.add_argument("--out", required=True, help="run folder (encoder.pt, last.pt, train_log.csv)")
    p.add_argument("--overrides", action="append", help="JSON dict (or list of dicts) merged over the recipe")
    p.add_argument("--set", action="append", help="key=value override, dotted keys (repeatable)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--name", help="run name recorded in the encoder (a config variant of the method)")
    a = p.parse_args(argv)
    from hico.registry import requires_pretraining
    from hico.train import export_initial_encoder, pretrain

    if not requires_pretraining(a.method):
        path = export_initial_encoder(a.method, a.out, _overrides(a), run_name=a.name)
    else:
        if not a.data:
            raise SystemExit(f"hico pretrain {a.method}: give the pretraining datasets with --data DIR [DIR ...]")
        path = pretrain(a.method, a.data, a.out, _overrides(a), device=_device(a.device), run_name=a.name)
    print(f"[pretrain] {a.method} -> {path}")
    return 0


def cmd_evaluate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hico evaluate", description="one protocol on folds of a dataset -> metrics.json each")
    p.add_argument("--encoder", required=True)
    p.add_argument("--data", required=True, help="downstream standard dataset folder")
    p.add_argument("--folds", required=True, help="folds.csv")
    p.add_argument("--fold", type=int, nargs="+", required=True, help="one or more folds (features are shared)")
    p.add_argument("--protocol", default="linear_probe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--max-frames", type=int, default=30)
    p.add_argument("--method")
    p.add_argument("--args", default="{}", help="JSON dict of protocol arguments (train_fraction, epochs, ...)")
    p.add_argument("--device", help="cpu, cuda or auto (default)")
    p.add_argument("--out", required=True, nargs="+", help="metrics.json path per fold, in the order of --fold")
    p.add_argument("--features", help="feature file of `hico features` for this encoder and dataset (frozen-feature "
                                      "protocols); without it the features are computed here")
    a = p.parse_args(argv)
    if len(a.out) != len(a.fold):
        raise SystemExit(f"hico evaluate: {len(a.fold)} folds but {len(a.out)} --out paths; give one per fold")
    from hico.evaluation.run import evaluate_folds

    results = evaluate_folds(a.encoder, a.data, a.folds, a.fold, a.protocol, seed=a.seed, image_size=a.image_size,
                             max_frames=a.max_frames, out_paths=a.out, method=a.method, device=_device(a.device),
                             features=a.features, **_json_object(a.args, "--args"))
    for m in results:
        print(f"[evaluate] {m['method']} {m['dataset']} {a.protocol} fold {m['fold']} seed {a.seed}: "
              f"acc {m['frame']['accuracy']:.3f} (video {m['video']['accuracy']:.3f})")
    return 0


def cmd_features(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hico features",
                                description="frozen features of an encoder on a dataset -> one .npz, computed once")
    p.add_argument("--encoder", required=True)
    p.add_argument("--data", required=True, help="standard dataset folder")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--max-frames", type=int, default=30)
    p.add_argument("--bn", choices=["frozen", "adabn"], default="frozen",
                   help="the encoder's BatchNorm statistics, or re-estimated per fold (AdaBN; needs --folds)")
    p.add_argument("--folds", help="folds.csv (with --bn adabn: one block of features per fold)")
    p.add_argument("--device", help="cpu, cuda or auto (default)")
    p.add_argument("--out", required=True, help="feature file (.npz)")
    a = p.parse_args(argv)
    if (a.bn == "adabn") != (a.folds is not None):
        p.error("--folds goes with --bn adabn, and only with it")
    from hico.evaluation.features import write_features

    path, computed = write_features(a.out, a.encoder, a.data, image_size=a.image_size, max_frames=a.max_frames,
                                    bn=a.bn, folds_path=a.folds, device=_device(a.device))
    print(f"[features] {a.encoder} on {a.data} ({a.bn}) -> {path}" + ("" if computed else " (up to date, kept)"))
    return 0


def cmd_aggregate(argv: list[str]) -> int:
    from hico.report.aggregate import main as aggregate_main

    return aggregate_main(argv) or 0


def cmd_plot(argv: list[str]) -> int:
    from hico.report.plots import main as plots_main

    return plots_main(argv) or 0


def cmd_methods(argv: list[str]) -> int:
    from hico.registry import list_methods, load_method_config

    for name in list_methods():
        r = load_method_config(name)
        kind = "pretrain" if r.get("requires_pretraining", True) else "control"
        print(f"{name:14s} {kind:8s} {str(r.get('citation', ''))[:80]}")
    return 0


COMMANDS = {
    "simulate": cmd_simulate,
    "download": cmd_download,
    "prepare": cmd_prepare,
    "folds": cmd_folds,
    "check-overlap": cmd_check_overlap,
    "pretrain": cmd_pretrain,
    "features": cmd_features,
    "evaluate": cmd_evaluate,
    "aggregate": cmd_aggregate,
    "plot": cmd_plot,
    "methods": cmd_methods,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        print("\nusage: python -m hico [--debug] {" + ",".join(COMMANDS) + "} [args]")
        return 0 if not argv or argv[0] in ("-h", "--help") else USER_ERROR_EXIT
    try:
        return COMMANDS[argv[0]](argv[1:])
    except HicoError as e:
        if debug:
            raise
        message = " ".join(str(e).split("\n"))
        print(f"hico {argv[0]}: error: {message} (rerun with --debug for the traceback)", file=sys.stderr)
        return USER_ERROR_EXIT
