"""Prompt styles: the system-message text a routed ``prompt_style`` stands for, and adding it.

A style is not sent to the model as a parameter; its text is added to the conversation, so an
unknown style or one without text is an error rather than a silently ignored choice.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from haps_core.catalog import DEFAULT_PROMPT_STYLE, RoutingSpace
from haps_core.errors import RoutingError

logger = logging.getLogger(__name__)

M = TypeVar("M")

PROMPT_STYLE = "prompt_style"
"""The action parameter that names a prompt style (sent as a system message, not to the model)."""


def resolve_prompt_styles(
    space: RoutingSpace | None, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The system-message text of every prompt style: the router's own, then ``overrides``.

    The router's own texts are exactly those its checkpoint records (never a built-in filled in
    here); a style recorded with no text is absent until ``overrides`` gives it one. Overrides may
    change a style's text or add styles the router does not know (harmless: the router never
    chooses them). Texts must be strings; `checked_prompt_styles` refuses empty ones.

    Args:
        space: the router's routing space (its ``prompt_styles``), or None for overrides only.
        overrides: style name -> system-message text.

    Returns:
        style name -> text.
    """
    styles = dict(space.prompt_styles) if space is not None else {}
    for name, text in (overrides or {}).items():
        if not isinstance(name, str) or not name:
            msg = f"`prompt_styles` keys must be non-empty strings, got {name!r}"
            raise ValueError(msg)
        if not isinstance(text, str):
            msg = (
                f"`prompt_styles[{name!r}]` must be a string (the system-message text), "
                f"got {type(text).__name__}: {text!r}"
            )
            raise TypeError(msg)
        styles[name] = text
    return styles


def system_message_for(style: str | None, styles: Mapping[str, str]) -> str | None:
    """The system message to send for ``style``, or None when the style adds nothing.

    ``None``, ``""`` and ``"default"`` add nothing (unless ``"default"`` was given a text).
    Any other style must have a non-empty text: silently sending a routed "cot" call without its
    instruction would make the router's choice meaningless, so that is an error.

    Raises:
        RoutingError: the style is unknown or has an empty text.
    """
    if not style:
        return None
    text = styles.get(style)
    if style == DEFAULT_PROMPT_STYLE:
        return text or None
    if text is None:
        msg = (
            f"prompt style {style!r} has no system-message text; known styles: {sorted(styles)}. "
            f"Pass prompt_styles={{{style!r}: '...'}} to define it."
        )
        raise RoutingError(msg)
    if not text.strip():
        msg = (
            f"prompt style {style!r} has an empty system-message text, so choosing it would "
            f"change nothing. Pass prompt_styles={{{style!r}: '...'}} to define it."
        )
        raise RoutingError(msg)
    return text


def styles_without_text(space: RoutingSpace, styles: Mapping[str, str]) -> list[str]:
    """Prompt styles that actions of ``space`` use but that have no text (for early checks)."""
    missing = set()
    for action in space.actions:
        style = action.prompt_style
        if style != DEFAULT_PROMPT_STYLE and not (styles.get(style) or "").strip():
            missing.add(style)
    return sorted(missing)


def checked_prompt_styles(space: RoutingSpace, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """`resolve_prompt_styles`, checked up front: every style the router can choose has a text.

    Called when an integration is built, so a router trained without texts for its styles fails
    there, not at the first call; there is no fallback to built-in texts or to an empty one.

    Raises:
        ValueError: an action of ``space`` uses a style with no (or an empty) text.
    """
    styles = resolve_prompt_styles(space, overrides)
    missing = styles_without_text(space, styles)
    if missing:
        msg = (
            f"the router can choose prompt styles {missing}, which have no system-message text "
            "(its checkpoint records them as 'no text'); pass `prompt_styles={name: text}` for them "
            "(`haps_core.catalog.BUILTIN_PROMPT_STYLES` holds built-in texts to opt into), or "
            "retrain with `haps train --prompt-styles FILE`"
        )
        raise ValueError(msg)
    return styles


def with_system_text(
    messages: Sequence[M],
    text: str | None,
    is_system: Callable[[M], bool],
    extend: Callable[[M, str], M],
    make: Callable[[str], M],
) -> list[M]:
    """``messages`` with a style's text: appended to the first system message, or prepended as one.

    Appending keeps the caller's own system instructions first and in charge; a second system
    message would be rejected or reordered by several chat templates. The input is not modified.

    Args:
        messages: the conversation, in any framework's message type.
        text: the style's text; None or empty adds nothing.
        is_system: whether a message is a system message.
        extend: ``(system message, text) -> a copy with the text appended``.
        make: ``text -> a new system message``.
    """
    out = list(messages)
    if not text:
        return out
    for i, message in enumerate(out):
        if is_system(message):
            out[i] = extend(message, text)
            return out
    return [make(text), *out]
