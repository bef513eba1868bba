"""The one classification code path: ``FinSentClassifier``, used by eval, the Space, the card and users.

Label scoring (the default, ``mode="score"``) asks the model how likely each label is as the answer
after the FinGPT prompt and returns a probability for every label. One forward pass per batch:

    cache : prefix KV (``Instruction: ...\\nInput:``), computed once per instruction, shared by all rows
    row i : [news_i + cue_i | pad ... | node_1 ... node_N]                    (Q = body + N tokens)

The nodes are the distinct proper prefixes of the labels' answer tokens (a trie without its root and
leaves): ``" positive\\n"`` is ``[" positive", "\\n"]``, so 3-class needs 3 nodes, not 6 tokens; 7-class
shares ``" strong"``, ``" mildly"``... between labels. An answer's last token is a target only, never
an input, and its first token is predicted by the cue, once for every label. A custom attention mask
lets each node see the prefix, its own row's news and its own ancestors only, with position ids
restarting right after the row's cue, so each answer is scored exactly as if it followed the prompt
alone. The vocabulary projection runs at the cue and at the nodes (1 + N positions a row), not at
every position.

``mode="generate"`` is the published card's usage (greedy decoding, up to 15 new tokens), parsed
strictly: an answer that is not a label of the scheme gives ``label=None``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from finsent.core.labels import check_scheme, labels_of, parse_answer
from finsent.core.models import load_model_and_tokenizer
from finsent.core.precision import auto_dtype, use_cpu_bf16_attention
from finsent.core.prompts import KINDS, EncodedPrompt, InputError, PromptEncoder, check_text, instruction

logger = logging.getLogger(__name__)

MODES = ("score", "generate")
QUANTIZE = (None, "int8", "w8a8", "w8a8-lm")
GENERATE_MAX_NEW_TOKENS = 15


@dataclass
class Prediction:
    """One text's result. ``probs`` covers every label of the scheme and sums to 1 (score mode)."""

    text: str
    label: str | None
    probs: dict[str, float] | None
    scheme: str
    mode: str = "score"
    truncated: bool = False
    answer: str | None = None  # the raw generated answer (generate mode)

    def to_dict(self) -> dict:
        return asdict(self)


