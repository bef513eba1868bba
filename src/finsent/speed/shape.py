"""A random-weights model with the exact shape of the published Llama-FinSent-S, and the Llama 3 tokenizer.

Speed does not depend on weight values, so ``finsent bench --shape llama-finsent-s`` measures the
published model's real CPU/GPU speed without its weights. The tokenizer decides how many tokens a
headline costs; the real Llama 3 one (128,256 tokens) comes from Meta's ``llama-models`` package
(``llama_models/llama3/tokenizer.model``, tiktoken format), converted once with transformers'
tiktoken converter into ``~/.cache/finsent/llama3-tokenizer``. Without that package the SmolLM2
tokenizer stands in, and the result says so.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

from finsent.core.models import cache_dir, embedded_model_dir
from finsent.core.outputs import output_dir

logger = logging.getLogger(__name__)

SHAPES = ("llama-finsent-s",)
LLAMA_MODELS_DIST = "llama-models"
LLAMA3_TOKENIZER_FILE = "llama_models/llama3/tokenizer.model"
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
# Meta's 256 special tokens after the 128,000 BPE tokens (llama_models/llama3/tokenizer.py).
_NAMED_SPECIAL = [
    BOS, EOS, "<|reserved_special_token_0|>", "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
    "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    "<|image|>",
]
SPECIAL_TOKENS = _NAMED_SPECIAL + [f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(_NAMED_SPECIAL))]


def published_shape_config():
    """Llama-3.2-1B's config with every MLP pruned to 4,916 neurons: 913,770,496 parameters.

    The sizes are meta-llama/Llama-3.2-1B's published ``config.json``
    (https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json); 4,916 = 8,192 - int(0.4 x 8,192)
    is the 40 % GLU prune that the published Llama-FinSent-S has.
    """
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128_256, hidden_size=2048, intermediate_size=4916, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, hidden_act="silu",
        max_position_embeddings=131_072, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500_000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        bos_token_id=128_000, eos_token_id=128_001, pad_token_id=128_001,
    )


def random_shape_model(shape: str = "llama-finsent-s", dtype=None, seed: int = 0):
    """The shape's model with random weights (normal, std 0.02: realistic magnitudes, no denormals)."""
    import torch
    from transformers import LlamaForCausalLM

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: choose one of {', '.join(SHAPES)}")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(published_shape_config()).to(dtype or torch.float32)
    model.config._name_or_path = f"random-weights {shape} shape"
    return model.eval()


def llama3_tokenizer():
    """(tokenizer, note): the real Llama 3 tokenizer when ``llama-models`` is installed, else SmolLM2's."""
    from transformers import AutoTokenizer

    target = cache_dir() / "llama3-tokenizer"
    if not (target / "tokenizer.json").is_file():
        try:
            source = Path(importlib.metadata.distribution(LLAMA_MODELS_DIST).locate_file(LLAMA3_TOKENIZER_FILE))
        except importlib.metadata.PackageNotFoundError:
            source = None
        if source is None or not source.is_file():
            logger.warning("package %s not installed: using SmolLM2's tokenizer (token counts differ)",
                           LLAMA_MODELS_DIST)
            tok = AutoTokenizer.from_pretrained(embedded_model_dir())
            return tok, f"SmolLM2 tokenizer (install {LLAMA_MODELS_DIST} for the real Llama 3 one)"
        _convert_llama3_tokenizer(source, target)
    return AutoTokenizer.from_pretrained(target), "Llama 3 tokenizer (llama-models llama3/tokenizer.model)"


def _convert_llama3_tokenizer(source: Path, target: Path) -> None:
    """tiktoken BPE file -> tokenizer.json with BOS prepended like Llama 3's fast tokenizer (once, ~10 s)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    logger.info("converting %s to %s (once)", source, target)
    backend = TikTokenConverter(vocab_file=str(source), extra_special_tokens=SPECIAL_TOKENS).converted()
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]),
    ])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=EOS,
                                  model_max_length=131_072)
    # Written beside the target and renamed into place; a folder there that finsent did not write is refused.
    with output_dir(target, kind="cache", what="Llama 3 tokenizer cache folder") as tmp:
        tok.save_pretrained(tmp)
