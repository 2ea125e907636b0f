"""What every experiment entry point shares: clean errors and the ``--data`` argument."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

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