class FinSentClassifier:
    """Financial sentiment with a causal LM fine-tuned on the FinGPT prompt.

    >>> clf = FinSentClassifier.from_pretrained("smollm2")            # doctest: +SKIP
    >>> clf.classify("Acme beats estimates and raises guidance").label  # doctest: +SKIP
    'positive'
    """

    def __init__(self, model, tokenizer, *, source: str | None = None, max_length: int = 512,
                 batch_size: int = 16, share_prefix: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.source = source or getattr(model.config, "_name_or_path", None)
        context = getattr(model.config, "max_position_embeddings", None) or max_length
        self.encoder = PromptEncoder(tokenizer, max_length=min(max_length, context))
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        self._prefix_cache: dict[tuple[int, ...], object] = {}

    @classmethod
    def from_pretrained(cls, model: str | None = None, *, dtype=None, device=None, threads: int | None = None,
                        quantize: str | None = None, **kwargs) -> FinSentClassifier:
        """Load from a folder, a Hub id or ``"smollm2"``; ``None`` follows ``models.resolve_model``.

        ``dtype``: a torch dtype or its name (default float32: exact), or ``"auto"``: bfloat16 on CUDA, and on
        a CPU with AVX-512 BF16 or AMX when a short GEMM measures it faster there, else float32
        (``precision.auto_dtype``; without those instructions bfloat16 is emulated, far slower).
        ``threads`` sets torch's (process-wide) intra-op thread count.
        ``quantize="int8"`` applies dynamic int8 quantization to every Linear (CPU only); ``"w8a8"``
        int8 per weight channel and per token to the decoder's Linears (``quant``, CPU only), ``"w8a8-lm"``
        to the LM head too. All are faster and not exact; their accuracy cost is measured in eval/bench/.
        """
        import torch


        if quantize not in QUANTIZE:
            raise ValueError(f"unknown quantize {quantize!r}: choose one of {QUANTIZE}")
        if threads:
            torch.set_num_threads(threads)
        auto = dtype == "auto"
        if auto:  # decided once the model's shape is known: loaded in float32, then converted
            cuda = torch.cuda.is_available() and str(device or "cuda").startswith("cuda")
            device, dtype = device or ("cuda" if cuda else "cpu"), torch.float32
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        net, tokenizer, source = load_model_and_tokenizer(model, dtype=dtype, device=device)
        if auto:
            dtype, why = auto_dtype(device, net.config)
            logger.info("dtype auto: %s (%s)", str(dtype).replace("torch.", ""), why)
            net = net.to(dtype)
        if dtype == torch.bfloat16:
            use_cpu_bf16_attention(net)  # on a CPU only: a faster kernel for bfloat16 attention
        clf = cls(net, tokenizer, source=source, **kwargs)
        if quantize:
            clf.quantize(quantize)
        return clf

    def quantize(self, kind: str = "int8") -> FinSentClassifier:
        """Quantize the model in place (``"int8"``: dynamic; ``"w8a8"``: per channel x per token; CPU only)
        and drop caches computed before."""
        if kind not in QUANTIZE[1:]:
            raise ValueError(f"unknown quantize {kind!r}: choose one of {QUANTIZE}")
        if kind in ("w8a8", "w8a8-lm"):
            from finsent.core.quant import quantize_rowwise_int8

            self.model = quantize_rowwise_int8(self.model, lm_head=kind == "w8a8-lm")
        else:
            self.model = quantize_int8(self.model)
        self._prefix_cache.clear()
        return self

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        """Activation dtype: the input embeddings' (a quantized model keeps float32 embeddings)."""
        return self.model.get_input_embeddings().weight.dtype

    # --- public API ---------------------------------------------------------------------------

    def classify(self, texts: str | Sequence[str], scheme: str | int = "3", *, kind: str = "news",
                 mode: str = "score", batch_size: int | None = None, progress: bool = False):
        """Classify one text (returns a ``Prediction``) or a list of texts (returns a list).

        Every text is checked by ``prompts.check_text`` before any work starts, so a bad item fails the
        call up front with an ``InputError`` naming its index (``text #i``). A caller that serves many
        independent requests (the Space) checks each request's texts with ``check_text`` first and
        passes on only the good ones, so one bad text never fails the others.
        """
        single = isinstance(texts, str)
        items = check_texts([texts] if single else list(texts))
        scheme = check_scheme(scheme)
        if kind not in KINDS:
            raise InputError(f"unknown text kind {kind!r}: choose one of {', '.join(KINDS)}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        run = self._score_all if mode == "score" else self._generate_all
        results = run(items, scheme, kind, self._batch_size(batch_size), progress)
        return results[0] if single else results

    def label_logprobs(self, texts: Sequence[str], scheme: str | int = "3", *, kind: str = "news",
                       batch_size: int | None = None):
        """Sum of log-probabilities of each label's answer tokens: a float tensor [len(texts), n_labels]."""

        scores, _ = self._scores(check_texts(texts), check_scheme(scheme), kind, self._batch_size(batch_size), False)
        return scores

    def _batch_size(self, batch_size: int | None) -> int:
        """``batch_size`` if given (an int >= 1: 0 is an error, never the default), else the classifier's."""
        if batch_size is None:
            return self.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        return batch_size

    # --- label scoring ----------------------------------------------------------------------------

    def _scores(self, texts, scheme, kind, batch_size, progress):
        """Encode every text and score every label: ([N, L] log-prob sums, the encoded prompts)."""
        import torch
        from tqdm.auto import tqdm

        labels = labels_of(scheme)
        instr = instruction(scheme, kind)
        reserve = self.encoder.max_answer_len(labels)
        encoded = [self.encoder.encode(instr, t, reserve=reserve) for t in texts]
        scores = torch.empty(len(texts), len(labels))
        for idx in tqdm(_length_batches(encoded, batch_size), desc="classify", unit="batch", disable=not progress):
            scores[idx] = self._score_batch([encoded[i] for i in idx], labels)
        return scores, encoded

    def _score_all(self, texts, scheme, kind, batch_size, progress):
        import torch

        labels = labels_of(scheme)
        scores, encoded = self._scores(texts, scheme, kind, batch_size, progress)
        probs = torch.softmax(scores, dim=-1)
        results = []
        for text, enc, row in zip(texts, encoded, probs.tolist()):
            best = max(range(len(labels)), key=row.__getitem__)
            results.append(Prediction(text, labels[best], dict(zip(labels, row)), scheme,
                                      "score", enc.truncated))
        return results

    def _prefix_kv(self, prefix: tuple[int, ...]) -> list[tuple]:
        """Per-layer (key, value) [1, kv_heads, P, head_dim] of the shared prefix, computed once per instruction."""
        import torch

        if prefix not in self._prefix_cache:
            ids = torch.tensor([prefix], device=self.device)
            with torch.inference_mode():
                out = self._decoder()(input_ids=ids, use_cache=True)
            self._prefix_cache[prefix] = [(k, v) for k, v, *_ in _cache_of(out)]
        return self._prefix_cache[prefix]

    def _decoder(self):
        """The transformer body without the LM head (``model.model`` for Llama-style models)."""
        return getattr(self.model, self.model.base_model_prefix)

    def _score_batch(self, batch: list[EncodedPrompt], labels: Sequence[str]):
        """Log-probability sums [B, L] for a batch that shares one prefix."""
        import torch
        from transformers import DynamicCache

        dev, n_rows = self.device, len(batch)
        answers = [self.encoder.answer_ids(label) for label in labels]
        prefix = batch[0].prefix if self.share_prefix else ()
        bodies = [enc.body if self.share_prefix else tuple(enc.ids) for enc in batch]
        n_prefix, n_body = len(prefix), max(len(b) for b in bodies)
        layout = _answer_layout(n_body, tuple(answers))
        n_query = layout.n_query
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        ids = torch.full((n_rows, n_query), pad, dtype=torch.long)
        ids[:, n_body:] = layout.node_ids
        for i, body in enumerate(bodies):
            ids[i, : len(body)] = torch.tensor(body)
        lengths = torch.tensor([len(b) for b in bodies])  # [B] news + cue tokens per row

        # allowed[b, q, k]: causal within the news part; node rows see their ancestors and their row's
        # real (unpadded) news. Shape [B, Q, P + Q], additive float mask for SDPA.
        sees_news = layout.is_node[None, :, None] & (torch.arange(n_query)[None, None, :] < lengths[:, None, None])
        allowed = layout.visible[None] | sees_news
        if n_prefix:
            allowed = torch.cat([torch.ones(n_rows, n_query, n_prefix, dtype=torch.bool), allowed], dim=2)
        mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill_(~allowed, torch.finfo(self.dtype).min)

        # Positions: news continues the prefix; each node sits at its depth right after its row's cue.
        positions = torch.where(layout.is_node, lengths[:, None] + layout.pos, layout.pos)
        positions += n_prefix

        # The query rows whose outputs predict answer tokens, [B, 1 + N]: the row's last cue token, then the nodes.
        heads = torch.cat([lengths[:, None] - 1, layout.node_rows[None].expand(n_rows, -1)], dim=1)

        kwargs = {}
        if n_prefix:
            # Expanded views of the batch-1 prefix (no deepcopy, no repeat_interleave): the cache's
            # concatenations materialise [B, kv_heads, P (+ Q), head_dim] only as attention needs them.
            kv = [(k.expand(n_rows, -1, -1, -1), v.expand(n_rows, -1, -1, -1)) for k, v in self._prefix_kv(prefix)]
            kwargs[_cache_kwarg(self._decoder())] = DynamicCache(ddp_cache_data=kv)
        with torch.inference_mode():
            hidden = self._decoder()(
                input_ids=ids.to(dev), attention_mask=mask[:, None].to(dev),
                position_ids=positions.to(dev), use_cache=bool(n_prefix), **kwargs,
            ).last_hidden_state  # [B, Q, H]
            picked = hidden.gather(1, heads.to(dev)[..., None].expand(-1, -1, hidden.shape[-1]))  # [B, 1+N, H]
            logits = self.model.get_output_embeddings()(picked).float()  # [B, 1+N, V]
            lse = torch.logsumexp(logits, dim=-1)  # [B, 1+N]
            source = layout.source.to(dev)  # [A]: which head position predicts answer token a
            token_lp = logits[:, source, layout.targets.to(dev)] - lse[:, source]  # log-softmax at the targets, [B, A]
        # Sum each label's tokens: [B, A] @ [A, L] with a 0/1 membership matrix.
        return token_lp.cpu() @ layout.membership

    # --- the card's generation loop -----------------------------------------------------------

    def _generate_all(self, texts, scheme, kind, batch_size, progress):
        import torch
        from tqdm.auto import tqdm

        instr = instruction(scheme, kind)
        encoded = [self.encoder.encode(instr, t, reserve=GENERATE_MAX_NEW_TOKENS) for t in texts]
        answers: list[str] = [""] * len(texts)
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        for idx in tqdm(_length_batches(encoded, batch_size), desc="generate", unit="batch",
                        disable=not progress):
            rows = [encoded[i].ids for i in idx]
            width = max(len(r) for r in rows)
            # Left padding: every row's last prompt token sits at the same column for decoding.
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
            attn = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids, attention_mask=attn, max_new_tokens=GENERATE_MAX_NEW_TOKENS,
                    do_sample=False, no_repeat_ngram_size=3, eos_token_id=eos, pad_token_id=pad,
                )
            for i, row in zip(idx, out[:, width:].tolist()):
                answers[i] = self.tokenizer.decode(row, skip_special_tokens=True)
        return [
            Prediction(t, parse_answer(a, scheme), None, scheme, "generate", e.truncated, a.strip())
            for t, e, a in zip(texts, encoded, answers)
        ]


def check_texts(texts: Sequence) -> list[str]:
    """Every text through ``prompts.check_text``; the first bad one is an InputError naming its index."""
    if isinstance(texts, (str, bytes)):
        raise InputError(f"texts must be a list of strings, got one {type(texts).__name__}")
    checked = []
    for i, text in enumerate(texts):
        try:
            checked.append(check_text(text))
        except InputError as exc:
            raise InputError(f"text #{i}: {exc}") from None
    return checked


def _cache_kwarg(module) -> str:
    """The forward keyword of the prefix KV cache: ``cache`` where ``module.forward`` takes it, else
    ``past_key_values`` (transformers versions differ)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _cache_of(output):
    return getattr(output, "cache", None) or output.past_key_values


def quantize_int8(model):
    """Dynamic int8 quantization of every ``nn.Linear`` (weights int8, activations quantized per call), in place."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    if next(model.parameters()).device.type != "cpu":
        raise ValueError("quantize='int8' (dynamic quantization) runs on CPU only")
    return quantize_dynamic(model.float(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


@dataclass(frozen=True)
class _Layout:
    """Where the answer-prefix nodes sit in the query rows, shared by every row of a batch.

    Q = n_query (padded news + cue, then N nodes), A = answer tokens of all labels (the targets).
    """

    n_query: int
    node_ids: object  # [N] long: each node's own (last) token
    is_node: object  # [Q] bool: the node rows
    pos: object  # [Q] long: a node's depth - 1, the column index for news rows
    visible: object  # [Q, Q] bool: causal for news rows, ancestors-or-self for node rows
    node_rows: object  # [N] long: the query rows of the nodes (n_body + 0..N-1)
    source: object  # [A] long: 0 = the cue predicts answer token a, 1 + i = node i does
    targets: object  # [A] long: the answer token ids
    membership: object  # [A, L] float: 1 where answer token a belongs to label l


def answer_nodes(answers: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """The distinct non-empty proper prefixes of the answers, parents before children."""
    nodes: dict[tuple[int, ...], None] = {}
    for ans in answers:
        for depth in range(1, len(ans)):
            nodes.setdefault(tuple(ans[:depth]))
    return list(nodes)


@functools.lru_cache(maxsize=256)
def _answer_layout(n_body: int, answers: tuple[tuple[int, ...], ...]) -> _Layout:
    """The batch-independent part of the scoring mask and gathers, cached per (padded body length, labels)."""
    import torch

    nodes = answer_nodes(answers)
    index = {node: i for i, node in enumerate(nodes)}
    n_query = n_body + len(nodes)
    pos = torch.arange(n_query)
    pos[n_body:] = torch.tensor([len(node) - 1 for node in nodes], dtype=torch.long)
    q = torch.arange(n_query)[:, None]
    k = torch.arange(n_query)[None, :]
    visible = (k <= q) & (q < n_body)
    for i, node in enumerate(nodes):  # a node sees itself and its ancestors (its own shorter prefixes)
        for depth in range(1, len(node) + 1):
            visible[n_body + i, n_body + index[node[:depth]]] = True
    source, targets = [], []
    membership = torch.zeros(sum(len(a) for a in answers), len(answers))
    for label, ans in enumerate(answers):
        for j, token in enumerate(ans):
            membership[len(targets), label] = 1.0
            source.append(0 if j == 0 else 1 + index[tuple(ans[:j])])
            targets.append(token)
    return _Layout(
        n_query=n_query,
        node_ids=torch.tensor([node[-1] for node in nodes], dtype=torch.long),
        is_node=torch.arange(n_query) >= n_body,
        pos=pos,
        visible=visible,
        node_rows=torch.arange(n_body, n_query),
        source=torch.tensor(source, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        membership=membership,
    )


def _length_batches(encoded: Sequence[EncodedPrompt], batch_size: int) -> list[list[int]]:
    """Index batches grouped by prefix and sorted by length, so rows in a batch need little padding."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(encoded)), key=lambda i: (encoded[i].prefix, -len(encoded[i].body)))
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and encoded[batches[-1][0]].prefix == encoded[i].prefix:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def iter_chunks(items: Iterable, size: int):
    """Yield lists of at most ``size`` items (for streaming big inputs through ``classify``)."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["FinSentClassifier", "Prediction", "InputError", "MODES", "check_text", "check_texts"]
