"""The model card (README.md) of a router checkpoint, regenerated on every save.

Rendered from the checkpoint's own config dict, so it can never disagree with the weights it
describes: `HAPSModelCardData` collects what the card shows, ``model_card_template.md`` (a Jinja
template) lays it out, and huggingface_hub's `ModelCardData` writes the YAML front matter.
"""

import json
import logging
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from haps_core.hub.files import CONFIG_NAME

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "model_card_template.md"
PLACEHOLDER_REPO_ID = "ORG/NAME"
CARD_TAGS = ("haps", "llm-routing", "router")
NO_TEXT = "no text (the integrations need `prompt_styles=` for it)"

# Titles of the metrics `haps eval` prints (haps_core.evaluation._COLUMNS; a test keeps them in
# step), and what they mean, for the evaluation table.
METRIC_TITLES: dict[str, str] = {
    "aiq": "AIQ",
    "q_at_c_best": "Q@C_best",
    "gap_recovered": "GR",
    "saving": "saving",
    "saving95": "saving@95",
}
METRIC_LEGEND = (
    "AIQ: area under the cost-quality frontier on a log cost axis. Q@C_best: frontier quality at "
    "the best single action's cost. GR: share of the gap between the best single action and the "
    "oracle recovered. saving / saving@95: cost cut at the best single action's quality / at 95% "
    "of it."
)


def _cell(value: Any) -> str:
    """A Markdown table cell: floats to 3 decimals, missing or NaN as '-', pipes escaped."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return " ".join(str(value).split()).replace("|", "\\|")


def _number(value: Any) -> str:
    """A number in its shortest exact-enough form (prices, hyper-parameters); else like `_cell`."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return _cell(value)


def _is_hub_repo_id(name: Any) -> bool:
    """Whether `name` can be a Hub model id (so it may appear as ``base_model``), not a path."""
    if not isinstance(name, str) or name.count("/") != 1 or os.path.isabs(name) or os.path.exists(name):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _evaluation_view(evaluation: Any) -> dict[str, Any] | None:
    """The evaluation dict ({"description", "columns", "rows"}) as headers and formatted rows.

    Raises:
        ValueError: the dict does not have that shape (it is set by `haps eval --record`).
    """
    if not evaluation:
        return None
    expected = "{'description': str, 'columns': [str, ...], 'rows': [{column: value}, ...]}"
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("rows", []), list):
        msg = f"router `evaluation` must look like {expected}, got {evaluation!r:.200}"
        raise ValueError(msg)
    rows = evaluation.get("rows") or []
    if not rows:
        return None
    if not all(isinstance(r, dict) for r in rows):
        msg = f"router `evaluation['rows']` must be a list of dicts ({expected}), got {rows!r:.200}"
        raise ValueError(msg)
    columns = evaluation.get("columns")
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        msg = f"router `evaluation['columns']` must be a list of column names, got {columns!r:.200}"
        raise ValueError(msg)
    return {
        "description": " ".join(str(evaluation.get("description") or "").split()),
        "headers": [METRIC_TITLES.get(c, c) for c in columns],
        "rows": [[_cell(r.get(c)) for c in columns] for r in rows],
        "legend": METRIC_LEGEND if any(c in METRIC_TITLES for c in columns) else "",
    }


# Order of the training summary in the card (config.json stores keys sorted); others follow.
TRAINING_ORDER = (
    "files",
    "groups",
    "rows",
    "rows_skipped",
    "queries",
    "backends",
    "actions",
    "observed_cells",
    "has_cost",
    "train_queries",
    "train_rows",
    "heldout",
    "epochs_run",
    "median_best_epoch",
    "heldout_regret",
    "device",
    "seconds",
    "parameters",
)


