"""``python -m hico <command>``: every box of the workflow, runnable by hand.

A user error (a bad path, an unknown option or value) is one line on stderr,
``hico <command>: error: ...``, and exit code 2; ``--debug`` shows the traceback instead.
``python -m hico <command> --help`` describes a command, with examples. Progress and status
lines go to stderr through ``logging`` (info by default; ``-v`` adds debug, ``-q`` keeps only
warnings); stdout carries only a command's result (the ``methods`` listing, help, the version).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hico import __version__
from hico.errors import USER_ERROR_EXIT, HicoError
from hico.log_config import configure_logging, verbosity_level
from hico.overrides import parse_set

log = logging.getLogger(__name__)


class UsageError(HicoError):
    """A command line argparse rejects (unknown option, missing or badly typed value)."""


def _parser(name: str) -> argparse.ArgumentParser:
    """The parser of a command defined here, with the table's description and examples."""
    command = COMMANDS[name]
    return argparse.ArgumentParser(prog=f"hico {name}", description=command.description,
                                   epilog=command.epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)


def _json_arg(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{flag} {text!r} is not JSON ({e.msg} at character {e.pos}); quote it, e.g. "
                         f"{flag} '{{\"epochs\": 1}}'") from e


def _overrides(args) -> list[dict[str, Any]]:
    """Each --overrides is a JSON dict or a JSON list of dicts (merged in order)."""
    found: list[dict[str, Any]] = []
    for text in args.overrides or []:
        value = _json_arg(text, "--overrides")
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict):
                raise UsageError(f"--overrides must be a JSON object or a list of objects, got {text!r}")
            found.append(item)
    if args.set:
        found.append(parse_set(args.set))
    return found


def _device(name: str | None, gpus: int = 0) -> str | None:
    """The device a job runs on; a job given GPUs that sees none stops here (hico.device). Without
    GPUs, ``auto`` stays None and is resolved where torch is imported anyway, so a command that
    needs no torch (an evaluation from a feature file) does not import it for this."""
    if not gpus:
        return None if name in (None, "", "auto") else name
    from hico.device import resolve_device

    return str(resolve_device(name, gpus))


GPUS_HELP = ("GPUs the scheduler gave this job (the workflow passes its gpu resource); with --gpus > 0 "
             "and no CUDA the job stops with an error instead of running on the CPU, unless --device cpu")


def _json_object(text: str, flag: str) -> dict[str, Any]:
    value = _json_arg(text, flag)
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object of named arguments, got {text!r}")
    return value


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
    p = _parser("folds")
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
    log.info("[folds] %s: %d videos in %d folds -> %s", ds.name, len(folds), a.k, out)
    return 0


def cmd_pretrain(argv: list[str]) -> int:
    p = _parser("pretrain")
    p.add_argument("method")
    p.add_argument("--data", nargs="*", default=[], help="standard dataset folders (the pretraining pool)")
    p.add_argument("--out", required=True, help="run folder (encoder.pt, last.pt, train_log.csv)")
    p.add_argument("--overrides", action="append", help="JSON dict (or list of dicts) merged over the recipe")
    p.add_argument("--set", action="append", help="key=value override, dotted keys (repeatable)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--gpus", type=int, default=0, help=GPUS_HELP)
    p.add_argument("--name", help="run name recorded in the encoder (a config variant of the method)")
    p.add_argument("--restart-on-mismatch", action="store_true",
                   help="if --out holds a run of another config or data, remove it and start afresh "
                        "(default: stop with an error naming what differs)")
    a = p.parse_args(argv)
    from hico.registry import requires_pretraining
    from hico.train import export_initial_encoder, pretrain

    if not requires_pretraining(a.method):
        path = export_initial_encoder(a.method, a.out, _overrides(a), run_name=a.name)
    else:
        if not a.data:
            raise UsageError(f"{a.method} needs its pretraining datasets: give --data DIR [DIR ...]")
        path = pretrain(a.method, a.data, a.out, _overrides(a), device=_device(a.device, a.gpus), run_name=a.name,
                        restart_on_mismatch=a.restart_on_mismatch)
    log.info("[pretrain] %s -> %s", a.method, path)
    return 0


def cmd_evaluate(argv: list[str]) -> int:
    p = _parser("evaluate")
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
    p.add_argument("--gpus", type=int, default=0, help=GPUS_HELP)
    p.add_argument("--out", required=True, nargs="+", help="metrics.json path per fold, in the order of --fold")
    p.add_argument("--features", help="feature file of `hico features` for this encoder and dataset (frozen-feature "
                                      "protocols); without it the features are computed here")
    a = p.parse_args(argv)
    if len(a.out) != len(a.fold):
        raise UsageError(f"{len(a.fold)} folds but {len(a.out)} --out paths; give one per fold")
    from hico.evaluation.run import evaluate_folds

    results = evaluate_folds(a.encoder, a.data, a.folds, a.fold, a.protocol, seed=a.seed, image_size=a.image_size,
                             max_frames=a.max_frames, out_paths=a.out, method=a.method,
                             device=_device(a.device, a.gpus), features=a.features,
                             **_json_object(a.args, "--args"))
    for m in results:
        log.info("[evaluate] %s %s %s fold %s seed %s: acc %.3f (video %.3f)", m["method"], m["dataset"],
                 a.protocol, m["fold"], a.seed, m["frame"]["accuracy"], m["video"]["accuracy"])
    return 0


