"""The fast losses equal the plain ones: label-position loss and its gradients, the shared prefix, and its
gradients repeated bit for bit on two threads (tiny random Llama with a LoRA)."""

from __future__ import annotations

import pytest
import torch
from finetune_factory import batch_of, lora_model


@pytest.mark.parametrize("loss", ["answer", "full"])
def test_fast_loss_equals_full_logits_loss_and_gradients(tiny_llama_dir, tmp_path, loss):
    from finsent.build.trainer import reference_loss, token_loss

    model = lora_model(tiny_llama_dir)
    batch = batch_of(tiny_llama_dir, tmp_path, loss)
    results = []
    for fn in (reference_loss, token_loss):
        model.zero_grad(set_to_none=True)
        total, count = fn(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        (total / count).backward()
        results.append((float(total), count, [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (ref, ref_n, ref_g), (fast, fast_n, fast_g) = results
    assert fast_n == ref_n == int((batch["labels"][:, 1:] != -100).sum())
    assert fast == pytest.approx(ref, rel=1e-5)
    # The model's own loss (mean over labelled tokens) is the same number.
    own = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert float(own) == pytest.approx(ref / ref_n, rel=1e-5)
    for a, b in zip(ref_g, fast_g):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", ["answer", "full"])
def test_shared_prefix_loss_equals_the_full_pass(tiny_llama_dir, tmp_path, loss):
    from finsent.build.trainer import reference_loss, token_loss

    model = lora_model(tiny_llama_dir).eval()  # no dropout: the shared prefix draws one mask per prefix
    batch = batch_of(tiny_llama_dir, tmp_path, loss)
    # Tweets and news: two distinct instruction prefixes of equal length in one batch.
    heads = {tuple(row[: int(n)]) for row, n in zip(batch["input_ids"].tolist(), batch["prefix_len"])}
    assert len(heads) == 2 and len(batch["input_ids"]) > 2
    results = []
    for fn, extra in ((reference_loss, {}), (token_loss, {"prefix_len": batch["prefix_len"]})):
        model.zero_grad(set_to_none=True)
        total, count = fn(model, batch["input_ids"], batch["attention_mask"], batch["labels"], **extra)
        (total / count).backward()
        results.append((float(total), count, [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (ref, ref_n, ref_g), (shared, shared_n, shared_g) = results
    assert shared_n == ref_n and shared == pytest.approx(ref, rel=1e-5)
    for a, b in zip(ref_g, shared_g):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_shared_prefix_gradients_repeat_bit_for_bit_on_two_threads(tiny_llama_dir, tmp_path):
    """Two builds of one seed must train the same weights. Indexing the prefix's keys/values out to the rows
    (``kv[row_of]``) summed the rows' gradients back with unordered atomic adds on a multi-threaded CPU: the direct
    recipe's two runs of seed 42 parted at step 4. 66 rows x ~25 prefix tokens: big enough for PyTorch's parallel
    path (32,768 elements), which a small batch never takes."""
    from finsent.build.trainer import token_loss

    model = lora_model(tiny_llama_dir).eval()
    batch = batch_of(tiny_llama_dir, tmp_path, "answer", repeat=11)
    assert len(batch["input_ids"]) == 66 and int(batch["prefix_len"].min()) * 66 * 64 > 32768
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(8):
            model.zero_grad(set_to_none=True)
            total, count = token_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                      prefix_len=batch["prefix_len"])
            (total / count).backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    finally:
        torch.set_num_threads(threads)
    assert grads[0].abs().max() > 0
    assert all(torch.equal(grads[0], g) for g in grads[1:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_checkpointed_mlps_give_the_same_loss_and_gradients(tiny_llama_dir, tmp_path, dtype):
    """finetune.activation_checkpointing: mlp replays each MLP in the backward: the same loss and gradients, bit
    for bit, under bf16 autocast too, with the shared prefix; and less memory kept for the backward."""
    from finsent.build.trainer import checkpoint_mlps, token_loss

    model = lora_model(tiny_llama_dir).eval()
    batch = batch_of(tiny_llama_dir, tmp_path, "answer")
    results = []
    for checkpointed in (False, True):
        if checkpointed:
            assert checkpoint_mlps(model) == model.config.num_hidden_layers
            assert checkpoint_mlps(model) == 0  # once only
        saved: list[int] = []
        model.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(lambda t, saved=saved: saved.append(t.nbytes) or t,
                                                      lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
            total, count = token_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                      prefix_len=batch["prefix_len"])
        (total / count).backward()
        results.append((total.item(), sum(saved), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (plain, plain_saved, plain_g), (replayed, replayed_saved, replayed_g) = results
    assert replayed == plain and replayed_saved < plain_saved
    for a, b in zip(plain_g, replayed_g):
        assert torch.equal(a, b)


def test_a_batch_split_into_passes_gives_the_one_pass_gradient(tiny_llama_dir, tmp_path):
    """finetune.pass_tokens: the rows of one batch in several forward/backward passes (longest first, each
    trimmed to its longest row) add up to the one-pass loss and gradients, shared prefix included."""
    from finsent.build.trainer import split_rows, token_loss

    model = lora_model(tiny_llama_dir).eval()
    batch = batch_of(tiny_llama_dir, tmp_path, "answer")
    rows, width = batch["input_ids"].shape
    lengths = batch["attention_mask"].sum(1)
    parts = split_rows(batch, int(lengths.max()) * 2)
    assert len(parts) == (rows + 1) // 2 and sum(len(p["input_ids"]) for p in parts) == rows
    assert all(p["input_ids"].shape[1] == int(p["attention_mask"].sum(1).max()) for p in parts)  # no extra padding
    assert [int(p["attention_mask"].sum(1).max()) for p in parts] == sorted(lengths.tolist(), reverse=True)[::2]
    assert split_rows(batch, rows * width) == [batch]
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    results = []
    for passes in ([batch], parts):
        model.zero_grad(set_to_none=True)
        total = 0.0
        for part in passes:
            loss, _ = token_loss(model, part["input_ids"], part["attention_mask"], part["labels"],
                                 prefix_len=part["prefix_len"])
            (loss / labelled).backward()
            total += loss.item()
        results.append((total, [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (one, one_g), (split, split_g) = results
    assert split == pytest.approx(one, rel=1e-5)
    for a, b in zip(one_g, split_g):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
