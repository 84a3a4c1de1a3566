"""The integrations' import paths, and the error that names the extra when a framework is missing."""

import importlib
import subprocess
import sys

import pytest

OLD_NAMES = {
    "haps_core.dispatch": [
        "MAX_ROUTING_CHARS",
        "PROMPT_STYLE",
        "Attempt",
        "acall_with_fallback",
        "call_costs",
        "call_with_fallback",
        "candidates",
        "check_attempts",
        "check_call_timeout",
        "check_max_backends",
        "check_router",
        "checked_prompt_styles",
        "decision_record",
        "default_wait",
        "interrupted_stream",
        "is_transient",
        "parameter_report",
        "resolve_prompt_styles",
        "route_checked",
        "routing_lock",
        "routing_text",
        "served_candidate",
        "styles_without_text",
        "system_message_for",
        "warn_unreachable",
    ],
    "haps_integrations.langchain": [
        "COST_WEIGHT_KEY",
        "MAX_COST_KEY",
        "MECHANISMS",
        "ChatHAPS",
        "HAPSRunnable",
        "extract_query_text",
        "apply_system_message",
        "to_messages",
    ],
    "haps_integrations.llamaindex": [
        "COST_WEIGHT_KEY",
        "HAPSLLM",
        "MAX_COST_KEY",
        "MECHANISMS",
        "HAPSSelector",
        "HAPSSelectorResult",
        "extract_query_text",
        "apply_parameters",
        "apply_system_message",
        "message_text",
    ],
}
"""What other code imported from the three modules before they became packages of the same names."""


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_old_import_paths_still_work(module):
    imported = importlib.import_module(module)
    assert [n for n in OLD_NAMES[module] if not hasattr(imported, n)] == []
    assert set(imported.__all__) <= set(dir(imported))


@pytest.mark.parametrize(
    ("package", "framework", "extra"),
    [
        ("haps_integrations.langchain", "langchain_core", "langchain"),
        ("haps_integrations.llamaindex", "llama_index", "llamaindex"),
    ],
)
def test_import_error_names_the_extra(package, framework, extra):
    code = (
        "import sys\n"
        f"sys.modules[{framework!r}] = None\n"
        "try:\n"
        f"    import {package}\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f'pip install "haps[{extra}]"' in out
