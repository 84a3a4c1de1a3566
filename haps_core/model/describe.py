"""Short, readable descriptions of a router (its repr): what it routes among and how it was made."""

from typing import Any


def router_repr(router: Any) -> str:
    """``HAPSRouter(9 backends, 36 actions, encoder=..., 3 members x hidden 256, trained on ...)``."""
    enc = router.encoder_info.get("id") or getattr(router.encoder, "encoder_id", None)
    if router.encoder_info.get("fine_tuned"):
        enc = f"{enc} (fine-tuned)"
    cfg = router.config
    parts = [
        f"{len(router.space.backends)} backends",
        f"{len(router.space.actions)} actions",
        f"encoder={enc!r}" if enc else "no encoder",
        f"{cfg.members} member{'s' if cfg.members != 1 else ''} x hidden {cfg.hidden}",
    ]
    summary = router.training_summary
    if summary:
        trained = f"trained on {summary.get('train_queries', summary.get('queries', '?'))} queries"
        when = summary.get("date") or summary.get("trained_at")
        parts.append(f"{trained} ({when})" if when else trained)
    else:
        parts.append("untrained")
    if not router.has_cost:
        parts.append("no cost")
    return f"HAPSRouter({', '.join(parts)})"
