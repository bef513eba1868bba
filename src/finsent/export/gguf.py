"""A release as one GGUF file (llama.cpp, Ollama, llama-cpp-python), and label scoring through llama.cpp.

``export_gguf`` writes with the ``gguf`` package's ``GGUFWriter`` (no script from llama.cpp's repository):

- the ``llama`` architecture keys (block count, context, widths, heads, RoPE base and dimension, RMS eps);
  Llama 3's RoPE scaling (the published Llama-3.2 model) as the ``rope_freqs`` tensor llama.cpp divides by;
- tensors under llama.cpp's names (``token_embd``, ``blk.N.attn_q``...). ``q_proj`` and ``k_proj`` rows are
  permuted from Hugging Face's half-split RoPE layout to the interleaved pairs llama.cpp rotates;
- tied embeddings: no ``output.weight`` (llama.cpp then uses ``token_embd`` as the output projection);
- the BPE tokenizer: ``gpt2`` model, every token with its type (special added tokens are CONTROL), the
  merges, BOS/EOS/UNK/PAD ids, whether the tokenizer adds BOS, and the pre-tokenizer type llama.cpp picks
  its split regex by (read from ``tokenizer.json``: SmolLM's GPT-2 byte-level split -> ``smollm``, Llama 3's
  split pattern -> ``llama-bpe``; any other is refused rather than guessed);
- weights: ``f16`` (norms stay f32) or ``q8_0`` (blocks of 32 along each row). q8_0 needs every row length
  to be a multiple of 32. The pruned MLP width need not be: a width such as 922 (SmolLM2's 1536 pruned 40 %)
  or 4916 (Llama-3.2-1B's) is padded with zero neurons up to the next multiple (928, 4928). A zero neuron
  adds nothing: its gate and up rows give silu(0) x 0 = 0 and its down column multiplies that 0, so the file
  computes the release's function with 0.7 % / 0.2 % more MLP work. The base's own widths (hidden size,
  heads x head dim) cannot be padded that way and are refused for q8_0.
- ``q4_k_m``: the Python ``gguf`` package cannot write k-quants, so the file is written as f16 with the MLP padded
  to a multiple of 256 (4916 -> 5120) and then quantized by llama.cpp's own ``llama_model_quantize``
  (llama-cpp-python), exactly as ``llama-quantize F16 Q4_K_M`` would. The base's widths must be multiples of
  256 (Llama-3.2-1B's 2048 are; SmolLM2's 576 is not: use q8_0 there).

``GGUFScorer`` scores labels with llama-cpp-python exactly as ``FinSentClassifier`` does: the same prompt
pieces, tokenized by llama.cpp's own tokenizer, the shared instruction prefix kept in the KV cache, each
answer-prefix node evaluated once after the prompt.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from finsent.core.classify import answer_nodes, check_texts
from finsent.core.errors import ExportError, ExportInputError, UsageError
from finsent.core.labels import check_scheme, labels_of
from finsent.core.outputs import temporary_file
from finsent.core.prompts import CUE, answer_piece, instruction, news_piece, prefix_piece
from finsent.core.recipe_values import QUANT_BLOCK, QUANTS
from finsent.export.formats import check_exportable

logger = logging.getLogger(__name__)

# Llama 3's pre-tokenizer split pattern (tokenizer.json pre_tokenizer Split.pattern.Regex).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Weight types the gguf package writes itself; the others are made from an f16 file by llama.cpp.
WRITER_QUANTS = ("f16", "q8_0")
LLAMA_FTYPES = {"q4_k_m": lambda llama_cpp: llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def permute_rope(weight, n_head: int):
    """HF's q/k rows (per head: all first halves, then all second halves) -> llama.cpp's interleaved pairs."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def pre_tokenizer_type(tokenizer_json: dict) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for a tokenizer.json, or ExportInputError for one it cannot match."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "smollm"  # GPT-2's byte-level split (SmolLM / SmolLM2)
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers", [])
        kinds = [s.get("type") for s in steps]
        if kinds == ["Split", "ByteLevel"] and steps[0].get("pattern", {}).get("Regex") == LLAMA3_SPLIT \
                and not steps[1].get("use_regex", True):
            return "llama-bpe"
    raise ExportInputError(f"unsupported pre-tokenizer {json.dumps(pre)[:200]}: the GGUF export knows SmolLM's "
                           "byte-level split (smollm) and Llama 3's split (llama-bpe)")


