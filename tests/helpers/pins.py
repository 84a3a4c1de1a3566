"""The decisions the shipped default router's pins hold: `HAPSRouter.route` on the cookbook's
sample queries at cost weights 0, 20 and 200, with every runner-up (one writer, one reader).

Pins compare every choice, runner-up order, flag and string exactly, and every float to a relative
1e-5 or an absolute 1e-6 (margins are differences of qualities near 1): the static encoder is
rebuilt from MiniLM on each machine, and another CPU (AMD against Intel) moves float32 results in
the 7th digit; a refactor that changes a decision moves far more.
"""

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "cookbook" / "sample_queries.jsonl"
DECISIONS = ROOT / "tests" / "data" / "default_router_decisions.json"
CLI_DECISIONS = ROOT / "tests" / "data" / "default_router_cli_decisions.jsonl"
WEIGHTS = "0,20,200"


def pinned_decisions_text(router: Any) -> str:
    """The pinned JSON text of `router`'s decisions on the sample queries."""
    queries = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    out = []
    for weight in (float(w) for w in WEIGHTS.split(",")):
        decisions = router.route([q["query"] for q in queries], cost_weight=weight)
        out.extend(
            {"id": q["id"], "cost_weight": weight, "decision": d.to_dict()}
            for q, d in zip(queries, decisions, strict=True)
        )
    return json.dumps(out, indent=1, sort_keys=True)


def cli_command(output: Path) -> list[str]:
    """The `haps route` arguments (after the interpreter) that write the pinned CLI file."""
    args = ["-m", "haps_core.cli", "route", "--router", "haps-default", "--input", str(SAMPLES)]
    return [*args, "--output", str(output), "--cost-weight", WEIGHTS]


FLOAT_REL = 1e-5
FLOAT_ABS = 1e-6


def assert_same(got: Any, pinned: Any, where: str = "$") -> None:
    """`got` equals `pinned` exactly, except floats, which agree to `FLOAT_REL` or `FLOAT_ABS`."""
    if isinstance(pinned, float) and isinstance(got, int | float) and not isinstance(got, bool):
        assert got == pytest.approx(pinned, rel=FLOAT_REL, abs=FLOAT_ABS), f"{where}: {got!r} != {pinned!r}"
    elif isinstance(pinned, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(pinned), f"{where}: keys {got!r} != {pinned!r}"
        for key, value in pinned.items():
            assert_same(got[key], value, f"{where}.{key}")
    elif isinstance(pinned, list):
        assert isinstance(got, list) and len(got) == len(pinned), f"{where}: {got!r} != {pinned!r}"
        for i, (a, b) in enumerate(zip(got, pinned, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert type(got) is type(pinned) and got == pinned, f"{where}: {got!r} != {pinned!r}"
