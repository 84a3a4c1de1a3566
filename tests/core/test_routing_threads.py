"""route() runs torch on the router's `routing_threads` and leaves torch's own setting as it was.

REAL: torch's thread count, the shipped default router (`route` through the fused heads), and
Python threads routing at once.
"""

import threading

import pytest
import torch

from haps_core.model.threads import check_threads, torch_threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_block_runs_on_n_threads_and_the_count_is_restored(two_threads) -> None:
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        with torch_threads(1):  # nested: still 1, and the outer block restores
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with torch_threads(None):  # None: torch's setting untouched
        assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_concurrent_blocks_restore_once_the_last_leaves(two_threads) -> None:
    inside, release = threading.Barrier(4), threading.Event()
    seen: list[int] = []

    def work() -> None:
        with torch_threads(1):
            inside.wait()
            release.wait(10)
            seen.append(torch.get_num_threads())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert seen == [1, 1, 1, 1]
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_bad_thread_counts_are_refused_by_name(bad: object) -> None:
    with pytest.raises(ValueError, match="routing_threads"):
        check_threads(bad)


def test_route_uses_the_routers_threads_and_restores_torchs(two_threads, monkeypatch) -> None:
    from haps_core.model.fused import FusedRouterHeads
    from haps_core.model.router import HAPSRouter
    from haps_core.paths import default_router_dir

    router = HAPSRouter.from_pretrained(str(default_router_dir()))
    counts: list[int] = []
    real = FusedRouterHeads.predictions

    def spy(self, features):  # the real heads, with the thread count they ran on noted
        counts.append(torch.get_num_threads())
        return real(self, features)

    monkeypatch.setattr(FusedRouterHeads, "predictions", spy)
    texts = [f"question {i}: what is {i} times {i + 1}?" for i in range(8)]  # above the numpy path
    one = router.route(texts)
    router.routing_threads = None
    again = router.route(texts)
    assert counts == [1, 2]
    assert [d.action_index for d in one] == [d.action_index for d in again]
    assert torch.get_num_threads() == 2
    router.routing_threads = 0
    with pytest.raises(ValueError, match="routing_threads"):
        router.route(texts)