def check_quantizable(config: dict, quant: str) -> None:
    """The base's row lengths (hidden size, heads x head dim) must be multiples of the type's block (q8_0: 32,
    q4_k_m: 256); else ExportInputError naming the types that fit. The MLP width is padded instead (``ffn_width``)."""
    block = QUANT_BLOCK[quant]
    widths = {"hidden_size": config["hidden_size"], "q/k/v width": config["num_attention_heads"] * head_dim(config)}
    bad = {k: v for k, v in widths.items() if v % block}
    if bad:
        what = ", ".join(f"{k} {v}" for k, v in bad.items())
        fits = [q for q, b in QUANT_BLOCK.items() if not any(v % b for v in widths.values())]
        raise ExportInputError(f"--quant {quant} packs each weight row in blocks of {block} values, so row lengths "
                               f"must be multiples of {block}, but this model has {what}: the base model's widths "
                               f"cannot be padded like a pruned MLP: export --quant {' or '.join(reversed(fits))}")


def ffn_width(config: dict, quant: str) -> int:
    """The MLP width written to the file: the release's, rounded up to the type's block with zero neurons."""
    block = QUANT_BLOCK[quant]
    return -(-config["intermediate_size"] // block) * block


def pad_ffn(name: str, array, width: int):
    """``array`` of a GLU tensor grown to ``width`` neurons with zeros: gate/up rows [width, hidden] (axis 0),
    down columns [hidden, width] (axis 1). Other tensors are returned as they are."""
    import numpy as np

    axis = {"ffn_gate.weight": 0, "ffn_up.weight": 0, "ffn_down.weight": 1}.get(name.split(".", 2)[-1])
    if axis is None or array.shape[axis] == width:
        return array
    pad = [(0, 0), (0, 0)]
    pad[axis] = (0, width - array.shape[axis])
    return np.pad(array, pad)


def head_dim(config: dict) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def read_config(release: Path) -> dict:
    config = json.loads((release / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "llama":
        raise ExportInputError(f"{release}: model_type {config.get('model_type')!r}; the GGUF export handles "
                               "Llama-architecture models only")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ExportInputError(f"{release}: attention or MLP biases are not supported by the GGUF export")
    if rope_type(config) not in ("default", "llama3"):
        raise ExportInputError(f"{release}: RoPE type {rope_type(config)!r} is not supported by the GGUF export "
                               "(the default RoPE and Llama 3's are)")
    return config


def rope_type(config: dict) -> str:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    return rope.get("rope_type") or rope.get("type") or "default"


def rope_freq_factors(release: Path):
    """Llama 3 RoPE as llama.cpp takes it: ``rope_freqs.weight``, the divisor of each default frequency, read
    from transformers' own llama3 frequencies (so the two can never differ)."""
    import torch
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = AutoConfig.from_pretrained(release)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, torch.device("cpu"))
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    base = config.rope_parameters["rope_theta"]
    default = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    return (default / scaled.float()).numpy()


def rope_theta(config: dict) -> float:
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)


def export_gguf(release, out, *, quant: str = "f16", overwrite: bool = False) -> Path:
    """Write ``release`` as the GGUF file ``out`` (through a temporary sibling, renamed when complete)."""
    import gguf

    release = check_exportable(release)
    out = Path(out)
    if quant not in QUANTS:
        raise ExportInputError(f"unknown quant {quant!r}: choose one of {', '.join(QUANTS)}")
    if out.is_dir():
        raise ExportInputError(f"--out {out} is a folder: name the .gguf file to write")
    if out.exists() and not overwrite:
        raise ExportInputError(f"{out} already exists: pass --overwrite to replace it")
    config = read_config(release)
    check_quantizable(config, quant)
    if quant not in WRITER_QUANTS:
        llama_cpp_for(quant)
    tok_json = json.loads((release / "tokenizer.json").read_text(encoding="utf-8"))
    pre = pre_tokenizer_type(tok_json)
    width = ffn_width(config, quant)
    if width != config["intermediate_size"]:
        logger.info("%s: MLP width %d padded to %d with zero neurons (same outputs) so %s packs every row",
                    release, config["intermediate_size"], width, quant)
    tensors = [(name, pad_ffn(name, array, width)) for name, array in gguf_tensors(release, config)]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_file(out)  # also removes what a killed export of the same file left
    written = quant if quant in WRITER_QUANTS else "f16"  # k-quants: f16 first, then llama.cpp's quantizer
    f16_tmp = f"{tmp}.f16" if written != quant else tmp
    try:
        writer = gguf.GGUFWriter(f16_tmp, "llama")
        write_metadata(writer, release, {**config, "intermediate_size": width}, written)
        write_tokenizer(writer, release, config, tok_json, pre)
        for name, array in tensors:
            add_tensor(writer, name, array, written)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        if f16_tmp != tmp:
            llama_quantize(Path(f16_tmp), Path(tmp), quant)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if f16_tmp != tmp:
            Path(f16_tmp).unlink(missing_ok=True)
    logger.info("wrote %s (%s, %d tensors, pre-tokenizer %s)", out, quant, len(tensors), pre)
    return out


def gguf_tensors(release: Path, config: dict) -> list[tuple[str, object]]:
    """(GGUF name, float32 numpy array) of every weight, q/k permuted; ExportError for an unknown tensor."""
    import numpy as np
    from safetensors import safe_open

    weights = {}
    for path in sorted(release.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            for key in f.keys():
                weights[key] = f.get_tensor(key).float().numpy()
    tied = config.get("tie_word_embeddings", False) or "lm_head.weight" not in weights
    out = []
    if rope_type(config) == "llama3":
        out.append(("rope_freqs.weight", np.ascontiguousarray(rope_freq_factors(release), dtype=np.float32)))
    for key, array in weights.items():
        if key == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif key == "model.norm.weight":
            name = "output_norm.weight"
        elif key == "lm_head.weight":
            if tied:
                continue
            name = "output.weight"
        elif key.startswith("model.layers."):
            layer, _, rest = key.removeprefix("model.layers.").partition(".")
            if rest not in LAYER_NAMES:
                raise ExportError(f"{release}: tensor {key} has no GGUF counterpart")
            name = f"blk.{int(layer)}.{LAYER_NAMES[rest]}"
            if rest == "self_attn.q_proj.weight":
                array = permute_rope(array, config["num_attention_heads"])
            elif rest == "self_attn.k_proj.weight":
                array = permute_rope(array, config.get("num_key_value_heads") or config["num_attention_heads"])
        else:
            raise ExportError(f"{release}: tensor {key} has no GGUF counterpart")
        out.append((name, np.ascontiguousarray(array, dtype=np.float32)))
    return out


def llama_cpp_for(quant: str):
    """The llama_cpp module that makes ``quant``, or UsageError before any work is done without it."""
    try:
        import llama_cpp
    except ImportError:
        raise UsageError(f"--quant {quant} is made by llama.cpp's quantizer: pip install llama-cpp-python "
                         "(the runtimes extra)") from None
    return llama_cpp


def llama_quantize(src: Path, out: Path, quant: str) -> None:
    """``src`` (an f16 GGUF) quantized to ``quant`` by llama.cpp's own quantizer (llama-cpp-python)."""
    import ctypes

    llama_cpp = llama_cpp_for(quant)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_FTYPES[quant](llama_cpp)
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise ExportError(f"llama.cpp's llama_model_quantize failed to make {quant} from {src}")


def add_tensor(writer, name: str, array, quant: str) -> None:
    import gguf
    import numpy as np

    if array.ndim == 1:  # norms stay float32, as llama.cpp's own converter keeps them
        writer.add_tensor(name, array.astype(np.float32))
    elif quant == "f16":
        writer.add_tensor(name, array.astype(np.float16))
    else:
        qtype = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)


def write_metadata(writer, release: Path, config: dict, quant: str) -> None:
    import gguf

    heads = config["num_attention_heads"]
    writer.add_name(release.name)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_rope_dimension_count(head_dim(config))
    if head_dim(config) != config["hidden_size"] // heads:
        writer.add_key_length(head_dim(config))
        writer.add_value_length(head_dim(config))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def write_tokenizer(writer, release: Path, config: dict, tok_json: dict, pre: str) -> None:
    import gguf
    from transformers import AutoTokenizer

    model = tok_json["model"]
    if model.get("type") != "BPE":
        raise ExportInputError(f"{release}: tokenizer model {model.get('type')!r}; the GGUF export handles BPE")
    n_vocab = config["vocab_size"]
    tokens: list[str | None] = [None] * n_vocab
    types = [gguf.TokenType.NORMAL] * n_vocab
    for text, idx in model["vocab"].items():
        if idx < n_vocab:
            tokens[idx] = text
    for added in tok_json.get("added_tokens", []):
        if added["id"] < n_vocab:
            tokens[added["id"]] = added["content"]
            types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    for idx, text in enumerate(tokens):
        if text is None:  # embedding rows past the tokenizer's vocabulary
            tokens[idx], types[idx] = f"[PAD{idx}]", gguf.TokenType.UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges(merges)

    tokenizer = AutoTokenizer.from_pretrained(release)
    for setter, value in ((writer.add_bos_token_id, tokenizer.bos_token_id),
                          (writer.add_eos_token_id, tokenizer.eos_token_id),
                          (writer.add_unk_token_id, tokenizer.unk_token_id),
                          (writer.add_pad_token_id, tokenizer.pad_token_id
                           if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)):
        if value is not None:
            setter(value)
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    writer.add_add_bos_token(bool(tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
                                  and plain[:1] != probe[:1]))
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        writer.add_chat_template(template)


# --- label scoring through llama.cpp -----------------------------------------------------------------


class GGUFScorer:
    """Label scoring with llama-cpp-python on a GGUF file, the same prompt and sums as ``FinSentClassifier``."""

    def __init__(self, path, *, n_ctx: int = 512, threads: int | None = None, max_length: int = 512):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise UsageError("scoring a GGUF file needs llama-cpp-python: pip install llama-cpp-python") from None
        self.path = Path(path)
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=False)
        context = self.llm.n_ctx()
        self.max_length = min(max_length, context)

    def close(self) -> None:
        """Free llama.cpp's model and context now (not at interpreter exit)."""
        self.llm.close()

    def __enter__(self) -> GGUFScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def tokenize(self, text: str, bos: bool = False) -> list[int]:
        """llama.cpp's tokens of a piece; ``bos`` as transformers' add_special_tokens (BOS if the model adds it)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)

    def _logprobs_after(self, tokens: list[int]):
        """log-softmax of the next-token logits after ``tokens``, re-using the cached common prefix."""
        import llama_cpp
        import numpy as np

        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        common = 0
        for a, b in zip(cached, tokens[:-1]):  # at least one token is evaluated, to get its logits
            if a != b:
                break
            common += 1
        llm.n_tokens = common
        llm.eval(tokens[common:])
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        logits = logits.astype(np.float64)
        top = logits.max()
        return logits - top - np.log(np.exp(logits - top).sum())

    def label_logprobs(self, texts, scheme: str | int = "3", kind: str = "news"):
        """[len(texts), n_labels] sums of each label's answer-token log-probabilities (numpy float64)."""
        import numpy as np


        texts = check_texts(texts)
        labels = labels_of(check_scheme(scheme))
        prefix = self.tokenize(prefix_piece(instruction(scheme, kind)), bos=True)
        cue = self.tokenize(CUE)
        answers = [tuple(self.tokenize(answer_piece(label))) for label in labels]
        room = self.max_length - len(prefix) - len(cue) - max(map(len, answers))
        nodes = answer_nodes(answers)
        scores = np.zeros((len(texts), len(labels)))
        for i, text in enumerate(texts):
            prompt = prefix + self.tokenize(news_piece(text))[:room] + cue
            lp = {(): self._logprobs_after(prompt)}
            for node in nodes:  # parents before children
                lp[node] = self._logprobs_after(prompt + list(node))
            for j, ans in enumerate(answers):
                scores[i, j] = sum(lp[ans[:k]][token] for k, token in enumerate(ans))
        return scores

    def classify(self, texts, scheme: str | int = "3", kind: str = "news") -> list[tuple[str, list[float]]]:
        """(label, probabilities) per text."""
        import numpy as np


        scores = self.label_logprobs(texts, scheme, kind)
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        labels = labels_of(scheme)
        return [(labels[int(row.argmax())], row.tolist()) for row in probs]
