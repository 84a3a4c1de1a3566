"""Framework integrations of HAPS: LangChain (`haps_integrations.langchain`) and LlamaIndex
(`haps_integrations.llamaindex`). Each package needs its extra: ``pip install "haps[langchain]"``
or ``pip install "haps[llamaindex]"``. This package itself imports neither framework.
"""

import importlib


def require_extra(module: str, integration: str, framework: str, extra: str) -> None:
    """Imports ``module``, or raises an ImportError that names the pip command of ``extra``."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        msg = f'{integration} needs {framework}, which is not installed: pip install "haps[{extra}]"'
        raise ImportError(msg) from exc
