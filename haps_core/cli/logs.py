"""`haps logs export`: decision records + feedback from a store -> a routing log `haps train` reads."""

import argparse
import sys


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("logs", help="production records and feedback as routing logs")
    actions = p.add_subparsers(dest="logs_command", required=True)
    export = actions.add_parser("export", help="records + feedback -> routing log (format v1, JSONL)")
    export.add_argument("--store", required=True, metavar="STORE", help="a .db/.sqlite/.jsonl path or a URL")
    export.add_argument("--output", required=True, metavar="LOG.jsonl")
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from haps_core.feedback import export_log, open_store

    if not str(args.output).endswith(".jsonl"):
        msg = f"`--output` must be a .jsonl file, got {args.output!r}"
        raise ValueError(msg)
    store = open_store(args.store)
    try:
        summary = export_log(store, args.output)
    finally:
        store.close()
    print(
        f"wrote {summary.rows} rows to {args.output} ({summary.records} records: "
        f"{summary.without_feedback} without feedback, {summary.failed} failed, "
        f"{summary.without_text} without text)",
        file=sys.stderr,
    )
    return 0