def _flat_items(data: Any, skip: tuple[str, ...] = (), order: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(key, text) pairs of a summary dict: scalars, short lists, and small flat dicts."""
    if not isinstance(data, dict):
        return []
    rank = {k: i for i, k in enumerate(order)}
    items = []
    for key, value in sorted(data.items(), key=lambda kv: rank.get(kv[0], len(rank))):
        if key in skip:
            continue
        if isinstance(value, dict):
            if not value or len(value) > 10 or any(isinstance(v, dict | list) for v in value.values()):
                continue
            text = ", ".join(f"{k}={_number(v)}" for k, v in value.items())
        elif isinstance(value, list):
            if not value or len(value) > 20:
                continue
            text = ", ".join(_number(v) for v in value)
        else:
            text = _number(value)
        items.append((str(key), text))
    return items


@dataclass
class HAPSModelCardData:
    """What a router's model card shows; built from a checkpoint config by `from_config`.

    Attributes mirror the template's variables; `to_card_data` gives the YAML front matter
    (library, license, tags, pipeline tag, base model) as huggingface_hub's `ModelCardData`.
    """

    load_name: str = PLACEHOLDER_REPO_ID
    title: str = ""
    architecture: str = "haps"
    hidden: int = 0
    members: int = 1
    embed_dim: int = 0
    use_structural: bool = False
    n_params: str = "?"
    format_version: int = 1
    encoder: dict[str, str] = field(default_factory=dict)
    base_model: str | None = None
    backends: list[dict[str, str]] = field(default_factory=list)
    n_actions: int = 0
    prompt_styles: list[dict[str, str]] = field(default_factory=list)
    training: list[tuple[str, str]] = field(default_factory=list)
    training_config: list[tuple[str, str]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    versions: list[tuple[str, str]] = field(default_factory=list)
    license: str = "apache-2.0"

    @classmethod
    def from_config(cls, config: dict[str, Any], load_name: str | None = None) -> "HAPSModelCardData":
        """Collects the card's content from a checkpoint's config dict (see `haps_core.hub`)."""
        space = config["space"]
        rc = config["router_config"]
        enc = config.get("encoder") or {}
        train = config.get("training") or {}
        encoder_id = enc.get("id") or "unknown"
        if enc.get("fine_tuned"):
            mode, note = "fine-tuned", "Its fine-tuned weights are saved under `encoder/`."
        else:
            mode = "frozen"
            note = "It is referenced by id, not copied into this checkpoint."
            if enc.get("package"):
                note += f" Installed offline by the `{enc['package']}` package."
        backends = [
            {
                "name": _cell(b["name"]),
                "input_price": _number(b.get("input_price", 0.0)),
                "output_price": _number(b.get("output_price", 0.0)),
                "grid": "; ".join(
                    f"{k}: {', '.join(_cell(x) if isinstance(x, str) else _number(x) for x in v)}"
                    for k, v in (b.get("parameters") or {}).items()
                )
                or "-",
            }
            for b in space["backends"]
        ]
        styles = [
            {"name": _cell(name), "text": _cell(text) if text else NO_TEXT if text is None else "(none)"}
            for name, text in sorted((space.get("prompt_styles") or {}).items())
        ]
        versions = [("haps", str(config.get("library_version", "?")))]
        versions += [(k, str(v)) for k, v in (config.get("framework_versions") or {}).items() if k != "haps"]
        return cls(
            load_name=load_name or PLACEHOLDER_REPO_ID,
            title=str(train.get("name") or ""),
            architecture=str(rc.get("architecture", "haps")),
            hidden=int(rc.get("hidden", 0)),
            members=int(rc.get("members", 1)),
            embed_dim=int(rc.get("embed_dim", 0)),
            use_structural=bool(rc.get("use_structural", False)),
            n_params=_cell(train.get("parameters", "?")),
            format_version=int(config.get("format_version", 1)),
            encoder={
                "id": str(encoder_id),
                "revision": str(enc.get("revision") or "unpinned"),
                "mode": mode,
                "note": note,
            },
            base_model=encoder_id if _is_hub_repo_id(encoder_id) else None,
            backends=backends,
            n_actions=len(space["actions"]),
            prompt_styles=styles,
            training=_flat_items(train, skip=("name", "training_config"), order=TRAINING_ORDER),
            training_config=_flat_items(train.get("training_config")),
            evaluation=_evaluation_view(config.get("evaluation")),
            versions=versions,
        )

    def to_card_data(self) -> Any:
        """The YAML front matter as a `huggingface_hub.ModelCardData`."""
        from huggingface_hub import ModelCardData

        return ModelCardData(
            library_name="haps",
            license=self.license,
            tags=list(CARD_TAGS),
            pipeline_tag="text-classification",
            base_model=self.base_model,
        )

    def template_vars(self) -> dict[str, Any]:
        """The Jinja variables of ``model_card_template.md``."""
        return {
            "load_name": self.load_name,
            "title": self.title,
            "architecture": self.architecture,
            "hidden": self.hidden,
            "members": self.members,
            "embed_dim": self.embed_dim,
            "use_structural": self.use_structural,
            "n_params": self.n_params,
            "format_version": self.format_version,
            "encoder": self.encoder,
            "backends": self.backends,
            "n_backends": len(self.backends),
            "n_actions": self.n_actions,
            "prompt_styles": self.prompt_styles,
            "training": self.training,
            "training_config": self.training_config,
            "evaluation": self.evaluation,
            "versions": self.versions,
        }


def card_template() -> str:
    """The shipped Jinja template of the card."""
    return resources.files("haps_core.hub").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")


def render_model_card(config: dict[str, Any], load_name: str | None = None) -> str:
    """Renders the README.md of a checkpoint from its config dict.

    Args:
        config: the checkpoint's config (`haps_core.hub.checkpoint_config`).
        load_name: what the loading snippet passes to `from_pretrained` (the Hub repo id when
            pushing); default a placeholder ``ORG/NAME``.

    Raises:
        ValueError: the config's `evaluation` entry does not have the documented shape.
    """
    from huggingface_hub import ModelCard

    data = HAPSModelCardData.from_config(config, load_name)
    card = ModelCard.from_template(data.to_card_data(), template_str=card_template(), **data.template_vars())
    return str(card).rstrip("\n") + "\n"


def render_card_for_repo(folder: Path, repo_id: str) -> str:
    """The model card of a saved checkpoint with `repo_id` in its loading snippet."""
    config = json.loads((Path(folder) / CONFIG_NAME).read_text(encoding="utf-8"))
    return render_model_card(config, load_name=repo_id)
