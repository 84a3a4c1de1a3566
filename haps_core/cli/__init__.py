"""The `haps` command line: train, route, eval, push, collect, feedback, logs (a module each).

Every sub-command returns an exit code: 0 on success, 2 on bad input or another expected
failure (one clear line on stderr, nothing half-written), 1 on an unexpected failure. The
commands import torch and the router inside their functions, so `haps --help`, `haps --version`
and argument errors answer at once.
"""

import argparse
import logging
import sys
from collections.abc import Sequence

from haps_core.cli import collect, evaluate, feedback, logs, push, route, train
from haps_core.cli.io import UsageError

__all__ = ["UsageError", "build_parser", "main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("haps")
    except PackageNotFoundError:
        return "0.0.0"


def _add_verbosity(p: argparse.ArgumentParser, suffix: str) -> None:
    more = "more logging (-vv: debug)"
    p.add_argument("-v", "--verbose", action="count", default=0, dest=f"verbose{suffix}", help=more)
    p.add_argument(
        "-q", "--quiet", action="store_true", dest=f"quiet{suffix}", help="errors only: no notes or progress"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="haps", description="Hierarchical LLM routing (HAPS).")
    parser.add_argument("--version", action="version", version=f"haps {_version()}")
    _add_verbosity(parser, "")
    sub = parser.add_subparsers(dest="command", required=True)
    # the order `haps --help` lists them in
    for command in (train, route, push, evaluate, collect, feedback, logs):
        command.add_parser(sub)
    for p in sub.choices.values():  # the same options after the sub-command: `haps route -v ...`
        _add_verbosity(p, "_sub")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `haps` console script."""
    from haps_core.errors import HAPSError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # `haps train --processes N` relaunches itself with these arguments
    args.verbose = args.verbose + args.verbose_sub
    args.quiet = args.quiet or args.quiet_sub
    if args.quiet and args.verbose:
        print(f"haps {args.command}: error: give `--quiet` or `--verbose`, not both", file=sys.stderr)
        return 2
    level = logging.ERROR if args.quiet else logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UsageError, ValueError, FileNotFoundError, KeyError, TypeError, HAPSError) as exc:
        print(f"haps {args.command}: error: {exc}", file=sys.stderr)
        return 2
