"""The export stage of ``finsent release``: the recipe's ``export:`` runtimes, written into the release folder.

    export:
      gguf: [f16, q8_0]     # <recipe name>-F16.gguf, <recipe name>-Q8_0.gguf (llama.cpp, Ollama, llama-cpp-python)
      onnx: true            # onnx/ (model.onnx + tokenizer, onnxruntime)
      agreement_n: 200      # texts on which each export's label is compared with FinSentClassifier's

``run_exports`` writes each file through a temporary sibling renamed into place (``export_gguf``,
``export_onnx``), scores ``agreement_n`` texts with each runtime and with ``FinSentClassifier`` (3 classes,
label scoring) and then writes ``reports/exports.json``, the manifest: every export's path, size, sha256
and label agreement, and the sha256 of the weights it was made from. The manifest is removed first and
written last, so a stage that stops half-way leaves exports no manifest vouches for.

``check_exports`` is what ``finsent push`` asks before it uploads anything (the exports then go in the
release's one commit, like every other file of the folder): the files the stored recipe asks for are
all there, each matches the manifest, the manifest was made from the folder's current weights, and no
GGUF or ONNX file lies in the folder that the manifest does not list. ``read_exports`` gives the card
what the release really carries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

from finsent.core.classify import FinSentClassifier
from finsent.core.errors import ExportInputError, FinsentError
from finsent.core.outputs import is_toolkit_output, release_files, write_text_atomic
from finsent.core.provenance import cpu_name, file_sha256, git_commit, library_versions
from finsent.core.texts import load_texts
from finsent.export.formats import RUNTIMES_EXTRA
from finsent.export.gguf import GGUFScorer, export_gguf
from finsent.export.onnx import ONNXScorer, export_onnx

logger = logging.getLogger(__name__)

MANIFEST = "reports/exports.json"
ONNX_DIR = "onnx"


class ExportStageError(FinsentError, RuntimeError):
    """The release folder's exports do not match its manifest, its weights or its recipe."""


def gguf_name(name: str, quant: str) -> str:
    """``<name>-Q8_0.gguf``: the upper-case type in the file name is the tag llama.cpp's and Ollama's Hub
    download (``REPO:Q8_0``) look for."""
    return f"{name}-{quant.upper()}.gguf"


def weights_digest(release_dir: Path) -> dict[str, str]:
    """sha256 of each top-level ``*.safetensors`` of the release: what its exports were made from."""
    return {p.name: file_sha256(p) for p in sorted(Path(release_dir).glob("*.safetensors"))}


def _folder_sha256(folder: Path) -> str:
    """One sha256 over a folder's published files (names and bytes), in name order."""
    h = hashlib.sha256()
    for path in release_files(folder):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + file_sha256(path).encode())
    return h.hexdigest()


