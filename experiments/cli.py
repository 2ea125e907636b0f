"""What every experiment entry point shares: clean errors, ``--data``/``--skip-bad``, config
files with ``--config.KEY=VALUE`` overrides, the default workdir and up-front checks that
outputs can be written."""

from __future__ import annotations

import argparse
import difflib
import os
import pathlib
import shutil
import signal
import sys
from collections.abc import Callable

import ml_collections
from absl import flags
from ml_collections import config_flags

from fer_jax import classes, inference, two_tier
from fer_jax.errors import FerError, Interrupted

MIN_FREE_MB = 16  # an output directory with less free space is refused up front


def run_main(main_fn: Callable[[], int | None]) -> None:
    """Runs ``main_fn()`` and exits with its return code (None -> 0).

    A :class:`FerError` becomes ``error: <message>`` on stderr and exit code 2, without a
    traceback; a run that stopped on a signal after saving (:class:`Interrupted`) or Ctrl-C
    elsewhere becomes ``interrupted: ...`` and exit code 128 + the signal number.
    """
    try:
        code = main_fn()
    except Interrupted as stopped:
        print(f"interrupted: {stopped}", file=sys.stderr)
        sys.exit(128 + stopped.signal_number)
    except FerError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    sys.exit(code or 0)


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--data PATH`` (default None: the embedded synthetic data) and ``--skip-bad``."""
    parser.add_argument(
        "--data", metavar="PATH", default=None,
        help="FER-2013 source: fer2013.csv / icml_face_data.csv / train.csv (.gz too), the "
             "Kaggle image-folder layout as a folder or .zip, a TFDS-prepared fer2013 dir, or a "
             "folder holding one of these. Default: the embedded SYNTHETIC faces (not FER-2013).")
    parser.add_argument(
        "--skip-bad", action="store_true",
        help="skip bad records (listed in the output) instead of stopping at the first one; "
             "with a config: sets config.data.strict=False")


def parse_config(argv: list[str]):
    """``(config, config_path)`` from ``--config PATH`` and ``--config.key=value`` overrides."""
    flag_values = flags.FlagValues()
    argv = ["experiment"] + list(argv)
    # sys_argv: the override flags are found in these arguments, not in the process's sys.argv
    config_flags.DEFINE_config_file("config", None, "experiment config file (get_config())",
                                    flag_values=flag_values, lock_config=True, sys_argv=argv)
    try:
        flag_values(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
        raise FerError(_bad_override(argv[1:]) or f"bad --config arguments {argv}: {error}"
                       ) from None
    if flag_values["config"].value is None:
        raise FerError("--config PATH is required (e.g. experiments/configs/smoke.py)")
    config, config_path = flag_values.config, flag_values["config"].config_filename
    try:
        config.keys()   # a config file that failed to load raises its error on first access
    except OSError as error:
        raise FerError(f"--config {config_path}: {error}") from None
    return config, config_path


def _bad_override(argv: list[str]) -> str | None:
    """What is wrong with the first ``--config.KEY`` override naming no field of the config,
    or None when they all name one."""
    config, config_path = parse_config([a for a in argv if not a.startswith("--config.")])
    names = [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    return next(filter(None, (_key_problem(config, name, config_path) for name in names)), None)


def _key_problem(config: ml_collections.ConfigDict, name: str, config_path: str) -> str | None:
    """Why the dotted ``name`` is no field of ``config`` (with the nearest names), or None."""
    node, path = config, []
    for part in name.split("."):
        if not isinstance(node, ml_collections.ConfigDict):
            return (f"config key {'.'.join(path)!r} is a {type(node).__name__}, not a section: "
                    f"--config.{name} cannot set a field in it")
        if part not in node:
            near = [".".join(path + [n]) for n in difflib.get_close_matches(part, node.keys())]
            hint = (f"did you mean {' or '.join(map(repr, near))}?" if near
                    else f"{config_path} has {', '.join(sorted(node.keys()))}")
            return f"unknown config key {'.'.join(path + [part])!r}; {hint}"
        node, path = node[part], path + [part]
    return None


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None,
                      default_config: pathlib.Path | None = None):
    """``(args, config, config_path)``: ``parser``'s own arguments plus ``--config PATH``
    (``default_config`` when not given) and ``--config.KEY=VALUE`` overrides. ``--data``, when
    the parser has it and it is given, replaces ``config.data.source``; ``--skip-bad`` sets
    ``config.data.strict=False``."""
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if default_config is not None and not any(
            a == "--config" or a.startswith("--config=") for a in rest):
        rest = ["--config", str(default_config)] + rest
    config, config_path = parse_config(rest)
    if getattr(args, "data", None) is not None:
        config.data.source = args.data
    if getattr(args, "skip_bad", False):
        config.data.strict = False
    return args, config, config_path


def default_workdir(workdir: str | None, config_path: str) -> pathlib.Path:
    """``workdir``, or ``checkpoints/<config file stem>`` when it is None."""
    return pathlib.Path(workdir or pathlib.Path("checkpoints") / pathlib.Path(config_path).stem)


def check_workdir(path: str | os.PathLike, flag: str = "--workdir") -> pathlib.Path:
    """``path`` if it is, or can be created as, a writable directory with free space; else a
    FerError naming ``flag``. Creates nothing: call it before any work."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise FerError(f"{flag} {path}: exists and is not a directory")
    _check_can_write_in(path, f"{flag} {path}")
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> pathlib.Path:
    """``path`` if a file can be written there (its folder exists or can be created, is
    writable and has free space); else a FerError naming ``flag``. Creates nothing."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise FerError(f"{flag} {path}: is a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise FerError(f"{flag} {path}: not writable (permission denied)")
    _check_can_write_in(path.parent, f"{flag} {path}")
    return path


def _check_can_write_in(directory: pathlib.Path, what: str) -> None:
    """Checks the nearest existing folder of ``directory`` (itself, else the one it would be
    created in): a directory, writable, with :data:`MIN_FREE_MB` free."""
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    where = existing if existing == directory else f"{existing} (where it would be created)"
    if not existing.is_dir():
        raise FerError(f"{what}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FerError(f"{what}: {where} is not writable (permission denied)")
    free_mb = shutil.disk_usage(existing).free // 2**20
    if free_mb < MIN_FREE_MB:
        raise FerError(f"{what}: no space left on {existing} ({free_mb} MiB free, need "
                       f"{MIN_FREE_MB})")


def experiment_parser(prog: str, description: str, *, example: str,
                      default_config: pathlib.Path | None = None,
                      default_workdir: pathlib.Path | None = None) -> argparse.ArgumentParser:
    """The parser of a config-driven entry point: ``--data``, ``--workdir`` and, in the help,
    ``--config PATH`` (required unless ``default_config``) with ``--config.KEY=VALUE``
    overrides (``example``: one such override); read it with :func:`parse_with_config`."""
    config_help = (f"--config PATH picks a config file (default: {default_config.name})"
                   if default_config else "--config PATH names the config file (required)")
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        epilog=f"{config_help}; --config.KEY=VALUE overrides one field, e.g. {example}.")
    add_data_argument(parser)
    parser.add_argument("--workdir", default=None if default_workdir is None
                        else str(default_workdir),
                        help=f"output directory (default: "
                             f"{default_workdir or 'checkpoints/<config name>'})")
    return parser


def add_model_arguments(parser: argparse.ArgumentParser, *, split: str,
                        split_help: str = "labelled split to score") -> None:
    """The options naming a trained model and how to read it (``experiments.evaluate`` and
    ``experiments.calibrate``): ``--workdir``, ``--data``, ``--split`` (default ``split``),
    ``--tta``, ``--grouping``, ``--checkpoint``, ``--routing``."""
    parser.add_argument("--workdir", required=True,
                        help="run directory of a trained classifier (flat or two-tier)")
    add_data_argument(parser)
    parser.add_argument("--split", choices=("val", "test"), default=split, help=split_help)
    parser.add_argument("--tta", action="store_true",
                        help="average predictions over flip and 2-pixel shifts")
    parser.add_argument("--grouping", default=None, choices=sorted(classes.GROUPINGS),
                        help="label setting to score in (None: the model's)")
    parser.add_argument("--checkpoint", choices=inference.CHECKPOINTS, default="latest",
                        help="the final (latest) checkpoint, or the best by val accuracy")
    parser.add_argument("--routing", choices=two_tier.ROUTINGS, default=None,
                        help="two-tier models: routing (None: the model's own)")


def load_model(args: argparse.Namespace) -> tuple[inference.Classifier, classes.Grouping]:
    """``(classifier, grouping)`` named by :func:`add_model_arguments`' options: a flat or
    two-tier model, read in ``--grouping`` (default: its own)."""
    workdir = pathlib.Path(args.workdir)
    if not workdir.is_dir():
        raise FerError(f"{workdir}: no such run directory")
    classifier = inference.load(workdir, args.checkpoint, routing=args.routing)
    return classifier, classes.grouping(args.grouping) if args.grouping else classifier.grouping
