"""``finsent push``: one commit + a tag, the release gate, failures, driven with the real huggingface_hub client
against the loopback Hub server of ``hub_server.py`` (never a mocked client)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants, snapshot_download
from release_factory import copy_release

from finsent.hub.gate import PublishError
from finsent.hub.publish import push_release

REPO = "alice/Llama-FinSent-S"


def test_dry_run_sends_nothing(hub, release, capsys):
    from finsent.cli import main

    out = push_release(release, REPO, "v1.0.0", dry_run=True, token=hub.token, endpoint=hub.url)
    assert out["commit"] is None and out["bytes"] == sum(size for _, size in out["files"]) > 0
    assert out["action"] == "commit+tag" and out["deleted"] == [] and "would be created" in out["remote"]
    assert main(["push", str(release), "--repo-id", REPO, "--tag", "v1.0.0", "--dry-run",
                 "--endpoint", hub.url]) == 0
    printed = capsys.readouterr().out
    size = (release / "model.safetensors").stat().st_size
    assert "add model.safetensors" in printed and f"{size:,d} B" in printed and "dry run: nothing sent" in printed
    assert {method for method, _ in hub.requests} == {"GET"} and hub.repos == {}  # it only read


def test_dry_run_without_the_hub_still_lists_the_files(release, monkeypatch):
    from huggingface_hub import constants

    out = push_release(release, REPO, "v1.0.0", dry_run=True, read_remote=False)
    assert out["remote"].startswith("the repo was not read") and out["files"]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert push_release(release, REPO, "v1.0.0", dry_run=True)["remote"].startswith("the repo was not read")
    out = push_release(release, REPO, "v1.0.0", dry_run=True, endpoint="http://127.0.0.1:9", read_remote=True)
    assert "deletions and the gate are unknown" in out["remote"]


def test_bad_token_fails_before_any_upload(hub, release):
    with pytest.raises(PublishError, match="rejected the token.*nothing was uploaded") as err:
        push_release(release, REPO, "v1.0.0", token="hf_not_a_valid_token", endpoint=hub.url)
    assert "hf_not_a_valid_token" not in str(err.value)
    assert hub.requests == [("GET", "/api/whoami-v2")] and hub.repos == {}


def test_missing_token_fails_before_any_request(hub, release, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(PublishError, match="no Hugging Face token: set HF_TOKEN"):
        push_release(release, REPO, "v1.0.0", endpoint=hub.url)
    assert hub.requests == []


def test_release_without_eval_results_is_refused_before_any_request(hub, release, tmp_path):
    bare = copy_release(release, tmp_path / "bare")
    for path in (bare / "eval").glob("*-*-*.json"):
        path.unlink()
    with pytest.raises(PublishError, match="no eval results"):
        push_release(bare, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    (bare / "README.md").unlink()
    with pytest.raises(PublishError, match="missing README.md"):
        push_release(bare, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert hub.requests == []


def test_concurrent_change_fails_instead_of_being_overwritten(hub, release):
    HfApi(endpoint=hub.url, token=hub.token).create_repo(REPO)
    pushed = []

    def someone_else_pushes(method, path):  # after push_release read the head, before its commit
        if "/preupload/" in path and not pushed:
            pushed.append(hub.commit_files(REPO, {"notes.md": b"a change made meanwhile\n"}))

    hub.hooks.append(someone_else_pushes)
    with pytest.raises(PublishError, match="changed while publishing.*nothing was committed"):
        push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    repo = hub.repo(REPO)
    assert repo.branches["main"] == pushed[0] and repo.tags == {}
    assert "notes.md" in repo.commits[pushed[0]].files


@pytest.mark.parametrize("damage, message", [
    ("empty", r"model.safetensors: empty \(0 bytes\)"),
    ("truncated", r"model.safetensors: truncated \([0-9,]+ bytes, its header lists [0-9,]+\)"),
    ("header", r"model.safetensors: truncated \(64 bytes, shorter than its own header\)"),  # n = 0xff..ff
    ("json", r"model.safetensors: not a readable safetensors file \(unreadable header\)"),
])
def test_broken_weights_are_refused_before_any_request(hub, release, tmp_path, damage, message):
    bad = copy_release(release, tmp_path / "bad")
    weights = bad / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "header": b"\xff" * 64,
                         "json": (4).to_bytes(8, "little") + b"{{{{"}[damage])
    with pytest.raises(PublishError, match=message):
        push_release(bad, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    with pytest.raises(PublishError, match=message):
        push_release(bad, REPO, "v1.0.0", dry_run=True, token=hub.token, endpoint=hub.url)
    assert hub.requests == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.5, "0.8"])
def test_a_score_that_is_not_a_number_is_refused(hub, release, tmp_path, value):
    bad = copy_release(release, tmp_path / "bad", tfns_f1=value)  # json writes NaN / Infinity literals
    with pytest.raises(PublishError, match=r"eval/tfns-3-score.json: metrics.weighted_f1 is .*not a score"):
        push_release(bad, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert hub.requests == []


@pytest.mark.parametrize("where, value, message", [
    (("accuracy",), float("nan"), "metrics.accuracy is nan, not a score between 0 and 1"),
    (("macro_f1",), -0.1, "metrics.macro_f1 is -0.1, not a score between 0 and 1"),
    (("per_class", "neutral", "recall"), 1.5, "metrics.per_class.neutral.recall is 1.5, not a score between 0 and 1"),
    (("per_class", "neutral", "precision"), None, "metrics.per_class.neutral.precision is None, not a score between "
                                                  "0 and 1"),
    (("confusion_matrix", 1, 1), float("inf"), "metrics.confusion_matrix[1][1] is inf, not a finite number"),
], ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else None)
def test_every_metric_of_an_eval_result_is_checked_not_only_weighted_f1(hub, release, tmp_path, where, value,
                                                                         message):
    bad = copy_release(release, tmp_path / "bad")
    path = bad / "eval" / "tfns-3-score.json"
    result = json.loads(path.read_text())
    node = result["metrics"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path.write_text(json.dumps(result))  # NaN and Infinity literals, as json writes them
    expected = f"eval/tfns-3-score.json: {message}: run `finsent eval` again"
    with pytest.raises(PublishError) as err:
        push_release(bad, REPO, "v1.0.0", dry_run=True, token=hub.token, endpoint=hub.url)
    assert str(err.value) == expected
    with pytest.raises(PublishError) as err:
        push_release(bad, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert str(err.value) == expected
    assert hub.requests == []


def test_a_nan_score_never_counts_as_no_regression():
    from finsent.hub.gate import compare_scores

    assert compare_scores({"tfns-3-score": float("nan")}, {"tfns-3-score": 0.8}, 0.01)
    assert compare_scores({"tfns-3-score": 0.8}, {"tfns-3-score": float("nan")}, 0.01) == []  # old: not comparable


def test_server_hosts_spaces_for_the_space_deploy(hub, tmp_path):
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "app.py").write_text("print('demo')\n")
    api = HfApi(endpoint=hub.url, token=hub.token)
    url = api.create_repo("alice/finsent-demo", repo_type="space", space_sdk="gradio")
    assert url.repo_type == "space"
    api.upload_folder(repo_id="alice/finsent-demo", repo_type="space", folder_path=tmp_path / "space")
    assert api.space_info("alice/finsent-demo").sdk == "gradio"
    assert api.get_space_runtime("alice/finsent-demo").stage == "RUNNING"
    local = snapshot_download("alice/finsent-demo", repo_type="space", endpoint=hub.url, token=hub.token,
                              cache_dir=tmp_path / "cache")
    assert (Path(local) / "app.py").read_text() == "print('demo')\n"
