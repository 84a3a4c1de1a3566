"""The shipped default router's decisions are pinned byte for byte (refactors must not move them).

REAL: the default router shipped in the package (static-minilm encoder, safetensors weights), the
`haps route` CLI and `HAPSRouter.route`. The pinned files in tests/data hold its decisions on
cookbook/sample_queries.jsonl at cost weights 0, 20 and 200, with every runner-up; only a commit
that changes the router on purpose rewrites them (`python scripts/pin_default_router.py`).
"""

import subprocess
import sys

from tests.helpers.pins import CLI_DECISIONS, DECISIONS, cli_command, pinned_decisions_text


def test_route_decisions_match_the_pinned_ones_byte_for_byte():
    from haps_core import HAPSRouter

    router = HAPSRouter.from_pretrained("haps-default")
    assert pinned_decisions_text(router) == DECISIONS.read_text()


def test_cli_decisions_match_the_pinned_file_byte_for_byte(tmp_path):
    out = tmp_path / "decisions.jsonl"
    subprocess.run([sys.executable, *cli_command(out)], check=True, capture_output=True, cwd=tmp_path)
    assert out.read_bytes() == CLI_DECISIONS.read_bytes()
