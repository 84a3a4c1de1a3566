"""Routers with random weights over a catalog whose backends have 2, 9 and 3 actions (shared by
the tests of the fused, numpy and compiled heads). Nothing is trained: every weight is moved
off its initialisation, so a path that drops a term shows."""

import torch

from haps_core.catalog import Action, RoutingSpace
from haps_core.model import HAPSRouter, RouterConfig


def uneven_router(arch: str, members: int, linear_only: tuple[int, ...] = ()) -> HAPSRouter:
    """Backends of 2, 9 and 3 actions (the largest in the middle): the low-level heads' groups
    reorder the backends. The members in `linear_only` get all-zero deep heads (what early
    stopping may keep), so the fused heads run only their linear path."""
    torch.manual_seed(3)
    actions = [Action.make("x", temperature=t) for t in (0.0, 1.0)]
    actions += [Action.make("big", temperature=t / 8) for t in range(9)]
    actions += [Action.make("y", temperature=t) for t in (0.0, 0.5, 1.0)]
    space = RoutingSpace.from_actions(actions, {"x": (0.5, 1.5), "big": (3.0, 15.0), "y": (0.1, 0.2)})
    cfg = RouterConfig(embed_dim=12, hidden=24, members=members, architecture=arch, pgn_hidden=5)
    router = HAPSRouter(space, cfg, torch.randn(2, 12))
    with torch.no_grad():
        for p in router.parameters():
            p.add_(0.1 * torch.randn_like(p))
        router.feature_mean.normal_()
        router.feature_std.uniform_(0.5, 2.0)
        for i in linear_only:
            if i < members:
                net = router.members[i]
                for p in (net.flat_head if arch == "flat" else net.high_head).parameters():
                    p.zero_()
                if arch == "haps":
                    m, k = net._pgn_shapes
                    net.low_base[m * k + k :] = 0.0
                    net.pgn[-1].weight[m * k + k :] = 0.0
                    net.pgn[-1].bias[m * k + k :] = 0.0
    return router.eval()