def cmd_features(argv: list[str]) -> int:
    p = _parser("features")
    p.add_argument("--encoder", required=True)
    p.add_argument("--data", required=True, help="standard dataset folder")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--max-frames", type=int, default=30)
    p.add_argument("--bn", choices=["frozen", "adabn"], default="frozen",
                   help="the encoder's BatchNorm statistics, or re-estimated per fold (AdaBN; needs --folds)")
    p.add_argument("--folds", help="folds.csv (with --bn adabn: one block of features per fold)")
    p.add_argument("--device", help="cpu, cuda or auto (default)")
    p.add_argument("--gpus", type=int, default=0, help=GPUS_HELP)
    p.add_argument("--out", required=True, help="feature file (.npz)")
    a = p.parse_args(argv)
    if (a.bn == "adabn") != (a.folds is not None):
        p.error("--folds goes with --bn adabn, and only with it")
    from hico.evaluation.features import write_features

    path, computed = write_features(a.out, a.encoder, a.data, image_size=a.image_size, max_frames=a.max_frames,
                                    bn=a.bn, folds_path=a.folds, device=_device(a.device, a.gpus))
    log.info("[features] %s on %s (%s) -> %s%s", a.encoder, a.data, a.bn, path, "" if computed else " (up to date, kept)")
    return 0


def cmd_aggregate(argv: list[str]) -> int:
    from hico.report.aggregate import main as aggregate_main

    return aggregate_main(argv) or 0


def cmd_plot(argv: list[str]) -> int:
    from hico.report.plots import main as plots_main

    return plots_main(argv) or 0


def cmd_export(argv: list[str]) -> int:
    from hico import export

    p = _parser("export")
    export.add_arguments(p)
    return export.run(p.parse_args(argv))


def cmd_methods(argv: list[str]) -> int:
    _parser("methods").parse_args(argv)
    from hico.registry import list_methods, load_method_config

    # the listing is the command's result: stdout, whatever the verbosity
    for name in list_methods():
        r = load_method_config(name)
        kind = "pretrain" if r.get("requires_pretraining", True) else "control"
        print(f"{name:14s} {kind:8s} {str(r.get('citation', ''))[:80]}")
    return 0


@dataclass(frozen=True)
class Command:
    """One ``python -m hico`` command: what runs it, what it does, how it is called."""

    run: Callable[[list[str]], int]
    description: str
    examples: tuple[str, ...]
    #: the parser lives in the command's own module, so --help adds the examples after it
    parser_elsewhere: bool = False

    def epilog(self) -> str:
        return "examples:\n" + "\n".join(f"  {e}" for e in self.examples)

    def __call__(self, argv: list[str]) -> int:
        if self.parser_elsewhere and ("-h" in argv or "--help" in argv):
            return self._help(argv)
        return self.run(argv)

    def _help(self, argv: list[str]) -> int:
        # The module's parser prints its help and exits 0; the examples live in this table, so
        # that the command modules need not know about them.
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            try:
                code = self.run(argv)
            except SystemExit as e:
                code = e.code or 0
        print(buffer.getvalue().rstrip() + "\n\n" + self.epilog())  # help is the result: stdout
        return int(code)


