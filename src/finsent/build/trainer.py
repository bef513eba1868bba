"""The training loop's pieces: the fast label-position loss and the Trainer subclass that uses it.

A causal LM's usual loss projects every position's hidden state onto the whole vocabulary
([B, T, V] logits: for SmolLM2 at B=16, T=64 that is 50 M floats, and their softmax and backward)
although an answer-only loss reads a handful of them. ``token_loss`` runs the decoder body, gathers
the hidden states that predict a labelled token ([N, H], N = answer tokens in the batch) and applies
the LM head there only. The value is the same as ``model(input_ids, labels=labels).loss`` (summed
cross-entropy over shifted labels, in float32); ``tests/build/test_finetune.py`` checks it.

``shared_prefix_hidden`` also runs each batch's instruction prefix once instead of once per row.

Many processes (``torchrun`` / ``accelerate launch``, DDP or FSDP): the Trainer wraps the model, and a
wrapper does its work in its ``forward`` (DDP arms the gradient all-reduce there, FSDP gathers the
sharded weights). So the fast loss runs *inside* the model's forward (``LOSS_KEY``, installed by
``FinSentTrainer``), never by calling the decoder around the wrapper; the loss is normalised by the
labelled tokens of the whole global batch (all ranks, all accumulation steps), so DDP's gradient average
gives the single-process gradient; and the length-grouped order depends only on (seed, epoch), the same
on every rank and after ``--resume`` (``SeededLengthGroupedSampler``).

Used by ``finsent finetune`` (``finsent.build.finetune``) and ``build/bench/finetune_speed.py``.
"""

from __future__ import annotations

import logging
import math
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from finsent.build.data import IGNORE
from finsent.build.devsplit import score_model
from finsent.core.classify import _cache_kwarg, _cache_of
from finsent.core.errors import UsageError
from finsent.core.models import unwrap

logger = logging.getLogger(__name__)

# The keyword that makes the training model's forward return (loss sum, labelled-token count) of the fast path.
LOSS_KEY = "finsent_token_loss"


@dataclass
class Distill:
    """Knowledge distillation (``finetune.distill_from``): a frozen teacher, the weight of its loss, a temperature.

    ``teacher`` is one model, or a list of them: an ensemble whose distributions are averaged (``ensemble_kl``).
    """

    teacher: torch.nn.Module | list[torch.nn.Module]
    alpha: float  # loss = (1 - alpha) x answer cross-entropy + alpha x T^2 x KL(teacher || student)
    temperature: float

    @property
    def teachers(self) -> list[torch.nn.Module]:
        return list(self.teacher) if isinstance(self.teacher, (list, tuple)) else [self.teacher]


def answer_logits(model, input_ids, attention_mask, keep, prefix_len=None) -> torch.Tensor:
    """float32 logits [N, V] at the N positions of ``keep`` [B, T-1] (those that predict a labelled token)."""
    lm = unwrap(model)
    body = getattr(lm, lm.base_model_prefix)  # LlamaModel etc.: the decoder without the LM head
    hidden = shared_prefix_hidden(body, input_ids, attention_mask, prefix_len)
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep]).float()  # [N, H] -> [N, V]
    cap = getattr(lm.config, "final_logit_softcapping", None)  # Gemma 2 style capping, if the model has it
    return torch.tanh(logits / cap) * cap if cap else logits


def token_loss(model, input_ids, attention_mask, labels, prefix_len=None,
               distill: Distill | None = None) -> tuple[torch.Tensor, int]:
    """(sum of cross-entropy over labelled next tokens, number of them), projecting only where needed.

    Shapes: input_ids/attention_mask/labels [B, T]; hidden [B, T, H]; picked [N, H]; logits [N, V].
    ``prefix_len`` [B] (each row's instruction prefix length) turns on ``shared_prefix_hidden``. With
    ``distill``, each position's cross-entropy is blended with the KL divergence from the teacher's (an
    ensemble's mean) next-token distribution there (the answer's distribution over the labels and the rest of
    the vocabulary).
    """
    targets = labels[:, 1:]  # position t predicts token t + 1
    keep = targets != IGNORE  # [B, T-1]
    logits = answer_logits(model, input_ids, attention_mask, keep, prefix_len)
    loss = F.cross_entropy(logits, targets[keep], reduction="sum")
    if distill is not None:
        with torch.no_grad():
            teachers = [answer_logits(m, input_ids, attention_mask, keep, prefix_len) for m in distill.teachers]
        t = distill.temperature
        loss = (1 - distill.alpha) * loss + distill.alpha * t * t * ensemble_kl(logits, teachers, t)
    return loss, int(keep.sum())


