"""One REAL router shared across threads: the decisions must equal sequential routing.

Nothing about routing is faked: the router is a REAL `HAPSRouter` (tiny random BERT encoder with
its Hugging Face fast tokenizer, trained in a second on a synthetic log; see conftest.py). The
texts mix short queries with ones longer than the encoder's 64-token limit, so that tokenizer
truncation is exercised on every thread. The backends of `HAPSRunnable` are FAKE echo models, and
never called: only routing is under test.
"""

import threading

from haps_integrations.langchain import HAPSRunnable
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.reliability_ledger import THREADS

N_THREADS = 8
WORDS = ["the", "cat", "dog", "sat", "on", "a", "mat", "router", "query", "model", "cheap"]


def texts(n: int, long_every: int = 5) -> list[str]:
    """``n`` distinct queries; every ``long_every``-th is longer than the encoder's 64 tokens."""
    out = []
    for i in range(n):
        length = 70 + i % 40 if i % long_every == 0 else 3 + i % 12
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(length)]
        out.append(" ".join(words) + f" {i}")
    return out


def run_threads(route_one, queries: list[str]) -> tuple[dict[int, list], list[BaseException]]:
    """Each of 8 threads routes every query, one call per query, starting at its own offset."""
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(N_THREADS)

    def work(k: int) -> None:
        offset = k * len(queries) // N_THREADS
        order = list(range(offset, len(queries))) + list(range(offset))
        got: list = [None] * len(queries)
        try:
            start.wait()
            for i in order:
                got[i] = route_one(queries[i])
        except BaseException as exc:
            errors.append(exc)
        results[k] = got

    threads = [threading.Thread(target=work, args=(k,)) for k in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def key(decision):
    return (decision.backend, decision.action_index, round(decision.predicted_quality, 6))


def threaded_against_sequential(route_one, queries: list[str], ledger) -> list:
    """Routes `queries` one by one, then from N_THREADS threads at once; asserts no thread
    failed and every threaded decision equals the sequential one. Returns the sequential ones."""
    sequential = [route_one(q) for q in queries]
    results, errors = run_threads(route_one, queries)
    lost = sum(1 for k in results for i, got in enumerate(results[k]) if got != sequential[i])
    ledger(THREADS, faults=0, calls=N_THREADS * len(queries) + len(queries), lost=lost, inputs=len(queries))
    assert errors == []
    assert lost == 0
    return sequential


def test_8_threads_x_500_routes_through_an_integration_match_sequential(tiny_router, ledger):
    """REAL router, FAKE (unused) backends. 8 threads x 500 ``HAPSRunnable.route`` calls, one
    query each, on the shared router; every decision equals the sequential one, none fails."""
    haps = HAPSRunnable(
        router=tiny_router,
        backends={"small": EchoChatModel(tag="small"), "large": EchoChatModel(tag="large")},
    )
    queries = texts(500)
    sequential = threaded_against_sequential(lambda q: key(haps.route([q])[0]), queries, ledger)
    assert len(set(sequential)) > 100  # decisions depend on the query: the comparison means something


def test_8_threads_x_100_direct_router_routes_match_sequential(tiny_router, ledger):
    """REAL router, nothing faked: 8 threads x 100 ``HAPSRouter.route`` calls, one query each.

    Expected: every decision equals the sequential one (the encoder serialises tokenizer calls).
    """
    queries = texts(100, long_every=1)  # all long: each call flips the tokenizer's truncation
    threaded_against_sequential(lambda q: key(tiny_router.route([q])[0]), queries, ledger)
