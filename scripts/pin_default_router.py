"""Rewrites the pinned decisions of the shipped default router (tests/data/default_router_*).

Run it only in a commit that changes the default router on purpose (`make default-router`), and
say so in that commit: `tests/core/test_default_router_pinned.py` exists to catch every other
change of its decisions. Usage: ``python scripts/pin_default_router.py``.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SAMPLES = ROOT / "cookbook" / "sample_queries.jsonl"


def main() -> int:
    from haps_core import HAPSRouter

    router = HAPSRouter.from_pretrained("haps-default")
    queries = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    out = []
    for weight in (0.0, 20.0, 200.0):
        decisions = router.route([q["query"] for q in queries], cost_weight=weight)
        out.extend(
            {"id": q["id"], "cost_weight": weight, "decision": d.to_dict()}
            for q, d in zip(queries, decisions, strict=True)
        )
    (DATA / "default_router_decisions.json").write_text(json.dumps(out, indent=1, sort_keys=True))
    cmd = [sys.executable, "-m", "haps_core.cli", "route", "--router", "haps-default", "--input"]
    cmd += [str(SAMPLES), "--output", str(DATA / "default_router_cli_decisions.jsonl")]
    subprocess.run([*cmd, "--cost-weight", "0,20,200"], check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
