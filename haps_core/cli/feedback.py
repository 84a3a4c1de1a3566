"""`haps feedback`: attach an outcome to a served call in a record store, by its decision id."""

import argparse

from haps_core.cli.io import UsageError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("feedback", help="attach a score to a recorded HAPS decision")
    p.add_argument("--store", required=True, metavar="STORE", help="a .db/.sqlite/.jsonl path or a URL")
    p.add_argument("--id", required=True, dest="decision_id", metavar="DECISION_ID")
    p.add_argument("--score", required=True, metavar="X", help="a number in [0, 1], or up/down")
    p.set_defaults(func=cmd_feedback)


def parse_score(text: str) -> float | str:
    """A CLI score: a number (checked later to lie in [0, 1]) or a thumbs word."""
    try:
        return float(text)
    except ValueError:
        return text


def cmd_feedback(args: argparse.Namespace) -> int:
    from haps_core.feedback import UnknownDecisionError, give_feedback, open_store

    store = open_store(args.store)
    try:
        entry = give_feedback(store, args.decision_id, parse_score(args.score))
    except UnknownDecisionError as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.close()
    print(f"{entry.decision_id}\t{entry.score:g}\t{entry.kind}")
    return 0
