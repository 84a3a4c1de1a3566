"""The shipped default router's decisions are pinned (refactors must not move them): every choice,
runner-up, flag and string exactly, floats to rel 1e-5 / abs 1e-6 (`tests/helpers/pins.py` says why).

REAL: the default router shipped in the package (static-minilm encoder, safetensors weights), the
`haps route` CLI and `HAPSRouter.route`. The pinned files in tests/data hold its decisions on
cookbook/sample_queries.jsonl at cost weights 0, 20 and 200, with every runner-up; only a commit
that changes the router on purpose rewrites them (`python scripts/pin_default_router.py`).
"""

import json
import subprocess
import sys

from tests.helpers.pins import CLI_DECISIONS, DECISIONS, assert_same, cli_command, pinned_decisions_text


def test_route_decisions_match_the_pinned_ones():
    from haps_core import HAPSRouter

    router = HAPSRouter.from_pretrained("haps-default")
    assert_same(json.loads(pinned_decisions_text(router)), json.loads(DECISIONS.read_text()))


def test_cli_decisions_match_the_pinned_file(tmp_path):
    out = tmp_path / "decisions.jsonl"
    subprocess.run([sys.executable, *cli_command(out)], check=True, capture_output=True, cwd=tmp_path)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert_same(got, [json.loads(line) for line in CLI_DECISIONS.read_text().splitlines()])