COMMANDS: dict[str, Command] = {
    "simulate": Command(cmd_simulate, "Write the embedded synthetic lung-ultrasound dataset (offline).", (
        "python -m hico simulate --out data --name synthetic_lus",
        "python -m hico simulate --out data --name tiny --n-patients 8 --frames 4 --size 64",
    ), parser_elsewhere=True),
    "download": Command(cmd_download, "Fetch and verify a public dataset's raw files.", (
        "python -m hico download pocus --raw data/raw/pocus",
        "python -m hico download covid_blues --raw data/raw/covid_blues --set retries=5",
    ), parser_elsewhere=True),
    "prepare": Command(cmd_prepare, "Raw files -> a standard dataset (frames + manifest.csv).", (
        "python -m hico prepare pocus --raw data/raw/pocus --out data --set fps=3 --set max_frames=30",
        "python -m hico prepare video_folder --raw /my/videos --out data --name my_set",
    ), parser_elsewhere=True),
    "folds": Command(cmd_folds, "Patient-grouped stratified folds of a standard dataset -> folds.csv.", (
        "python -m hico folds data/pocus --k 5 --seed 0",
    )),
    "check-overlap": Command(cmd_check_overlap, "Refuse evaluation data that shares a source video with the "
                             "pretraining data.", (
        "python -m hico check-overlap --pretrain data/butterfly_uscl --eval data/pocus",
    ), parser_elsewhere=True),
    "pretrain": Command(cmd_pretrain, "Pretrain one method on a pool of datasets (a control exports its "
                        "initial encoder).", (
        "python -m hico pretrain hico --data data/synthetic_pretrain --out runs/hico/seed0",
        "python -m hico pretrain simclr --data data/a data/b --out runs/simclr --set epochs=2 --set batch_size=16",
        "python -m hico pretrain random_init --out runs/random_init/seed0",
    )),
    "features": Command(cmd_features, "Frozen features of an encoder on a dataset -> one .npz (computed once, "
                        "checked against the encoder's and the dataset's content hashes).", (
        "python -m hico features --encoder runs/hico/seed0/encoder.pt --data data/pocus --image-size 64 "
        "--out f.npz",
        "python -m hico features --encoder E --data data/pocus --bn adabn --folds data/pocus/folds.csv --out a.npz",
    )),
    "evaluate": Command(cmd_evaluate, "Run one protocol (linear probe, k-NN, fine-tuning) on folds of a "
                        "dataset -> one metrics.json per fold.", (
        "python -m hico evaluate --encoder runs/hico/seed0/encoder.pt --data data/pocus "
        "--folds data/pocus/folds.csv --fold 0 1 --out m0.json m1.json",
        "python -m hico evaluate --encoder runs/hico/seed0/encoder.pt --data data/pocus --folds data/pocus/folds.csv "
        "--fold 0 --protocol finetune --args '{\"variant\": \"released\", \"epochs\": 4}' --out m0.json",
    )),
    "aggregate": Command(cmd_aggregate, "All metrics.json files -> the results tables.", (
        "python -m hico aggregate --metrics-dir runs/demo/eval --out-dir results/tables",
    ), parser_elsewhere=True),
    "plot": Command(cmd_plot, "Results tables -> figures.", (
        "python -m hico plot --tables results/tables --out-dir results/figures",
    ), parser_elsewhere=True),
    "export": Command(cmd_export, "An encoder -> a timm model folder (model.safetensors, config.json, "
                      "README.md model card); optionally push it to the Hugging Face Hub.", (
        "python -m hico export runs/pretrain/pool/hico/seed0/encoder.pt --out exports/hico_seed0",
        "python -m hico export ENCODER --out DIR --tables results/tables --push my-user/hico-resnet18-us",
    )),
    "methods": Command(cmd_methods, "List the registered methods and controls.", ("python -m hico methods",)),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:{width}s}  {c.description}" for name, c in COMMANDS.items()]
    return (f"usage: python -m hico [--debug] [-v | -q] [--version] COMMAND [args]\n\n{__doc__.strip()}\n\n"
            "commands:\n" + "\n".join(lines))


@contextlib.contextmanager
def _usage_errors_as_user_errors():
    """argparse prints its usage and exits on a bad command line; the CLI's rule for a user
    error is one line and exit 2, so every parser's ``error`` raises :class:`UsageError`."""
    def error(parser: argparse.ArgumentParser, message: str):
        raise UsageError(f"{message} (see python -m {parser.prog} --help)")

    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


VERBOSE_FLAGS, QUIET_FLAGS = ("-v", "--verbose"), ("-q", "--quiet")
GLOBAL_FLAGS = ("--debug", *VERBOSE_FLAGS, *QUIET_FLAGS)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # global flags are taken wherever they stand, as --debug always was (no command uses them)
    debug = "--debug" in argv
    verbose, quiet = any(a in VERBOSE_FLAGS for a in argv), any(a in QUIET_FLAGS for a in argv)
    argv = [a for a in argv if a not in GLOBAL_FLAGS]
    try:
        level = verbosity_level(verbose, quiet)
    except ValueError as e:
        print(f"hico: error: {e}", file=sys.stderr)
        return USER_ERROR_EXIT
    configure_logging(level)
    # usage, version and the error line below are the CLI's own answers, not library logs: print
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"hico-bench {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"hico: error: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)} "
              "(python -m hico --help)", file=sys.stderr)
        return USER_ERROR_EXIT
    try:
        with _usage_errors_as_user_errors():
            return COMMANDS[argv[0]](argv[1:])
    except HicoError as e:
        if debug:
            raise
        message = " ".join(str(e).split("\n"))
        hint = "" if isinstance(e, UsageError) else " (rerun with --debug for the traceback)"
        print(f"hico {argv[0]}: error: {message}{hint}", file=sys.stderr)
        return USER_ERROR_EXIT
