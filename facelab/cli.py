"""The ``facelab`` command line: one sub-command per stage, each implemented in its module.

Each module named in :data:`COMMANDS` defines ``add_arguments(parser)`` and
``run_cli(args) -> int``; only the module of the sub-command being run is imported.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

# sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("facelab.doctor", "check Python, TensorFlow, GPUs and optional backends"),
    "demo-data": ("facelab.demo.cli", "generate the offline demo photo collection"),
    "demo-web": ("facelab.demo.web_cli", "serve a demo collection as a misbehaving local web"),
    "collect": ("facelab.collect.cli", "download / import photos into a collection manifest"),
    "merge": ("facelab.collect.merge_cli", "join the shard folders of a sharded collect"),
    "faces": ("facelab.faces.cli", "detect faces, keep one-face photos, write aligned crops"),
    "split": ("facelab.data.cli", "make the stratified train/val(/test) split, once"),
    "fit": ("facelab.learn.cli", "labels, split, balancing, training and bias analysis"),
    "bias": ("facelab.analysis.cli", "bias verdict, tables and figures of any classifier's "
             "predictions (a CSV)"),
    "predict": ("facelab.recognize.cli", "name every face in photos, 'unknown' for strangers"),
    "export": ("facelab.recognize.cli", "export a trained model as SavedModel or TFLite"),
    "run-notebooks": ("facelab.notebook_runner", "run the numbered notebooks headless"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser (importing only ``only``'s module when given)."""
    parser = argparse.ArgumentParser(
        prog="facelab", description="Celebrity face recognition, from a URL list to a "
        "bias-checked CNN. Run 'facelab COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            importlib.import_module(module_name).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from facelab.doctor import quiet_tensorflow

    quiet_tensorflow()   # before any command imports it: start-up lines off, errors kept
    only = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    from facelab.lock import FolderBusyError  # a second writer of a stage folder

    try:
        return int(module.run_cli(args) or 0)
    except (FileNotFoundError, ValueError, FolderBusyError) as error:
        print(f"facelab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"facelab {args.command}: interrupted; finished work is kept, run the same "
              "command again to resume", file=sys.stderr)
        return 130


def entry() -> None:
    """The console script: :func:`main`, then exit without TensorFlow's slow teardown.

    Once TensorFlow is loaded, the interpreter's exit takes about a second more (a third of a
    ``facelab predict`` on one photo).  Every file a command writes is closed when it
    returns, so the process flushes its streams and leaves at once.
    """
    status = main()
    if "tensorflow" not in sys.modules:
        raise SystemExit(status)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    entry()
