"""The export stage of ``finsent release`` on the real runtimes: GGUF and ONNX written into a tiny release and
scored by llama.cpp and onnxruntime, the push that uploads them in the release's one commit, and the refusals of
missing, stale or unlisted exports; a width q8_0 cannot pack, and a release that skips the stage when up to date."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from export_recipe import copy, recipe
from hub_server import HubServer
from release_factory import RECIPE, write_reports

from finsent.core.recipes import load_recipe
from finsent.export.stage import MANIFEST, ExportStageError, check_exports, exports_present, read_exports, run_exports
from finsent.hub.gate import PublishError
from finsent.hub.publish import push_release

# --- the stage on real runtimes ----------------------------------------------------------------------------------


def test_stage_writes_the_exports_and_their_agreement_through_the_real_runtimes(tiny_release, tmp_path, texts):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the runtimes extra)")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the runtimes extra)")
    release = copy(tiny_release, tmp_path / "release")
    (release / "reports").mkdir()
    (release / "reports" / "recipe.yaml").write_text(yaml.safe_dump({"name": "tiny"}))
    r = recipe(tmp_path, texts, "{gguf: [f16, q8_0], onnx: true, agreement_n: 5}")
    manifest = run_exports(r, release)

    assert [(e["format"], e["quant"], e["path"]) for e in manifest["files"]] == [
        ("gguf", "f16", "tiny-F16.gguf"), ("gguf", "q8_0", "tiny-Q8_0.gguf"), ("onnx", None, "onnx")]
    assert (release / "onnx" / "model.onnx").is_file() and (release / "onnx" / "tokenizer.json").is_file()
    assert manifest["n"] == 5 and manifest["texts"] == "texts.jsonl" and manifest["scheme"] == "3"
    assert manifest["commit"] and manifest["device"].startswith("CPU ")
    for entry in manifest["files"]:
        assert entry["bytes"] > 0 and len(entry["sha256"]) == 64
        assert entry["runtime"].split()[0] in ("llama-cpp-python", "onnxruntime")
        # the tiny random model's labels are near ties; f16 and the float32 graph still pick the same ones
        assert 0.6 <= entry["agreement"] <= 1.0, entry
    assert manifest["files"][0]["max_abs_logprob_diff"] < 2e-3  # llama.cpp f16 vs torch float32
    assert manifest["files"][2]["max_abs_logprob_diff"] < 1e-4  # onnxruntime float32 vs torch float32
    assert json.loads((release / MANIFEST).read_text()) == manifest == read_exports(release)
    assert check_exports(release, r) == manifest and exports_present(release)
    # the stored recipe now says what the stage ran with: the push checks the folder against it
    assert yaml.safe_load((release / "reports" / "recipe.yaml").read_text())["export"]["gguf"] == ["f16", "q8_0"]

    # Asking for less removes what the recipe no longer wants.
    fewer = recipe(tmp_path, texts, "{gguf: [f16], agreement_n: 0}")
    manifest = run_exports(fewer, release)
    assert [e["path"] for e in manifest["files"]] == ["tiny-F16.gguf"] and manifest["n"] == 0
    assert manifest["files"][0]["agreement"] is None and "agreement_n: 0" in manifest["files"][0]["note"]
    assert not (release / "tiny-Q8_0.gguf").exists() and not (release / "onnx").exists()
    assert run_exports(recipe(tmp_path, texts, "{gguf: []}"), release) is None
    assert not (release / "tiny-F16.gguf").exists() and not (release / MANIFEST).exists()


# --- the push ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_once(tiny_release, tmp_path_factory) -> Path:
    """A complete release folder (reports, eval results, card) whose stored recipe asks for a GGUF f16 and ONNX."""
    release = copy(tiny_release, tmp_path_factory.mktemp("exported") / "pushable")
    write_reports(release)
    stored = {**RECIPE, "name": "tiny", "export": {"gguf": ["f16"], "onnx": True, "agreement_n": 0}}
    (release / "reports" / "recipe.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    (release / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    run_exports(load_recipe(release / "reports" / "recipe.yaml"), release)
    return release


@pytest.fixture
def exported(exported_once, tmp_path) -> Path:
    return copy(exported_once, tmp_path / "pushable")


def test_push_uploads_the_exports_in_the_releases_one_commit(exported, tmp_path):
    with HubServer(tmp_path / "hub") as hub:
        out = push_release(exported, "alice/tiny", "v1.0.0", token=hub.token, endpoint=hub.url)
        repo = hub.repo("alice/tiny")
        commit = repo.commits[out["commit"]]
        assert repo.commits[commit.parent].title == "initial commit"  # one commit for the whole release
        assert len(hub.requests_matching(r"POST .*/commit/")) == 1
        for rel in ("tiny-F16.gguf", "onnx/model.onnx", "onnx/tokenizer.json", "reports/exports.json",
                    "model.safetensors"):
            assert rel in commit.files, rel
            assert hub.read_file("alice/tiny", rel, "v1.0.0") == (exported / rel).read_bytes()
        assert commit.files["tiny-F16.gguf"].lfs
        assert not any(".finsent-output" in rel for rel in commit.files)  # the onnx folder's marker stays local


@pytest.mark.parametrize("damage, message", [
    ("no manifest", r"the recipe asks for tiny-F16.gguf, onnx but the folder has no exports manifest"),
    ("stray gguf", r"holds other-Q8_0.gguf, which the exports manifest does not list"),
    ("changed gguf", r"tiny-F16.gguf differs from the file the export stage wrote"),
    ("new weights", r"the exports were made from other weights than the folder's \*.safetensors"),
    ("missing onnx", r"onnx is listed in reports/exports.json but missing"),
])
def test_push_refuses_missing_stale_or_unlisted_exports(exported, tmp_path, damage, message):
    import torch
    from safetensors.torch import load_file, save_file

    if damage == "no manifest":
        (exported / MANIFEST).unlink()
    elif damage == "stray gguf":
        (exported / "other-Q8_0.gguf").write_bytes(b"GGUF")
    elif damage == "changed gguf":
        with open(exported / "tiny-F16.gguf", "r+b") as fh:
            fh.seek(-2, 2)
            fh.write(b"\x01\x02")
    elif damage == "new weights":
        weights = load_file(exported / "model.safetensors")
        name = next(iter(weights))
        weights[name] = weights[name] + torch.ones_like(weights[name])
        save_file(weights, exported / "model.safetensors", metadata={"format": "pt"})
    else:
        shutil.rmtree(exported / "onnx")
    with pytest.raises(PublishError, match=message):
        push_release(exported, "alice/tiny", "v1.0.0", dry_run=True, read_remote=False)
    with pytest.raises(ExportStageError, match=message):
        check_exports(exported, load_recipe(exported / "reports" / "recipe.yaml"))


def test_stage_refuses_a_width_q8_0_cannot_pack_and_a_file_it_did_not_write(tiny_release, tmp_path, texts):
    from finsent.core.errors import ExportInputError

    release = copy(tiny_release, tmp_path / "release")
    config = json.loads((release / "config.json").read_text())
    r = recipe(tmp_path, texts, "{gguf: [q8_0], agreement_n: 0}")
    (release / "tiny-Q8_0.gguf").write_bytes(b"mine")
    with pytest.raises(ExportInputError, match="tiny-Q8_0.gguf exists and no exports manifest .* --overwrite"):
        run_exports(r, release)
    assert (release / "tiny-Q8_0.gguf").read_bytes() == b"mine"
    (release / "tiny-Q8_0.gguf").unlink()
    # A base whose own hidden size is no multiple of 32 (here 100) cannot be padded: refused, nothing written.
    (release / "config.json").write_text(json.dumps({**config, "hidden_size": 100}))
    with pytest.raises(ExportInputError, match=r"hidden_size 100.*export --quant f16"):
        run_exports(r, release)
    assert not list(release.glob("*.gguf")) and not (release / MANIFEST).exists()


def test_release_runs_the_stage_and_skips_it_when_up_to_date(tiny_release, tmp_path, texts):
    from finsent.release import STAGES, Release

    assert STAGES.index("eval") < STAGES.index("export") < STAGES.index("card") < STAGES.index("push")
    r = recipe(tmp_path, texts, "{gguf: [f16], agreement_n: 0}")
    release = Release(r, tmp_path / "runs", tmp_path / "releases")
    copy(tiny_release, release.release_dir)
    assert release.run(only="export")["ran"] == ["export"]
    fps = release.fingerprints()
    assert release.up_to_date("export", fps["export"], release.release_dir / MANIFEST) and release._exports_present()
    (release.release_dir / "tiny-F16.gguf").write_bytes(b"truncated")
    assert not release._exports_present()  # a damaged export makes the stage run again
    # The export section decides the export stage only, never the model's stages.
    other = Release(recipe(tmp_path, texts, "{gguf: [f16, q8_0], agreement_n: 0}"), tmp_path / "runs",
                    tmp_path / "releases").fingerprints()
    assert other["merge"] == fps["merge"] and other["eval"] == fps["eval"] and other["export"] != fps["export"]
