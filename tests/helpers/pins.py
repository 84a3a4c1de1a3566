"""The decisions the shipped default router's pins hold: `HAPSRouter.route` on the cookbook's
sample queries at cost weights 0, 20 and 200, with every runner-up (one writer, one reader)."""

import json
from pathlib import Path
from typing import Any

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