def _digest(path: Path) -> tuple[int, str]:
    """(bytes, sha256) of an export: a file, or a folder (its published files)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in release_files(path)), _folder_sha256(path)
    return path.stat().st_size, file_sha256(path)


def read_exports(release_dir) -> dict | None:
    """The manifest (``reports/exports.json``) of a release, checked; None if the release has no exports."""
    path = Path(release_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        for entry in files:
            for key in ("format", "path", "bytes", "sha256", "agreement"):
                entry[key]  # noqa: B018 - presence check
            if entry["format"] not in ("gguf", "onnx"):
                raise ValueError(f"unknown format {entry['format']!r}")
        data["weights"], data["n"]  # noqa: B018
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportStageError(f"{path}: not a valid exports manifest ({type(exc).__name__}: {exc}): run "
                               "`finsent release RECIPE --only export` again") from None
    return data


def asked(recipe) -> list[tuple[str, str | None, str]]:
    """(format, quant, path in the release) of every export the recipe asks for."""
    out = [("gguf", quant, gguf_name(recipe.name, quant)) for quant in recipe.export.gguf]
    if recipe.export.onnx:
        out.append(("onnx", None, ONNX_DIR))
    return out


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run_exports(recipe, release_dir, *, texts_file=None, overwrite: bool = False) -> dict | None:
    """Write the exports the recipe asks for into ``release_dir`` and the manifest; returns it (None: none asked).

    Exports an earlier run wrote that the recipe no longer asks for are removed; a file of the same name
    that finsent did not write (no manifest lists it) is refused unless ``overwrite``.
    """

    release_dir = Path(release_dir)
    previous = _previous_paths(release_dir)
    wanted = asked(recipe)
    (release_dir / MANIFEST).unlink(missing_ok=True)  # no manifest vouches for a half-done stage
    for rel in sorted(previous - {rel for _, _, rel in wanted}):
        logger.info("removing %s: the recipe no longer asks for it", rel)
        _remove(release_dir / rel)
    if not wanted:
        return None
    for fmt, _, rel in wanted:
        path = release_dir / rel
        ours = rel in previous or (fmt == "onnx" and path.is_dir() and is_toolkit_output(path))
        if path.exists() and not ours and not overwrite:
            raise ExportInputError(f"{path} exists and no exports manifest of this release lists it: pass "
                                   "--overwrite to replace it")

    texts, ref, texts_path = _reference_scores(recipe, release_dir, texts_file)
    entries = []
    for fmt, quant, rel in wanted:
        path = release_dir / rel
        t0 = time.perf_counter()
        if fmt == "gguf":
            export_gguf(release_dir, path, quant=quant, overwrite=True)
        else:

            export_onnx(release_dir, path, overwrite=True)
        seconds = time.perf_counter() - t0
        size, digest = _digest(path)
        entry = {"format": fmt, "quant": quant, "path": rel, "bytes": size, "sha256": digest,
                 "seconds_export": round(seconds, 1)}
        entry.update(_agreement(fmt, path, texts, ref))
        logger.info("%s: %.1f MB, label agreement %s", rel, size / 1e6,
                    "not measured" if entry["agreement"] is None else f"{entry['agreement']:.3f}")
        entries.append(entry)
    manifest = {
        "weights": weights_digest(release_dir), "files": entries, "scheme": "3", "kind": "news", "n": len(texts),
        "texts": texts_path.name if texts_path else None,
        "texts_sha256": file_sha256(texts_path) if texts_path else None,
        "reference": "FinSentClassifier, float32, label scoring",
        "device": cpu_name(), "versions": _versions(), "commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_text_atomic(release_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    _record_export_section(recipe, release_dir)
    return manifest


def _record_export_section(recipe, release_dir: Path) -> None:
    """The stored recipe (reports/recipe.yaml, written at merge time) gets the export section this stage ran with:
    ``finsent push`` checks the folder against it, and the export section may change without a new merge."""
    import dataclasses

    import yaml

    path = release_dir / "reports" / "recipe.yaml"
    if not path.is_file():
        return
    stored = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stored["export"] = dataclasses.asdict(recipe.export)
    write_text_atomic(path, yaml.safe_dump(stored, sort_keys=False))


def _previous_paths(release_dir: Path) -> set[str]:
    try:
        manifest = read_exports(release_dir)
    except ExportStageError:
        return set()
    return {entry["path"] for entry in manifest["files"]} if manifest else set()


def _reference_scores(recipe, release_dir: Path, texts_file):
    """The agreement texts and FinSentClassifier's label log-probabilities on them (none if agreement_n is 0)."""
    n = recipe.export.agreement_n
    if not n:
        return [], None, None

    texts_file = texts_file or recipe.eval.texts_file()
    if texts_file is None:
        raise ExportStageError(f"recipe {recipe.name!r}: export.agreement_n is {n} but no texts are named: set "
                               "eval.speed_texts (a csv/jsonl with a 'text' column) or export.agreement_n: 0")
    texts_path = Path(texts_file)
    texts = load_texts(texts_path, n)
    clf = FinSentClassifier.from_pretrained(str(release_dir), dtype="float32")
    ref = clf.label_logprobs(texts, "3", kind="news").double().numpy()
    del clf
    return texts, ref, texts_path


def _agreement(fmt: str, path: Path, texts: list[str], ref) -> dict:
    """Label agreement of one export with the reference scores, through its real runtime."""
    import importlib.metadata
    import importlib.util

    import numpy as np

    module, runtime = ("llama_cpp", "llama-cpp-python") if fmt == "gguf" else ("onnxruntime", "onnxruntime")
    if not texts:
        return {"agreement": None, "note": "not measured (export.agreement_n: 0)"}
    if importlib.util.find_spec(module) is None:
        logger.warning("%s is not installed: the agreement of %s is not measured (%s)", runtime, path.name,
                       RUNTIMES_EXTRA)
        return {"agreement": None, "note": f"not measured: {runtime} is not installed ({RUNTIMES_EXTRA})"}
    import torch

    threads = torch.get_num_threads()
    if fmt == "gguf":

        with GGUFScorer(path, threads=threads) as scorer:
            got = scorer.label_logprobs(texts, "3", "news")
    else:

        got = ONNXScorer(path, threads=threads).label_logprobs(texts, "3", "news")
    got = np.asarray(got)
    return {"agreement": round(float((got.argmax(1) == ref.argmax(1)).mean()), 4),
            "max_abs_logprob_diff": float(np.abs(got - ref).max()),
            "runtime": f"{runtime} {importlib.metadata.version(runtime)}"}


def _versions() -> dict:
    return library_versions(("torch", "transformers", "gguf", "llama-cpp-python", "onnxruntime", "onnx"))


# --- checks for the push and the stage skip ---------------------------------------------------------------------


def exports_present(release_dir) -> bool:
    """Whether the manifest exists and every file it lists is there with its recorded size (the stage's skip)."""
    try:
        manifest = read_exports(release_dir)
    except ExportStageError:
        return False
    if manifest is None:
        return False
    for entry in manifest["files"]:
        path = Path(release_dir) / entry["path"]
        if not path.exists() or _digest_size(path) != entry["bytes"]:
            return False
    return True


def _digest_size(path: Path) -> int:
    return sum(p.stat().st_size for p in release_files(path)) if path.is_dir() else path.stat().st_size


def stray_exports(release_dir: Path, listed: set[str]) -> list[str]:
    """GGUF files and ONNX graphs in the folder that the manifest does not list."""
    out = []
    for path in release_files(release_dir):
        rel = path.relative_to(release_dir).as_posix()
        top = rel.split("/", 1)[0]
        if (path.suffix == ".gguf" or path.suffix == ".onnx") and rel not in listed and top not in listed:
            out.append(rel)
    return out


def check_exports(release_dir, recipe=None) -> dict | None:
    """Refuse (ExportStageError) a folder whose exports are missing, stale or unlisted; returns the manifest."""
    release_dir = Path(release_dir)
    manifest = read_exports(release_dir)
    wanted = asked(recipe) if recipe is not None else []
    redo = "run `finsent release RECIPE --only export` (or --from export) to write them again"
    if manifest is None:
        if wanted:
            names = ", ".join(rel for _, _, rel in wanted)
            raise ExportStageError(f"{release_dir}: the recipe asks for {names} but the folder has no exports "
                                   f"manifest ({MANIFEST}): {redo}")
        stray = stray_exports(release_dir, set())
        if stray:
            raise ExportStageError(f"{release_dir} holds {', '.join(stray)}, which no exports manifest lists (not "
                                   "written by the export stage): remove it, or ask for it in the recipe's export "
                                   "section")
        return None
    listed = {entry["path"]: entry for entry in manifest["files"]}
    missing = [rel for _, _, rel in wanted if rel not in listed]
    if missing:
        raise ExportStageError(f"{release_dir}: the recipe asks for {', '.join(missing)}, which the exports manifest "
                               f"does not list: {redo}")
    if manifest["weights"] != weights_digest(release_dir):
        raise ExportStageError(f"{release_dir}: the exports were made from other weights than the folder's "
                               f"*.safetensors (the model changed after the export stage): {redo}")
    for rel, entry in listed.items():
        path = release_dir / rel
        if not path.exists():
            raise ExportStageError(f"{path} is listed in {MANIFEST} but missing: {redo}")
        size, digest = _digest(path)
        if (size, digest) != (entry["bytes"], entry["sha256"]):
            raise ExportStageError(f"{path} differs from the file the export stage wrote (size or sha256): {redo}")
    stray = stray_exports(release_dir, set(listed))
    if stray:
        raise ExportStageError(f"{release_dir} holds {', '.join(stray)}, which the exports manifest does not list: "
                               "remove it, or ask for it in the recipe's export section")
    return manifest
