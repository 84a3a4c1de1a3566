"""The model card (README.md) of a router checkpoint, regenerated on every save."""

from typing import Any

_TEMPLATE = """---
library_name: haps
license: apache-2.0
tags:
- llm-routing
- haps
pipeline_tag: text-classification
base_model: {encoder_id}
---

# HAPS router{title_suffix}

A HAPS router (hierarchical LLM routing with joint model and parameter search, arXiv
2601.05903). For each query it predicts the quality and cost of every action of its catalog (a
backend LLM with concrete generation parameters) and picks the action with the best utility
`quality - cost_weight * cost`; the cost weight is chosen per call.

## Intended use

Put it in front of the backends of its catalog to choose, per call, the backend and its
temperature / prompt style, trading quality against cost. It only knows the actions below and
the kind of queries it was trained on.

## Catalog

| backend | input $/1M tok | output $/1M tok | parameters |
| --- | --- | --- | --- |
{backend_rows}

{n_actions} actions; prompt styles: {styles}.

## Model

Query encoder `{encoder_id}` (revision `{encoder_revision}`, {encoder_mode}){structural};
architecture `{architecture}` (trunk width {hidden}); {n_params} router parameters.

## Training data

{training}

## Evaluation

{evaluation}

## How to use

```python
from haps_core.model import HAPSRouter

router = HAPSRouter.from_pretrained("{load_name}")
decision = router.route(["Prove that the square root of 2 is irrational."], cost_weight=50.0)[0]
print(decision.backend, decision.parameters)
```

LangChain: `HAPSRunnable(router=router, backends={{name: chat_model, ...}})` from
`haps_integrations.langchain`. LlamaIndex: `HAPSLLM(router=router, llms={{name: llm, ...}})` from
`haps_integrations.llamaindex`.

## Limitations

- Predictions are only as good as the logs: actions with few observations are uncertain, and
  queries unlike the training queries may be routed poorly.
- Temperature effects in evaluation logs are mostly sampling noise; the router is evaluated for
  not inventing gains there, not for finding them.
- Prices are those of the training logs; if a provider changes prices, retrain or adjust.

Library version {library_version}.
"""


def _table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    head = "| " + " | ".join(keys) + " |\n| " + " | ".join("---" for _ in keys) + " |"
    body = "\n".join("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in rows)
    return head + "\n" + body


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if v != v else f"{v:.3f}"
    return "-" if v is None else str(v)


def render_model_card(config: dict[str, Any], load_name: str = "ORG/NAME") -> str:
    """Renders the card from a checkpoint's config dict (see `haps_core.hub`)."""
    space = config["space"]
    rc = config["router_config"]
    enc = config.get("encoder", {})
    backend_rows = "\n".join(
        f"| {b['name']} | {b['input_price']:g} | {b['output_price']:g} | "
        + "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in b.get("parameters", {}).items())
        + " |"
        for b in space["backends"]
    )
    train = config.get("training") or {}
    if train:
        training = "\n".join(f"- {k}: {v}" for k, v in train.items() if not isinstance(v, dict | list))
    else:
        training = "Not recorded."
    ev = config.get("evaluation") or {}
    if ev.get("rows"):
        evaluation = (
            ev.get("description", "") + "\n\n" + _table(ev["rows"], ev.get("columns", list(ev["rows"][0])))
        )
    else:
        evaluation = "Not evaluated yet: run `haps eval --router DIR --logs FILE`."
    return _TEMPLATE.format(
        title_suffix=f": {train['name']}" if train.get("name") else "",
        encoder_id=enc.get("id", "unknown"),
        encoder_revision=enc.get("revision") or "package",
        encoder_mode="fine-tuned" if enc.get("fine_tuned") else "frozen",
        structural=" + structural text features" if rc.get("use_structural") else "",
        architecture=rc.get("architecture"),
        hidden=rc.get("hidden"),
        n_params=train.get("parameters", "?"),
        backend_rows=backend_rows,
        n_actions=len(space["actions"]),
        styles=", ".join(sorted(space.get("prompt_styles", {}))),
        training=training,
        evaluation=evaluation,
        load_name=load_name,
        library_version=config.get("library_version", "?"),
    )
