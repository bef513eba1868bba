"""Vocabulary trimming: keep only the token embeddings that a model's domain uses.

A small model spends a large share of its parameters on the token embedding: SmolLM2-135M ties a
49,152 x 576 matrix (28.3M parameters, 21 % of the model) and Llama-3.2-1B a 128,256 x 2,048 one (262.7M,
also 21 %). Financial tweets and news use a fraction of those rows. Trimming keeps

- the first ``first`` ids (a byte-level BPE vocabulary lists its tokens in merge order, so the first ids are
  the pieces most frequent in the pretraining corpus), every one-character token (the byte alphabet) and
  the tokenizer's added (special) tokens;
- every token of the given texts, tokenized piecewise exactly as the classifier and the trainer do, or only
  those that occur at least ``min_count`` times in them (a token seen once, such as a piece of a shortened
  link's random path, is worth a row of the embedding only if the model has learned something from it);
- the parts of every kept token's merges, so that each kept token can still be built.

Merges whose result or parts are gone are dropped, so any text still tokenizes, into kept pieces; a text
whose tokens were all kept tokenizes to the same pieces as before (tested on the training data). Rows
keep their order, so the ids of the leading special tokens do not change. The technique is vocabulary
trimming as in Ushio et al. 2023, "An Efficient Multilingual Language Model Compression through Vocabulary
Trimming" (arXiv:2305.15020); here it is chosen by the training data of the recipe, never by its dev rows.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

from finsent.core.errors import UsageError
from finsent.core.prompts import PromptEncoder

logger = logging.getLogger(__name__)

SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id")


class VocabError(UsageError, ValueError):
    """The tokenizer or model cannot be trimmed as asked."""


def tokenizer_json(tokenizer) -> dict:
    """The fast tokenizer's full definition (the content of its tokenizer.json)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise VocabError(f"vocabulary trimming needs a fast (tokenizers) tokenizer, got {type(tokenizer).__name__}")
    data = json.loads(backend.to_str())
    if data["model"].get("type") != "BPE":
        raise VocabError(f"vocabulary trimming supports BPE tokenizers, this one is {data['model'].get('type')}")
    return data


def _merge_pairs(merges: list) -> list[tuple[str, str]]:
    # A tokenizer.json holds merges as ["a", "b"] pairs (tokenizers >= 0.20) or as "a b" strings: read both.
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def used_ids(tokenizer, rows: list[tuple[str, str, str]], min_count: int = 1) -> set[int]:
    """The token ids that occur at least ``min_count`` times in ``rows`` (instruction, text, answer) as the
    classifier and the trainer encode them: instruction prefix with special tokens, then the text, the answer
    cue and the answer, each tokenized alone."""

    if min_count < 1:
        raise VocabError(f"prune.vocab_min_count must be >= 1, got {min_count}")
    enc = PromptEncoder(tokenizer, max_length=1 << 20)  # nothing is cut: every token of every text counts
    counts: Counter[int] = Counter()
    for instruction, text, answer in rows:
        counts.update(enc.encode(instruction, text).ids)
        counts.update(enc.answer_ids(answer))
    return {i for i, n in counts.items() if n >= min_count}


def kept_ids(tokenizer, used: set[int], first: int, config=None) -> list[int]:
    """Sorted ids that a trimmed vocabulary keeps: ``used``, the first ``first`` ids, one-character tokens,
    added tokens, the config's special ids, and, repeatedly, the two parts of each merge that builds a kept token."""
    data = tokenizer_json(tokenizer)
    vocab: dict[str, int] = data["model"]["vocab"]
    size = len(vocab)
    if first < 0:
        raise VocabError(f"prune.vocab_first must be >= 0, got {first}")
    keep = set(used) | set(range(min(first, size))) | {i for t, i in vocab.items() if len(t) == 1}
    keep |= {t["id"] for t in data.get("added_tokens", [])}
    if config is not None:
        keep |= {i for name in SPECIAL_IDS if isinstance(i := getattr(config, name, None), int)}
    unknown = sorted(i for i in keep if not 0 <= i < size)
    if unknown:
        raise VocabError(f"token ids {unknown[:5]} are outside the tokenizer's {size} tokens")
    builders: dict[str, list[tuple[str, str]]] = {}
    for a, b in _merge_pairs(data["model"]["merges"]):
        builders.setdefault(a + b, []).append((a, b))
    token_of = {i: t for t, i in vocab.items()}
    todo = [token_of[i] for i in keep if i in token_of]
    while todo:
        for part in (p for pair in builders.get(todo.pop(), ()) for p in pair):
            if part in vocab and vocab[part] not in keep:
                keep.add(vocab[part])
                todo.append(part)
    return sorted(keep)