def ensemble_kl(student: torch.Tensor, teachers: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """KL(mean_k softmax(z_k / T) || softmax(s / T)) summed over the N positions; each logits tensor [N, V] float32.

    The target of several teachers is the mean of their distributions (an ensemble's prediction), not of their
    logits; its log is taken in log space (logsumexp over the K log-distributions, minus log K: [K, N, V] -> [N, V])
    so that no probability underflows. One teacher's target is its own log-softmax, exactly as before ensembles.
    """
    if len(teachers) == 1:
        target = F.log_softmax(teachers[0] / temperature, -1)
    else:
        logs = torch.stack([F.log_softmax(z / temperature, -1) for z in teachers])
        target = torch.logsumexp(logs, 0) - math.log(len(teachers))
    return F.kl_div(F.log_softmax(student / temperature, -1), target, log_target=True, reduction="sum")


def shared_prefix_hidden(body, input_ids, attention_mask, prefix_len=None) -> torch.Tensor:
    """The decoder's last hidden states [B, T, H], running each distinct instruction prefix once.

    Every row starts with its instruction (25 of a TFNS row's ~58 tokens for SmolLM2) and a batch
    holds few distinct ones (tweet and news, 3 or 7 classes). The first P = min(prefix_len) tokens run
    once per distinct prefix ([K, P]), their keys/values are indexed out to the B rows (autograd adds
    the rows' gradients back into the shared computation) and the rest [B, T - P] attends to them,
    as the classifier does at inference. Same values as one full pass, ~40 % fewer tokens through
    the layers. One difference in training: LoRA dropout draws one mask per prefix, not per row.
    """
    from transformers import DynamicCache


    n_rows, width = input_ids.shape
    shared = int(prefix_len.min()) if prefix_len is not None else 0
    heads, row_of = (torch.unique(input_ids[:, :shared], dim=0, return_inverse=True) if 0 < shared < width
                     else (input_ids, None))
    if row_of is None or len(heads) == n_rows:  # nothing to share
        return body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    head = body(input_ids=heads, use_cache=True)
    pick = F.one_hot(row_of, len(heads))  # [B, K]: row b reads prefix row_of[b]
    kv = [(spread(k, pick), spread(v, pick)) for k, v, *_ in _cache_of(head)]  # [B, kv_heads, P, head_dim] each
    positions = torch.arange(shared, width, device=input_ids.device).expand(n_rows, -1)
    rest = body(input_ids=input_ids[:, shared:], attention_mask=attention_mask, position_ids=positions,
                use_cache=True, **{_cache_kwarg(body): DynamicCache(ddp_cache_data=kv)})
    return torch.cat([spread(head.last_hidden_state, pick), rest.last_hidden_state], dim=1)


def spread(t: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """``t[row_of]`` ([K, ...] -> [B, ...]) as a one-hot matmul, so that its backward is deterministic.

    The backward of ``t[row_of]`` adds each of the B rows' gradients into its prefix's row; on a CPU with more than
    one thread PyTorch does that with unordered atomic float adds, so two runs of one seed drifted apart within a
    few steps (step 4 of the direct recipe). A one-hot matmul sums them in a GEMM's fixed order (on a GPU too, where
    cuBLAS repeats bit for bit on one model of GPU), and its forward copies exactly (x * 1 + 0 + ...). Autocast is
    off so that float32 hidden states stay float32.
    """
    with torch.autocast(t.device.type, enabled=False):
        return (pick.to(t.dtype) @ t.flatten(1)).view(len(pick), *t.shape[1:])


def checkpoint_mlps(model) -> int:
    """Recompute every decoder layer's MLP in the backward instead of keeping its activations; returns how many.

    An MLP keeps gate, up, SiLU(gate) and their product for its backward ([B, T, intermediate] each, 2.7x the
    hidden size in SmolLM2); checkpointed, it keeps its input [B, T, hidden] and runs again during the backward
    (about a third more MLP forward work). The MLP draws no random numbers and the replay runs under the same
    autocast state (non-reentrant checkpointing), so values and gradients are those of the plain run. Whole
    layers are not checkpointed: their replay would write the shared prefix's KV cache a second time.
    """
    from torch.utils.checkpoint import checkpoint

    count = 0
    for module in unwrap(model).modules():
        mlp = getattr(module, "mlp", None)
        if mlp is None or getattr(mlp.forward, "finsent_checkpointed", False):
            continue
        own = mlp.forward

        def forward(x, _own=own):
            return checkpoint(_own, x, use_reentrant=False) if torch.is_grad_enabled() else _own(x)

        forward.finsent_checkpointed = True
        mlp.forward = forward
        count += 1
    return count


def split_rows(batch: dict, pass_tokens: int) -> list[dict]:
    """``batch`` (right-padded [B, T] tensors, ``prefix_len`` [B]) as sub-batches of at most ``pass_tokens`` padded
    positions each (rows x their longest row; a row longer than that alone), longest rows first, each trimmed to
    its own longest row: the rows of a batch with one long row no longer all pad to it."""
    lengths = batch["attention_mask"].sum(1)
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    groups, current = [], []
    for row in order:
        width = int(lengths[current[0]]) if current else int(lengths[row])
        if current and (len(current) + 1) * width > pass_tokens:
            groups.append(current)
            current = []
        current.append(row)
    groups.append(current)
    if len(groups) == 1:
        return [batch]
    parts = []
    for rows in groups:
        index, width = torch.tensor(rows), int(lengths[rows[0]])
        parts.append({k: (v[index, :width] if v.dim() == 2 else v[index]) for k, v in batch.items()})
    return parts


def reference_loss(model, input_ids, attention_mask, labels) -> tuple[torch.Tensor, int]:
    """The plain path: full [B, T, V] logits and the model's own loss (for tests and the speed bench)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    logits = out.logits.float()
    targets = labels[:, 1:]
    count = int((targets != IGNORE).sum())
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, count


def install_loss_forward(model, distill: Distill | None = None) -> None:
    """Give ``model`` (the peft model the Trainer trains) a ``forward`` that, called with ``LOSS_KEY=dict(...)``,
    returns ``token_loss`` of those inputs, and otherwise is the model's own forward.

    DDP arms its gradient all-reduce, and FSDP gathers the sharded weights, in the wrapper's forward: the fast
    loss must run inside ``wrapped(...)``, not by calling the decoder body past the wrapper (which trains, but
    each rank on its own gradients). accelerate's autocast wraps this forward like any other.
    """
    if getattr(model.forward, "finsent_loss_forward", False):
        return
    own = type(model).forward

    def forward(self, *args, **kwargs):
        terms = kwargs.pop(LOSS_KEY, None)
        if terms is None:
            return own(self, *args, **kwargs)
        return token_loss(self, **terms, distill=distill)  # the teacher stays outside the trained module

    forward.finsent_loss_forward = True
    model.forward = types.MethodType(forward, model)


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from (seed, epoch) alone: the same on every rank and after ``--resume``.

    transformers' ``LengthGroupedSampler`` draws from the global torch generator, which the ranks consume
    differently once training runs (dropout on batches of different lengths), so from the second epoch on
    they would disagree on the order and some rows would be seen twice, others never. ``batch_size`` is the
    global batch of one optimizer step (per-device batch x accumulation x processes), so the rows of each
    step are the same whatever the number of processes; accelerate then deals the per-device batches out.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class FinSentTrainer(Trainer):
    """Trainer with the label-position loss (``fast_loss``) and a count of real tokens seen.

    The returned loss is already normalised over the whole accumulated batch (the Trainer passes
    ``num_items_in_batch``, the count of labelled tokens across the accumulation steps and, under
    ``torchrun``, across the processes), so it matches the model's own loss under gradient accumulation
    and, once DDP has averaged the processes' gradients, a single process's loss on the same global batch.
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args, fast_loss: bool = True, share_prefix: bool = False, distill: Distill | None = None,
                 pass_tokens: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fast_loss, self.share_prefix, self.pass_tokens = fast_loss, share_prefix, pass_tokens
        self.tokens_seen = 0  # non-pad tokens through forward+backward on this process
        if fast_loss:
            install_loss_forward(self.model, distill)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and hasattr(dataset, "lengths"):
            args = self.args
            global_batch = args.train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
            seed = args.data_seed if args.data_seed is not None else args.seed
            return SeededLengthGroupedSampler(global_batch, dataset.lengths(), seed)
        return super()._get_train_sampler(train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        """One batch, in several forward/backward passes when it pads to more than ``pass_tokens`` positions.

        Each pass's loss is its labelled tokens' summed loss over the whole batch's labelled-token count, so the
        gradients add up to the one-pass gradient (up to float summation order): same rows, same step, less
        activation memory held at once. Returns the batch's loss, as one pass would.
        """
        parts = split_rows(inputs, self.pass_tokens) if self.pass_tokens else [inputs]
        if len(parts) == 1:
            return super().training_step(model, inputs, num_items_in_batch)
        if num_items_in_batch is None:  # compute_loss would divide each part by its own count: give the batch's
            labelled = int((inputs["labels"][:, 1:] != IGNORE).sum())
            num_items_in_batch = labelled * self.current_gradient_accumulation_steps
        total = 0
        for part in parts:
            total = total + super().training_step(model, part, num_items_in_batch)
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise NotImplementedError("FinSentTrainer computes the loss only (no evaluation loop)")
        if model.training:
            self.tokens_seen += int(inputs["attention_mask"].sum())
        if self.fast_loss:
            terms = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
                     "labels": inputs["labels"], "prefix_len": inputs.get("prefix_len") if self.share_prefix else None}
            loss_sum, count = model(**{LOSS_KEY: terms})  # through the DDP/FSDP wrapper, if any
        else:
            loss_sum, count = reference_loss(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        count = int(count)
        if num_items_in_batch is None:
            return loss_sum / (max(count, 1) * self.current_gradient_accumulation_steps)
        loss = loss_sum / num_items_in_batch
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            # num_items_in_batch counts every process's labelled tokens, and DDP averages the gradients over
            # the processes: scale back up so that the step is the single-process step on the global batch.
            loss = loss * self.accelerator.num_processes
        return loss

    def global_tokens_seen(self) -> int:
        """Non-pad tokens trained on by all processes together (a collective: call it on every rank)."""
        if self.args.world_size <= 1:
            return self.tokens_seen
        total = self.accelerator.reduce(torch.tensor(self.tokens_seen, device=self.args.device), reduction="sum")
        return int(total)


class ThroughputCallback(TrainerCallback):
    """Logs tokens/s every logging step (all processes together), so a long CPU run shows its speed while it runs.

    ``on_log`` runs on every rank at the same step, so the sum over processes is a collective there.
    """

    def __init__(self, trainer: FinSentTrainer):
        self.trainer = trainer
        self.start = time.perf_counter()
        self.start_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.start_tokens = time.perf_counter(), self.trainer.global_tokens_seen()

    def on_log(self, args, state, control, logs=None, **kwargs):
        elapsed = time.perf_counter() - self.start
        tokens = self.trainer.global_tokens_seen()
        if logs is not None and elapsed > 0:
            logs["tokens_per_second"] = round((tokens - self.start_tokens) / elapsed, 1)


class WeightAverage(TrainerCallback):
    """Tail averaging (``finetune.average_from``): the uniform mean of every trainable weight after each optimizer
    step from the step at that fraction of the run to the end, which ``apply`` then puts in place of the last
    weights (Polyak-Ruppert averaging; SWA, Izmailov et al. 2018, arXiv:1803.05407, does the same along a cyclic
    schedule, here along the run's own decaying one). It smooths the step-to-step noise the last weights carry.
    With LoRA the trained weights are the A and B matrices: each is averaged, not their product.

    The mean is float32, one copy of the trainable weights (412 MB for 103M of them), updated in place
    (mean += (w - mean) / n, as one lerp). Each checkpoint stores it (``FILE``, with n and the first step) so
    that ``--resume`` continues the same mean; a checkpoint past the first step without it cannot, and is refused.
    """

    FILE = "weight_average.safetensors"

    def __init__(self, model, fraction: float, resume_from: str | None = None):
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.fraction, self.resume_from = fraction, resume_from
        self.mean: dict[str, torch.Tensor] = {}
        self.count = 0
        self.first_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = max(1, math.ceil(self.fraction * state.max_steps))
        if not self.resume_from:
            return
        path = Path(self.resume_from) / self.FILE
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as saved:
                meta = saved.metadata()
                if int(meta["first_step"]) != self.first_step or set(saved.keys()) != set(self.params):
                    raise UsageError(f"{path} averages from step {meta['first_step']} over other weights: not "
                                     f"this run's mean (from step {self.first_step})")
                self.mean = {name: saved.get_tensor(name) for name in self.params}
                self.count = int(meta["count"])
        elif state.global_step >= self.first_step:
            raise UsageError(f"cannot resume the weight average from {self.resume_from}: it has no {self.FILE} "
                             f"but the average started at step {self.first_step}")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step < self.first_step:
            return
        self.count += 1
        with torch.no_grad():
            for name, p in self.params.items():
                if name in self.mean:  # one fused pass, no [weights]-sized temporary each step
                    self.mean[name].lerp_(p.detach().float(), 1 / self.count)
                else:
                    self.mean[name] = p.detach().float().clone()

    def on_save(self, args, state, control, **kwargs):
        if self.count and state.is_world_process_zero:
            from safetensors.torch import save_file

            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_file({k: v.contiguous() for k, v in self.mean.items()}, str(folder / self.FILE),
                      metadata={"count": str(self.count), "first_step": str(self.first_step)})

    @contextmanager
    def swapped(self):
        """The averaged weights in place of the current ones for the duration (a dev probe scores them)."""
        current = {name: p.detach().clone() for name, p in self.params.items()}
        self.apply()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(current[name])

    def apply(self) -> None:
        """Put the mean in place of the weights (cast to their dtype). Nothing to do before the first step."""
        with torch.no_grad():
            for name, mean in self.mean.items():
                self.params[name].copy_(mean)

    def summary(self) -> dict:
        return {"from": self.fraction, "first_step": self.first_step, "steps_averaged": self.count}


class DevCallback(TrainerCallback):
    """Scores the dev split (``finsent.build.devsplit``) every ``every`` optimizer steps: the curve that epochs and
    checkpoints are chosen by, kept in ``curve`` (training.json's ``dev_curve``). With a ``WeightAverage``
    under way, each point also scores the averaged weights (``average_accuracy``): one run then compares them."""

    def __init__(self, tokenizer, dev: dict, every: int, average: WeightAverage | None = None):
        self.tokenizer, self.dev, self.every, self.curve = tokenizer, dev, every, []
        self.average = average

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return

        start = time.perf_counter()
        result = score_model(model, self.tokenizer, self.dev)
        self.curve.append({"step": state.global_step, "epoch": round(float(state.epoch or 0), 3),
                           "accuracy": result["accuracy"], "macro_f1": result["macro_f1"],
                           "per_source": {k: v["accuracy"] for k, v in result["per_source"].items()},
                           "seconds": round(time.perf_counter() - start, 1)})
        logger.info("step %d: dev accuracy %.4f, macro-F1 %.4f (%.0f s)", state.global_step, result["accuracy"],
                    result["macro_f1"], time.perf_counter() - start)
        if self.average is not None and self.average.count > 1:  # one step averaged is the current weights
            with self.average.swapped():
                averaged = score_model(model, self.tokenizer, self.dev)
            self.curve[-1].update(average_accuracy=averaged["accuracy"], average_macro_f1=averaged["macro_f1"],
                                  average_steps=self.average.count)
            logger.info("step %d: dev accuracy %.4f with the weights averaged over the last %d steps",
                        state.global_step, averaged["accuracy"], self.average.count)


def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    """The mixed-precision dtype for ``precision`` on ``device`` (None = float32 throughout).

    ``auto`` picks bf16 on GPUs that support it (else fp16), and on CPUs only when they have native
    bf16 matrix instructions (AVX-512 BF16 or AMX): without them bf16 matmuls are emulated and
    slower than float32 (build/bench/finetune_speed.py measures both).
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX-512 BF16 or AMX tiles), as torch.cpu reports them.

    With them a bfloat16 GEMM runs several times faster than float32; without them (AVX2 only) torch emulates
    bfloat16 and it runs slower.
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
