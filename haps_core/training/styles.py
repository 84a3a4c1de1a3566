"""The prompt styles' system-message texts a router is trained with and records in its checkpoint.

Texts come from the caller (a mapping or a JSON file) or, only when asked for by name, from the
built-in set; a logged style left without one still trains and is recorded as having no text.
"""

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from haps_core.catalog import BUILTIN_PROMPT_STYLES, BUILTIN_PROMPT_STYLES_NAME, DEFAULT_PROMPT_STYLE
from haps_core.logs import RoutingLog

logger = logging.getLogger(__name__)

PromptStyles = Mapping[str, str] | str | os.PathLike[str]
"""Style name -> system text, the name ``"builtin"``, or the path of a JSON file of such a mapping."""


def load_prompt_styles(spec: PromptStyles | None) -> dict[str, str] | None:
    """The texts ``spec`` stands for, checked: non-empty names and non-empty string texts.

    Raises:
        ValueError: the file is missing or not a JSON object of strings, or a text is empty.
    """
    if spec is None:
        return None
    if isinstance(spec, str) and spec == BUILTIN_PROMPT_STYLES_NAME:
        return dict(BUILTIN_PROMPT_STYLES)
    if isinstance(spec, str | os.PathLike):
        path = Path(spec)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            msg = f"prompt styles file {str(path)!r} does not exist (or pass {BUILTIN_PROMPT_STYLES_NAME!r})"
            raise ValueError(msg) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            msg = f"prompt styles file {str(path)!r} is not readable JSON: {exc}"
            raise ValueError(msg) from None
        if not isinstance(data, dict):
            msg = f"prompt styles file {str(path)!r} must hold a JSON object (style name -> system text)"
            raise ValueError(msg)
        spec = data
    styles: dict[str, str] = {}
    for name, text in spec.items():
        if not isinstance(name, str) or not name.strip():
            msg = f"prompt style names must be non-empty strings, got {name!r}"
            raise ValueError(msg)
        if not isinstance(text, str):
            msg = f"prompt style {name!r}: the system text must be a string, got {type(text).__name__}"
            raise ValueError(msg)
        if not text.strip() and name != DEFAULT_PROMPT_STYLE:
            msg = f"prompt style {name!r} has an empty system text: give it one, or leave it out"
            raise ValueError(msg)
        styles[name] = text
    return styles


def with_prompt_styles(log: RoutingLog, spec: PromptStyles | None) -> RoutingLog:
    """``log`` with the texts of ``spec`` in its routing space; one warning for logged styles
    that still have no text (they train, told apart by name, and are recorded as "no text")."""
    styles = load_prompt_styles(spec)
    space = log.space.with_prompt_styles(styles) if styles else log.space
    missing = space.styles_without_text
    if missing:
        unused = sorted(set(styles or {}) - {a.prompt_style for a in space.actions})
        logger.warning(
            "prompt styles %s have no system-message text: they train (routing tells them apart by "
            "name) and are recorded as 'no text', but the integrations refuse to serve them until "
            "given one. Pass prompt_styles (haps train --prompt-styles FILE, or %r for the built-in "
            "texts)%s.",
            missing,
            BUILTIN_PROMPT_STYLES_NAME,
            f"; given but not in the log: {unused}" if unused else "",
        )
    return log if space is log.space else replace(log, space=space)
