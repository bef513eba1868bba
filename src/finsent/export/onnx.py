"""A release as an ONNX graph for onnxruntime, and label scoring through it.

``export_onnx`` exports the release (float32) with ``torch.onnx`` (its torch.export-based exporter when
``onnxscript`` is installed, else the TorchScript one) into ``DIR/model.onnx`` (large weights in
``model.onnx.data``), checks the graph against torch on a shape it was not exported with, and copies the
tokenizer and config beside it. The graph is the decoder plus the LM
head at chosen positions, so label scoring needs one run per batch and projects onto the vocabulary only
where answers are read:

    inputs   input_ids      int64   [batch, seq]
             position_ids   int64   [batch, seq]
             attention_mask float32 [batch, 1, seq, seq]   additive: 0 where a token may attend, -3.4e38 where not
             heads          int64   [batch, k]              positions whose next-token logits are returned
    output   logits         float32 [batch, k, vocab]

A plain causal run is ``position_ids = 0..seq-1``, a lower-triangular mask and ``heads`` = the last position.
``ONNXScorer`` builds the same rows as ``FinSentClassifier`` (prompt, then the answer-prefix nodes, each
node seeing the prompt and its own ancestors, positions restarting after the cue) and sums the answer
tokens' log-probabilities.
"""

from __future__ import annotations

import logging
from pathlib import Path

from finsent.core.classify import _answer_layout, _length_batches, check_texts
from finsent.core.errors import ExportError, UsageError
from finsent.core.labels import check_scheme, labels_of
from finsent.core.outputs import check_output_dir, output_dir
from finsent.core.prompts import PromptEncoder, instruction
from finsent.export.formats import RUNTIMES_EXTRA, check_exportable, copy_tokenizer

logger = logging.getLogger(__name__)

OPSET = 18
WHAT = "ONNX output folder"


def _wrapper(model):
    import torch

    class ScoreGraph(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, position_ids, attention_mask, heads):
            decoder = getattr(self.lm, self.lm.base_model_prefix)
            hidden = decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                             use_cache=False).last_hidden_state
            picked = hidden.gather(1, heads[..., None].expand(-1, -1, hidden.shape[-1]))
            return self.lm.get_output_embeddings()(picked)

    return ScoreGraph(model).eval()


def export_onnx(release, out, *, overwrite: bool = False) -> Path:
    """Write ``release`` as ``out/model.onnx`` (+ tokenizer); the folder is built aside and renamed when done."""
    require_onnx()
    import torch
    from transformers import AutoModelForCausalLM

    release = check_exportable(release)
    out = check_output_dir(out, kind="onnx", overwrite=overwrite, what=WHAT, reads=[release])
    model = AutoModelForCausalLM.from_pretrained(release, dtype=torch.float32, attn_implementation="eager").eval()
    graph = _wrapper(model)
    seq, batch = 12, 2
    ids = torch.randint(0, model.config.vocab_size, (batch, seq))
    pos = torch.arange(seq).expand(batch, -1).contiguous()
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    mask = torch.zeros(batch, 1, seq, seq).masked_fill(~causal, torch.finfo(torch.float32).min)
    heads = torch.tensor([[seq - 1, seq - 2]] * batch)
    names = {"input_names": ["input_ids", "position_ids", "attention_mask", "heads"], "output_names": ["logits"]}
    if dynamo_available():  # torch.export-based exporter (torch's default since 2.9; needs onnxscript)
        batch_dim, seq_dim, k_dim = torch.export.Dim("batch"), torch.export.Dim("seq"), torch.export.Dim("k")
        shapes = {"dynamo": True, "verbose": False, "dynamic_shapes": (
            {0: batch_dim, 1: seq_dim}, {0: batch_dim, 1: seq_dim}, {0: batch_dim, 2: seq_dim, 3: seq_dim},
            {0: batch_dim, 1: k_dim})}
    else:  # the TorchScript exporter (deprecated by torch, still shipped)
        shapes = {"dynamo": False, "opset_version": OPSET, "dynamic_axes": {
            "input_ids": {0: "batch", 1: "seq"}, "position_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 2: "seq", 3: "seq"}, "heads": {0: "batch", 1: "k"},
            "logits": {0: "batch", 1: "k"}}}
    with output_dir(out, kind="onnx", overwrite=overwrite, what=WHAT, reads=[release]) as tmp:
        with torch.inference_mode():
            torch.onnx.export(graph, (ids, pos, mask, heads), str(tmp / "model.onnx"), external_data=True,
                              **names, **shapes)
        copy_tokenizer(release, tmp)
        check_graph(graph, tmp / "model.onnx")
    logger.info("wrote %s", out)
    return out


