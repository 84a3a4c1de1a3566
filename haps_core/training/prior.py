"""A hierarchical prior on the linear path, for logs that observe each action only a few times.

Each action's weights and bias (quality and log-cost) are the sum of a global part, its
backend's part, its (backend, prompt style) part and its own deviation; the two finer parts are
under an L2 penalty `ratio` times stronger than the coarse ones. An action seen a handful of
times then borrows from its backend's other configurations (temperatures, prompt styles)
instead of being fitted alone, which is what a per-action logistic regression does.
"""

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

SKIP_PRIORS = ("none", "hierarchical")
# The deviations' L2 as a multiple of the coarse parts', chosen on held-out queries with the L2.
SKIP_PRIOR_RATIOS = (1.0, 10.0)


class HierarchicalLinear(nn.Module):
    """A linear map to [quality logits of A actions, log-costs of A actions], parametrised as
    global + backend + (backend, style) + action parts.

    Args:
        backend_of: [A] backend index of each action.
        style_of: [A] prompt-style index of each action.
        in_dim: input features.
        bias_init: [2 * A] starting biases (the per-action observed means): their mean over
            the actions, per half, starts the global bias; every other part starts at zero.
        seen: [A] whether the action was observed (unseen ones do not set the global start).
    """

    backend_of: torch.Tensor  # buffers
    group_of: torch.Tensor
    bias0: torch.Tensor

    def __init__(
        self,
        backend_of: torch.Tensor,
        style_of: torch.Tensor,
        in_dim: int,
        bias_init: torch.Tensor,
        seen: torch.Tensor,
    ) -> None:
        super().__init__()
        n_actions = int(backend_of.shape[0])
        n_backends = int(backend_of.max()) + 1 if n_actions else 0
        key = backend_of.long() * (int(style_of.max()) + 1) + style_of.long()
        _, group_of = torch.unique(key, return_inverse=True)
        n_groups = int(group_of.max()) + 1 if n_actions else 0
        self.register_buffer("backend_of", backend_of.long())
        self.register_buffer("group_of", group_of)
        device = bias_init.device
        halves = bias_init.reshape(2, n_actions)
        pool = seen if bool(seen.any()) else torch.ones_like(seen)
        self.register_buffer("bias0", halves[:, pool].mean(1, keepdim=True).detach().clone())
        self.w_global = nn.Parameter(torch.zeros(2, 1, in_dim, device=device))
        self.w_backend = nn.Parameter(torch.zeros(2, n_backends, in_dim, device=device))
        self.w_group = nn.Parameter(torch.zeros(2, n_groups, in_dim, device=device))
        self.w_action = nn.Parameter(torch.zeros(2, n_actions, in_dim, device=device))
        self.b_backend = nn.Parameter(torch.zeros(2, n_backends, device=device))
        self.b_group = nn.Parameter(torch.zeros(2, n_groups, device=device))
        self.b_action = nn.Parameter(torch.zeros(2, n_actions, device=device))

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """([2A, in_dim] weights, [2A] biases) in `nn.Linear`'s layout (quality rows first)."""
        w = (
            self.w_global
            + self.w_backend.index_select(1, self.backend_of)
            + self.w_group.index_select(1, self.group_of)
            + self.w_action
        )
        b = (
            self.bias0
            + self.b_backend.index_select(1, self.backend_of)
            + self.b_group.index_select(1, self.group_of)
            + self.b_action
        )
        return w.reshape(-1, w.shape[-1]), b.reshape(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight_and_bias()
        return x @ w.T + b

    def penalty(self, l2: float, ratio: float) -> torch.Tensor:
        """`l2` on the global and backend weights (and backend biases), `l2 * ratio` on the
        (backend, style) and action deviations, weights and biases."""
        coarse = self.w_global.pow(2).sum() + self.w_backend.pow(2).sum() + self.b_backend.pow(2).sum()
        fine = (
            self.w_group.pow(2).sum()
            + self.w_action.pow(2).sum()
            + self.b_group.pow(2).sum()
            + self.b_action.pow(2).sum()
        )
        return l2 * coarse + l2 * ratio * fine

    @torch.no_grad()
    def write_to(self, linear: nn.Linear) -> None:
        """Copies the combined weights and biases into `linear` (the member's linear path)."""
        w, b = self.weight_and_bias()
        linear.weight.copy_(w)
        linear.bias.copy_(b)
