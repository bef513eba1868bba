"""``finsent export``: GGUF files that transformers and llama.cpp (llama-cpp-python) load and score like the
release, q8_0 with a pruned MLP width padded by zero neurons, and ONNX graphs scored by onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finsent.cli import main
from finsent.core.errors import ExportInputError

# --- fast: layout rules ------------------------------------------------------------------------------


def test_rope_permutation_interleaves_each_heads_halves():
    from finsent.export.gguf import permute_rope

    w = np.arange(8 * 3).reshape(8, 3)  # 2 heads of head_dim 4: rows (0 1 | 2 3) (4 5 | 6 7)
    assert permute_rope(w, 2)[:, 0].tolist() == [0, 6, 3, 9, 12, 18, 15, 21]  # rows 0 2 1 3 4 6 5 7


def test_pre_tokenizer_type_is_read_from_the_tokenizer_not_guessed(smollm2_dir):
    from finsent.export.gguf import LLAMA3_SPLIT, pre_tokenizer_type

    assert pre_tokenizer_type(json.loads((smollm2_dir / "tokenizer.json").read_text())) == "smollm"
    llama3 = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}}
    assert pre_tokenizer_type(llama3) == "llama-bpe"
    with pytest.raises(ExportInputError, match="unsupported pre-tokenizer"):
        pre_tokenizer_type({"pre_tokenizer": {"type": "Metaspace"}})


def test_pad_ffn_adds_zero_neurons_that_change_no_output():
    from finsent.export.gguf import pad_ffn

    rng = np.random.default_rng(0)
    gate, up, down = rng.normal(size=(102, 64)), rng.normal(size=(102, 64)), rng.normal(size=(64, 102))
    x = rng.normal(size=(5, 64))

    def mlp(g, u, d):  # Llama's GLU: down(silu(gate x) * up x)
        a = x @ g.T
        return (a / (1 + np.exp(-a)) * (x @ u.T)) @ d.T

    padded = [pad_ffn(f"blk.3.ffn_{n}.weight", w, 128) for n, w in (("gate", gate), ("up", up), ("down", down))]
    assert [w.shape for w in padded] == [(128, 64), (128, 64), (64, 128)]
    assert not padded[0][102:].any() and not padded[2][:, 102:].any()
    np.testing.assert_allclose(mlp(*padded), mlp(gate, up, down), rtol=0, atol=1e-12)
    assert pad_ffn("token_embd.weight", gate, 128) is gate
    assert pad_ffn("blk.0.ffn_up.weight", padded[1], 128) is padded[1]


def test_q8_0_names_the_base_width_that_cannot_be_padded():
    from finsent.export.gguf import check_quantizable, ffn_width

    config = {"hidden_size": 100, "intermediate_size": 922, "num_attention_heads": 4}
    with pytest.raises(ExportInputError, match=r"hidden_size 100, q/k/v width 100: the base model's widths cannot "
                                               r"be padded like a pruned MLP: export --quant f16"):
        check_quantizable(config, "q8_0")
    check_quantizable(config, "f16")
    check_quantizable({**config, "hidden_size": 64}, "q8_0")
    assert (ffn_width(config, "q8_0"), ffn_width(config, "f16")) == (928, 922)
    assert ffn_width({"intermediate_size": 4916}, "q8_0") == 4928  # the published width, 12 zero neurons a layer
    assert ffn_width({"intermediate_size": 4896}, "q8_0") == 4896


def test_export_help_documents_both_formats(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    for word in ("gguf", "onnx", "pipeline", "--quant", "q8_0", "zero neurons", "llama.cpp", "onnxruntime",
                 "llama-server", "Ollama", "export: {gguf: [f16, q8_0], onnx: true}", "finsent push"):
        assert word in out


# --- bad inputs: one line naming the problem, found before any model is loaded -----------------------------


@pytest.mark.parametrize("fmt", ["gguf", "onnx", "pipeline"])
def test_truncated_config_json_is_named_before_the_export(model_copy, tmp_path, capsys, fmt):
    config = model_copy / "config.json"
    truncated = config.read_text()[:40]  # an interrupted copy
    config.write_text(truncated)
    out = tmp_path / "out"
    assert main(["export", str(model_copy), "--format", fmt, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err == (f"finsent export: error: {config}: not valid JSON (Unterminated string starting at, "
                            "line 3) (fix or replace the file, then export again)\n")
    assert not out.exists() and config.read_text() == truncated


def test_truncated_tokenizer_json_is_named_before_the_export(model_copy, tmp_path, capsys):
    tokenizer = model_copy / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text()[:100])
    assert main(["export", str(model_copy), "--format", "gguf", "--out", str(tmp_path / "x.gguf")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"finsent export: error: {tokenizer}: not a tokenizer file (")
    assert captured.err.endswith("): copy or save the tokenizer again\n")
    assert not (tmp_path / "x.gguf").exists()


def test_onnx_without_onnx_installed_names_the_extra_before_loading(model_copy, tmp_path, capsys, monkeypatch):
    import sys

    import transformers

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the missing exporter was named")

    for name in ("onnx", "onnxruntime"):  # `import onnx` fails and find_spec("onnx") is None, installed or not
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    out = tmp_path / "out"
    assert main(["export", str(model_copy), "--format", "onnx", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("finsent export: error: --format onnx needs onnx and onnxruntime, not installed here: "
                            "pip install 'llama-finsent[runtimes]' (or pip install onnx onnxruntime)\n")
    assert not out.exists()
