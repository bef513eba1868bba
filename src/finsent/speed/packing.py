"""Packed label scoring: several texts share one query row, so the decoder's GEMMs see no padding.

``FinSentClassifier`` gives every text of a batch its own row, padded to the batch's longest text; a
request of 8 tweets of 12 to 45 tokens pads about a third of the rows' tokens. Here the texts of a
batch are packed first-fit (longest first) into rows of at most ``pack_tokens`` query tokens:

    row r : [news_a + cue_a, nodes_a | news_b + cue_b, nodes_b | ... | pad]

and the mask the scorer already builds for one text is placed block-diagonally: each text's tokens
see the shared prefix, their own news (causal) and their own answer nodes, never another text of the
row; position ids restart after the prefix for every text. So each text is scored with the same
attention pattern and positions as alone: in float32 the log-probabilities equal the unpacked
scorer's up to float rounding (the GEMMs have other shapes), see tests/speed/test_speed_variants.py.
Rows are kept short (96 query tokens by default) because attention over a packed row is dense: its
cost grows with the row's length squared, while the GEMMs only need a few hundred rows in all.
"""

from __future__ import annotations

from collections.abc import Sequence

from finsent.core.classify import FinSentClassifier, _answer_layout, _cache_kwarg
from finsent.core.prompts import EncodedPrompt

# A bfloat16 model's vocabulary log-sum-exp, fused by torch.compile where it compiles (quant._kernel).


def logsumexp_float(logits):
    from finsent.core.quant import _kernel

    if logits.device.type != "cpu":
        import torch

        return torch.logsumexp(logits.float(), dim=-1)
    return _kernel("logsumexp")(logits)

# Tokens per packed query row: the fastest of 64 / 96 / 128 on the published shape (w8a8, batch 64).
PACK_TOKENS = 96


class PackedClassifier(FinSentClassifier):
    """``FinSentClassifier`` whose batches run as packed rows; same API, same results up to rounding."""

    def __init__(self, model, tokenizer, *, pack_tokens: int = PACK_TOKENS, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.pack_tokens = pack_tokens

    @classmethod
    def wrap(cls, clf: FinSentClassifier, pack_tokens: int = PACK_TOKENS) -> PackedClassifier:
        """A packed classifier on ``clf``'s model and tokenizer (shared, not copied)."""
        packed = cls(clf.model, clf.tokenizer, source=clf.source, batch_size=clf.batch_size,
                     share_prefix=clf.share_prefix, pack_tokens=pack_tokens)
        packed.encoder = clf.encoder
        return packed

    def _score_batch(self, batch: list[EncodedPrompt], labels: Sequence[str]):
        import torch
        from transformers import DynamicCache

        dev = self.device
        answers = tuple(tuple(self.encoder.answer_ids(label)) for label in labels)
        prefix = batch[0].prefix if self.share_prefix else ()
        bodies = [enc.body if self.share_prefix else tuple(enc.ids) for enc in batch]
        layouts = [_answer_layout(len(b), answers) for b in bodies]
        rows = _pack([lay.n_query for lay in layouts], self.pack_tokens)
        n_rows, n_prefix = len(rows), len(prefix)
        width = max(sum(layouts[i].n_query for i in row) for row in rows)
        if n_rows > 1:  # full-width rows: few distinct GEMM shapes, so oneDNN's and torch.compile's caches hit
            width = max(width, self.pack_tokens)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        ids = torch.full((n_rows, width), pad, dtype=torch.long)
        positions = torch.zeros(n_rows, width, dtype=torch.long)
        allowed = torch.zeros(n_rows, width, width, dtype=torch.bool)
        allowed[:, range(width), range(width)] = True  # padding sees itself: no fully masked query row
        where = [None] * len(batch)  # (row, column of each head: the cue, then the nodes)
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                lay, body, n = layouts[i], bodies[i], layouts[i].n_query
                end = start + n
                ids[r, start : start + len(body)] = torch.tensor(body)
                ids[r, start + len(body) : end] = lay.node_ids
                # The one-text mask: causal news; nodes see their ancestors and all of the text's news.
                allowed[r, start:end, start:end] = lay.visible | (lay.is_node[:, None] & ~lay.is_node[None, :])
                positions[r, start:end] = n_prefix + torch.where(lay.is_node, len(body) + lay.pos, lay.pos)
                where[i] = (r, start + torch.cat([torch.tensor([len(body) - 1]), lay.node_rows]))
                start = end
        if n_prefix:
            allowed = torch.cat([torch.ones(n_rows, width, n_prefix, dtype=torch.bool), allowed], dim=2)
        mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill_(~allowed, torch.finfo(self.dtype).min)

        kwargs = {}
        if n_prefix:
            kv = [(k.expand(n_rows, -1, -1, -1), v.expand(n_rows, -1, -1, -1)) for k, v in self._prefix_kv(prefix)]
            kwargs[_cache_kwarg(self._decoder())] = DynamicCache(ddp_cache_data=kv)
        layout = layouts[0]  # source / targets / membership do not depend on the body length
        row_of = torch.tensor([r for r, _ in where])[:, None]
        cols = torch.stack([c for _, c in where])  # [B, 1 + N]
        with torch.inference_mode():
            hidden = self._decoder()(
                input_ids=ids.to(dev), attention_mask=mask[:, None].to(dev),
                position_ids=positions.to(dev), use_cache=bool(n_prefix), **kwargs,
            ).last_hidden_state  # [R, width, H]
            picked = hidden[row_of.to(dev), cols.to(dev)]  # [B, 1 + N, H]
            logits = self.model.get_output_embeddings()(picked)  # [B, 1 + N, V], the model's dtype
            # float32 log-softmax at the targets only: a bfloat16 model's logits are not copied to float32 whole
            # (64 texts x 4 positions x 128,256 = 33M values per request on the published shape)
            lse = logsumexp_float(logits) if logits.dtype != torch.float32 else torch.logsumexp(logits, dim=-1)
            source = layout.source.to(dev)
            token_lp = logits[:, source, layout.targets.to(dev)].float() - lse[:, source]
        return token_lp.cpu() @ layout.membership


def _pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indices grouped into rows of total length <= capacity (a longer item alone)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows
