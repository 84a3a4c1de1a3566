"""Rewrites the pinned decisions of the shipped default router (tests/data/default_router_*).

Run it only in a commit that changes the default router on purpose (`make default-router`), and
say so in that commit: `tests/core/test_default_router_pinned.py` exists to catch every other
change of its decisions. Usage: ``python scripts/pin_default_router.py``.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.pins import CLI_DECISIONS, DECISIONS, cli_command, pinned_decisions_text  # noqa: E402


def main() -> int:
    from haps_core import HAPSRouter

    DECISIONS.write_text(pinned_decisions_text(HAPSRouter.from_pretrained("haps-default")))
    subprocess.run([sys.executable, *cli_command(CLI_DECISIONS)], check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