def trim_tokenizer_json(data: dict, keep: list[int]) -> dict:
    """``data`` (a tokenizer.json) with only the ``keep`` ids (sorted), renumbered 0..K-1 in order; merges whose
    result or parts are gone are dropped; added tokens and post-processor ids follow the renumbering."""
    new_id = {old: new for new, old in enumerate(keep)}
    out = json.loads(json.dumps(data))  # a deep copy
    model = out["model"]
    model["vocab"] = {t: new_id[i] for t, i in sorted(model["vocab"].items(), key=lambda kv: kv[1]) if i in new_id}
    kept = model["vocab"]
    pairs = _merge_pairs(model["merges"])
    as_lists = bool(model["merges"]) and isinstance(model["merges"][0], list)
    model["merges"] = [[a, b] if as_lists else f"{a} {b}" for a, b in pairs
                       if a in kept and b in kept and a + b in kept]
    for token in out.get("added_tokens", []):
        if token["id"] not in new_id:
            raise VocabError(f"added token {token['content']!r} (id {token['id']}) is not kept")
        token["id"] = new_id[token["id"]]
    special = (out.get("post_processor") or {}).get("special_tokens") or {}
    for entry in special.values():
        entry["ids"] = [new_id[i] for i in entry.get("ids", [])]
    return out


def trim_model(model, keep: list[int]) -> None:
    """Keep the ``keep`` rows (sorted ids) of ``model``'s input and output embeddings, in place.

    A tied output embedding stays tied to the new input embedding; the config's ``vocab_size`` and special
    token ids (and the generation config's) follow the renumbering.
    """
    import torch

    new_id = {old: new for new, old in enumerate(keep)}
    index = torch.tensor(keep, dtype=torch.long)
    embed = model.get_input_embeddings()
    old_size = embed.weight.shape[0]
    if keep[-1] >= old_size:
        raise VocabError(f"token id {keep[-1]} is outside the model's {old_size}-row embedding")
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embed.weight
    rows = torch.nn.Embedding(len(keep), embed.weight.shape[1], dtype=embed.weight.dtype,
                              device=embed.weight.device)
    rows.weight.data = embed.weight.data.index_select(0, index).clone()  # [K, H]
    model.set_input_embeddings(rows)
    if output is not None:
        if tied:
            output.weight = rows.weight
        else:
            output.weight = torch.nn.Parameter(output.weight.data.index_select(0, index).clone())
            if getattr(output, "bias", None) is not None:
                output.bias = torch.nn.Parameter(output.bias.data.index_select(0, index).clone())
        output.out_features = len(keep)
    for config in {id(c): c for c in (model.config, model.config.get_text_config(decoder=True))}.values():
        config.vocab_size = len(keep)
    for config in (model.config, getattr(model, "generation_config", None)):
        for name in SPECIAL_IDS:
            value = getattr(config, name, None) if config is not None else None
            if isinstance(value, int):
                if value not in new_id:
                    raise VocabError(f"{name} {value} is not among the kept tokens")
                setattr(config, name, new_id[value])
    if hasattr(model, "vocab_size"):
        model.vocab_size = len(keep)


def token_map(student_tokenizer, teacher_tokenizer) -> list[int] | None:
    """For each id of a trimmed ``student_tokenizer``, the id of the same token in ``teacher_tokenizer``; None
    when the two vocabularies are equal. Raises if the student has a token the teacher lacks."""
    student = tokenizer_json(student_tokenizer)["model"]["vocab"]
    teacher = tokenizer_json(teacher_tokenizer)["model"]["vocab"]
    if student == teacher:
        return None
    missing = [t for t in student if t not in teacher]
    if missing:
        raise VocabError(f"{len(missing)} tokens of the student are not in the teacher's vocabulary "
                         f"(e.g. {missing[:3]}): distillation needs the teacher's tokenizer or a trimmed copy of it")
    return [teacher[t] for t, _ in sorted(student.items(), key=lambda kv: kv[1])]

