"""Runs the reliability suite (tests/reliability) and prints its summary as a markdown table.

    python scripts/reliability_report.py [extra pytest arguments]

Every test of the suite records, under one category, the faults it injected, the calls it made
through HAPS's public API, the calls lost (a call that ended with neither exactly one result nor
one HAPS error, or with a wrong or truncated answer: must be 0) and the distinct inputs it tried
(tests/reliability/conftest.py). This script runs pytest with ``HAPS_RELIABILITY_JSON`` pointing
at a temporary file, then sums those records per category. Tests marked xfail (open bugs the suite
documents) are listed under the table. The exit status is pytest's, or 1 when a call was lost.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = "tests/reliability"


def run_suite(extra: list[str]) -> tuple[int, dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reliability.json"
        env = {
            **os.environ,
            "HAPS_RELIABILITY_JSON": str(out),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITE, *extra]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if not out.exists():
            sys.stderr.write(done.stdout[-5000:] + done.stderr[-5000:])
            sys.exit(f"the suite wrote no report (pytest exit status {done.returncode})")
        data = json.loads(out.read_text(encoding="utf-8"))
    summary = [
        line for line in done.stdout.splitlines() if " in " in line and ("passed" in line or "failed" in line)
    ]
    data["pytest_summary"] = summary[-1].strip("= ") if summary else ""
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-8000:])
    return done.returncode, data, seconds


def table(data: dict) -> str:
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in data["records"]:
        row = totals[r["category"]]
        row["tests"] += 1
        for key in ("faults", "calls", "lost", "inputs"):
            row[key] += r[key]
    lines = [
        "| fault / input category | tests | faults injected | calls made | calls lost | inputs tried |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    grand: dict[str, int] = defaultdict(int)
    for category in data["categories"]:
        row = totals.get(category)
        if row is None:
            lines.append(f"| {category} | 0 | - | - | - | - |")
            continue
        lines.append(
            f"| {category} | {row['tests']} | {row['faults']:,} | {row['calls']:,} | {row['lost']:,} "
            f"| {row['inputs']:,} |"
        )
        for key, value in row.items():
            grand[key] += value
    lines.append(
        f"| **total** | {grand['tests']} | {grand['faults']:,} | {grand['calls']:,} | {grand['lost']:,} "
        f"| {grand['inputs']:,} |"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    status, data, seconds = run_suite(argv)
    print(table(data))
    print()
    xfails = [o for o in data["outcomes"] if o["outcome"] in ("xfailed", "xpassed")]
    if xfails:
        print("Open bugs the suite documents (strict xfail: they fail the suite once fixed, to be unmarked):")
        for o in xfails:
            reason = (o["xfail_reason"] or "").split(":", 1)[0]
            print(f"- `{o['test'].split('::', 1)[1]}` ({o['outcome']}): {reason}")
        print()
    print(f"pytest: {data['pytest_summary']} (whole command {seconds:.0f} s)")
    lost = sum(r["lost"] for r in data["records"])
    if lost:
        print(f"FAILED: {lost} call(s) lost")
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
