"""Framework integrations of HAPS: LangChain (`haps_integrations.langchain`) and LlamaIndex
(`haps_integrations.llamaindex`). Each module needs its extra: ``pip install "haps[langchain]"``
or ``pip install "haps[llamaindex]"``. This package itself imports neither framework.
"""