def require_onnx() -> None:
    """UsageError naming the extra to install when the exporter (onnx) or the graph check (onnxruntime) is missing:
    found before the model is loaded, rather than as an ImportError from inside torch.onnx."""
    import importlib.util


    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"--format onnx needs {' and '.join(missing)}, not installed here: {RUNTIMES_EXTRA} "
                         f"(or pip install {' '.join(missing)})")


def dynamo_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxscript") is not None


def check_graph(graph, path: Path, tol: float = 1e-3) -> float:
    """Run the exported graph on a shape it was not traced with and compare it with torch; ExportError if off."""
    import numpy as np
    import onnxruntime as ort
    import torch

    seq, batch = 7, 3
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (batch, seq))
    pos = torch.arange(seq).expand(batch, -1).contiguous()
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    mask = torch.zeros(batch, 1, seq, seq).masked_fill(~causal, torch.finfo(torch.float32).min)
    heads = torch.tensor([[seq - 1, 0, 3]] * batch)
    with torch.inference_mode():
        expected = graph(ids, pos, mask, heads).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": ids.numpy(), "position_ids": pos.numpy(), "attention_mask": mask.numpy(),
                             "heads": heads.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if not diff <= tol:
        raise ExportError(f"the ONNX graph disagrees with the release: max |logit difference| {diff:.3g} > {tol}")
    return diff


class ONNXScorer:
    """Label scoring with onnxruntime on an exported folder: the same rows and sums as ``FinSentClassifier``."""

    def __init__(self, folder, *, threads: int | None = None, max_length: int = 512, batch_size: int = 16):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError("scoring an ONNX export needs onnxruntime: pip install onnxruntime") from None
        from transformers import AutoConfig, AutoTokenizer


        folder = Path(folder)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        context = getattr(AutoConfig.from_pretrained(folder), "max_position_embeddings", None) or max_length
        self.encoder = PromptEncoder(self.tokenizer, max_length=min(max_length, context))
        self.batch_size = batch_size

    def label_logprobs(self, texts, scheme: str | int = "3", kind: str = "news"):
        """[len(texts), n_labels] sums of each label's answer-token log-probabilities (numpy float64)."""
        import numpy as np


        texts = check_texts(texts)
        labels = labels_of(check_scheme(scheme))
        instr = instruction(scheme, kind)
        encoded = [self.encoder.encode(instr, t, reserve=self.encoder.max_answer_len(labels)) for t in texts]
        answers = tuple(self.encoder.answer_ids(label) for label in labels)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        scores = np.zeros((len(texts), len(labels)))
        for idx in _length_batches(encoded, self.batch_size):
            rows = [encoded[i].ids for i in idx]
            n_body = max(map(len, rows))
            layout = _answer_layout(n_body, answers)
            n_query, n_rows = layout.n_query, len(rows)
            ids = np.full((n_rows, n_query), pad, dtype=np.int64)
            ids[:, n_body:] = layout.node_ids.numpy()
            for r, row in enumerate(rows):
                ids[r, : len(row)] = row
            lengths = np.array([len(r) for r in rows])
            is_node = layout.is_node.numpy()
            sees = is_node[None, :, None] & (np.arange(n_query)[None, None, :] < lengths[:, None, None])
            allowed = layout.visible.numpy()[None] | sees
            mask = np.where(allowed, 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None]
            pos = np.where(is_node[None], lengths[:, None] + layout.pos.numpy()[None], layout.pos.numpy()[None])
            heads = np.concatenate([lengths[:, None] - 1, np.broadcast_to(layout.node_rows.numpy()[None],
                                                                          (n_rows, len(layout.node_rows)))], axis=1)
            logits = self.session.run(None, {"input_ids": ids, "position_ids": pos.astype(np.int64),
                                             "attention_mask": mask, "heads": heads.astype(np.int64)})[0]
            logits = logits.astype(np.float64)
            top = logits.max(-1, keepdims=True)
            lse = (top + np.log(np.exp(logits - top).sum(-1, keepdims=True)))[..., 0]
            source, targets = layout.source.numpy(), layout.targets.numpy()
            token_lp = logits[:, source, targets] - lse[:, source]  # [B, A]
            scores[idx] = token_lp @ layout.membership.numpy().astype(np.float64)
        return scores
