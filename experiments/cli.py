"""What every experiment entry point shares: clean errors, ``--data``, config files with
``--config.KEY=VALUE`` overrides, the default workdir."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable

from absl import flags
from ml_collections import config_flags

from fer_jax.errors import FerError


def run_main(main_fn: Callable[[], int | None]) -> None:
    """Runs ``main_fn()`` and exits with its return code (None -> 0).

    A :class:`FerError` becomes ``error: <message>`` on stderr and exit code 2, without a
    traceback; Ctrl-C becomes ``interrupted`` and exit code 130.
    """
    try:
        code = main_fn()
    except FerError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--data PATH`` (default None: the embedded synthetic data)."""
    parser.add_argument(
        "--data", metavar="PATH", default=None,
        help="FER-2013 source: fer2013.csv / icml_face_data.csv / train.csv (.gz too), the "
             "Kaggle image-folder layout as a folder or .zip, a TFDS-prepared fer2013 dir, or a "
             "folder holding one of these. Default: the embedded SYNTHETIC faces (not FER-2013).")


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
        raise FerError(f"bad --config arguments {argv}: {error}") from None
    if flag_values["config"].value is None:
        raise FerError("--config PATH is required (e.g. experiments/configs/smoke.py)")
    config, config_path = flag_values.config, flag_values["config"].config_filename
    try:
        config.keys()   # a config file that failed to load raises its error on first access
    except OSError as error:
        raise FerError(f"--config {config_path}: {error}") from None
    return config, config_path


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None,
                      default_config: pathlib.Path | None = None):
    """``(args, config, config_path)``: ``parser``'s own arguments plus ``--config PATH``
    (``default_config`` when not given) and ``--config.KEY=VALUE`` overrides. ``--data``, when
    the parser has it and it is given, replaces ``config.data.source``."""
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if default_config is not None and not any(
            a == "--config" or a.startswith("--config=") for a in rest):
        rest = ["--config", str(default_config)] + rest
    config, config_path = parse_config(rest)
    if getattr(args, "data", None) is not None:
        config.data.source = args.data
    return args, config, config_path


def default_workdir(workdir: str | None, config_path: str) -> pathlib.Path:
    """``workdir``, or ``checkpoints/<config file stem>`` when it is None."""
    return pathlib.Path(workdir or pathlib.Path("checkpoints") / pathlib.Path(config_path).stem)


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
