"""The HAPS router: its hyper-parameters (`config`), one ensemble member (`net`), the fused
inference heads (`fused`), the router and its routing API (`router`), and its checkpoints
(`checkpoint`, which goes through `haps_core.hub`).
"""

from haps_core.model.checkpoint import push_router, router_config_dict, save_router
from haps_core.model.config import ARCHITECTURES, FEATURE_CLIP, RouterConfig
from haps_core.model.fused import FusedRouterHeads, fuse_heads
from haps_core.model.loading import from_pretrained, load_router_folder
from haps_core.model.net import RouterNet
from haps_core.model.router import HAPSRouter

__all__ = [
    "ARCHITECTURES",
    "FEATURE_CLIP",
    "FusedRouterHeads",
    "HAPSRouter",
    "RouterConfig",
    "RouterNet",
    "from_pretrained",
    "fuse_heads",
    "load_router_folder",
    "push_router",
    "router_config_dict",
    "save_router",
]
