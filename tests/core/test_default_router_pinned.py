"""The shipped default router's decisions are pinned byte for byte (refactors must not move them).

REAL: the default router shipped in the package (MiniLM encoder, safetensors weights), the
`haps route` CLI and `HAPSRouter.route`. The pinned files in tests/data were written before the
package restructuring, by the same calls: decisions on cookbook/sample_queries.jsonl at cost
weights 0, 20 and 200, with every runner-up.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SAMPLES = ROOT / "cookbook" / "sample_queries.jsonl"


def test_route_decisions_match_the_pinned_ones_byte_for_byte():
    from haps_core import HAPSRouter

    router = HAPSRouter.from_pretrained("haps-default")
    queries = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    out = []
    for weight in (0.0, 20.0, 200.0):
        decisions = router.route([q["query"] for q in queries], cost_weight=weight)
        out.extend(
            {"id": q["id"], "cost_weight": weight, "decision": d.to_dict()}
            for q, d in zip(queries, decisions)
        )
    pinned = (DATA / "default_router_decisions.json").read_text()
    assert json.dumps(out, indent=1, sort_keys=True) == pinned


def test_cli_decisions_match_the_pinned_file_byte_for_byte(tmp_path):
    out = tmp_path / "decisions.jsonl"
    cmd = [sys.executable, "-m", "haps_core.cli", "route", "--router", "haps-default"]
    cmd += ["--input", str(SAMPLES), "--output", str(out), "--cost-weight", "0,20,200"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    assert out.read_bytes() == (DATA / "default_router_cli_decisions.jsonl").read_bytes()
