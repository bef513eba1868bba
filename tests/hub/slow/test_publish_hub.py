"""``finsent push`` through the loopback Hub server with the real huggingface_hub client, the pushes that take
over half a second each: one commit and a tag, dry runs, the release gate, dropped and failed requests, reruns."""

from __future__ import annotations

import hashlib

import pytest
from checkout import REPO as CHECKOUT
from huggingface_hub import HfApi, constants
from release_factory import copy_release, write_pruning_cost

from finsent.hub import publish
from finsent.hub.gate import PublishError
from finsent.hub.publish import UntaggedReleaseError, push_release

REPO = "alice/Llama-FinSent-S"


def upload_requests(hub) -> list:
    return hub.requests_matching(r"preupload|lfs|commit/|/tag/|repos/create")


def test_push_makes_one_commit_and_tags_it(hub, release):
    out = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    repo = hub.repo(REPO)
    assert repo.tags == {"v1.0.0": out["commit"]} and repo.branches["main"] == out["commit"]
    commit = repo.commits[out["commit"]]
    assert commit.title == "Release v1.0.0"
    assert repo.commits[commit.parent].title == "initial commit"  # exactly one commit for the whole release
    published = {p for p in commit.files if p != ".gitattributes"}
    assert published == {rel for rel, _ in out["files"]}
    assert "eval/tfns-3-score.json" in published and "reports/pruning.json" in published
    for rel, _ in out["files"]:
        assert hub.read_file(REPO, rel, "v1.0.0") == (release / rel).read_bytes()
    assert len(hub.requests_matching(r"POST .*/commit/")) == 1
    assert commit.files["model.safetensors"].lfs and not commit.files["config.json"].lfs


def test_tagged_commit_holds_exactly_the_release(hub, release, tmp_path):
    first = copy_release(release, tmp_path / "r1")
    (first / "eval" / "nwgi-3-score.json").write_text((first / "eval" / "tfns-3-score.json").read_text())
    push_release(first, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    out = push_release(release, REPO, "v1.1.0", token=hub.token, endpoint=hub.url)
    assert out["deleted"] == ["eval/nwgi-3-score.json"]
    files = set(hub.repo(REPO).commits[out["commit"]].files)
    assert files == {rel for rel, _ in out["files"]} | {".gitattributes"}
    assert "eval/nwgi-3-score.json" in hub.repo(REPO).resolve("v1.0.0").files


def test_dry_run_lists_the_deletions_and_the_gate_verdict(hub, release, tmp_path, capsys):
    from finsent.cli import main

    first = copy_release(release, tmp_path / "r1", tfns_f1=0.80)
    (first / "eval" / "nwgi-3-score.json").write_text((first / "eval" / "tfns-3-score.json").read_text())
    (first / "notes.md").write_text("left by v1.0.0\n")
    push_release(first, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    hub.requests.clear()
    out = push_release(release, REPO, "v1.1.0", dry_run=True, token=hub.token, endpoint=hub.url)
    assert out["deleted"] == ["eval/nwgi-3-score.json", "notes.md"] and out["previous_tag"] == "v1.0.0"
    assert out["refused"] is None and out["remote"] is None and out["action"] == "commit+tag"
    assert main(["push", str(release), "--repo-id", REPO, "--tag", "v1.1.0", "--dry-run",
                 "--endpoint", hub.url]) == 0
    printed = capsys.readouterr().out
    assert "  delete eval/nwgi-3-score.json (not in this release)\n  delete notes.md" in printed
    assert "gate against v1.0.0: no regression" in printed and ".gitattributes" not in printed
    worse = copy_release(release, tmp_path / "r2", tfns_f1=0.70)
    out = push_release(worse, REPO, "v1.1.0", dry_run=True, token=hub.token, endpoint=hub.url)
    assert out["refused"].startswith("release gate: 1 result(s) fell")
    assert main(["push", str(worse), "--repo-id", REPO, "--tag", "v1.1.0", "--dry-run", "--endpoint", hub.url]) == 1
    assert "the push would be REFUSED: release gate" in capsys.readouterr().out
    assert hub.requests_matching(r"POST|PUT|DELETE") == [] and set(hub.repo(REPO).tags) == {"v1.0.0"}


def test_dropped_commit_leaves_no_commit_no_tag_and_retry_succeeds(hub, release):
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(REPO)
    head = hub.repo(REPO).branches["main"]
    hub.fail_next("commit")
    with pytest.raises(PublishError, match="connection .* failed during the upload.*run the same push again"):
        push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    repo = hub.repo(REPO)
    assert repo.branches["main"] == head and repo.tags == {} and len(repo.commits) == 1
    weights = hashlib.sha256((release / "model.safetensors").read_bytes()).hexdigest()
    puts = hub.requests_matching(r"PUT /lfs-upload/")
    assert ("PUT", f"/lfs-upload/{weights}") in puts  # the weights went up before the commit call
    out = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert repo.tags == {"v1.0.0": out["commit"]} and repo.commits[out["commit"]].parent == head
    assert hub.requests_matching(r"PUT /lfs-upload/") == puts  # the retry did not send them again


@pytest.mark.parametrize("how", ["drop", "error"])
def test_failed_commit_leaves_main_as_it_was_and_a_rerun_publishes(hub, release, how):
    HfApi(endpoint=hub.url, token=hub.token).create_repo(REPO)
    head = hub.repo(REPO).branches["main"]
    hub.fail_next("commit", how=how)
    message = "connection .* failed during the upload" if how == "drop" else r"Hub refused the commit .*500"
    with pytest.raises(PublishError, match=f"{message}.*v1.0.0 was not created: run the same push again"):
        push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    repo = hub.repo(REPO)
    assert repo.branches["main"] == head and repo.tags == {} and len(repo.commits) == 1
    out = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert out["action"] == "commit+tag" and repo.tags == {"v1.0.0": out["commit"]} == {"v1.0.0": repo.branches["main"]}


def test_commit_that_landed_unacknowledged_is_only_tagged_by_the_rerun(hub, release):
    hub.fail_next("commit", how="after")  # the Hub made the commit, the client saw the connection break
    with pytest.raises(PublishError, match="failed during the upload.*a commit that did land is found and only tagged"):
        push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    repo = hub.repo(REPO)
    landed = repo.branches["main"]
    assert repo.tags == {} and repo.commits[landed].title == "Release v1.0.0"
    hub.requests.clear()
    out = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert out["action"] == "tag" and out["commit"] == landed and repo.tags == {"v1.0.0": landed}
    assert len(repo.commits) == 2 and hub.requests_matching(r"preupload|lfs|/commit/") == []


def test_failed_tag_names_the_untagged_commit_and_the_rerun_only_adds_the_tag(hub, release, capsys, monkeypatch):
    from finsent.cli import main

    monkeypatch.setenv("HF_TOKEN", hub.token)
    hub.fail_next("tag", times=publish.TAG_ATTEMPTS)
    with pytest.raises(UntaggedReleaseError, match="main of alice/Llama-FinSent-S now holds the release "
                                                   r"\(commit [0-9a-f]{40}\) but tag v1.0.0 could not be created"
                                                   ".*run the same push again.*only adds the tag") as err:
        push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    repo = hub.repo(REPO)
    landed = repo.branches["main"]
    assert err.value.commit == landed and repo.tags == {} and repo.commits[landed].title == "Release v1.0.0"
    assert len(hub.requests_matching(r"POST .*/tag/")) == publish.TAG_ATTEMPTS
    dry = push_release(release, REPO, "v1.0.0", dry_run=True, token=hub.token, endpoint=hub.url)
    assert dry["action"] == "tag" and dry["commit"] == landed and dry["deleted"] == []
    hub.requests.clear()
    assert main(["push", str(release), "--repo-id", REPO, "--tag", "v1.0.0", "--endpoint", hub.url]) == 0
    assert "only the tag was added" in capsys.readouterr().out
    assert repo.tags == {"v1.0.0": landed} and len(repo.commits) == 2
    assert hub.requests_matching(r"preupload|lfs|/commit/") == []  # nothing uploaded or committed again


@pytest.mark.parametrize("how", ["drop", "error", "after"])
def test_one_failed_tag_call_is_retried_at_once(hub, release, how):
    hub.fail_next("tag", how=how)  # "after": the tag was made, its answer lost; the check finds it
    out = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    repo = hub.repo(REPO)
    assert repo.tags == {"v1.0.0": out["commit"]} and repo.branches["main"] == out["commit"]
    assert len(hub.requests_matching(r"POST .*/tag/")) == (1 if how == "after" else 2)


def test_rerun_of_a_complete_push_does_nothing(hub, release, capsys, monkeypatch):
    from finsent.cli import main

    monkeypatch.setenv("HF_TOKEN", hub.token)
    first = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    hub.requests.clear()
    out = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert out["action"] == "none" and out["commit"] == first["commit"]
    assert hub.requests_matching(r"POST|PUT") == [("POST", "/api/repos/create")]
    assert main(["push", str(release), "--repo-id", REPO, "--tag", "v1.0.0", "--endpoint", hub.url]) == 0
    assert "v1.0.0 is already published" in capsys.readouterr().out


def test_dropped_lfs_upload_is_retried_by_the_client_into_one_commit(hub, release):
    hub.fail_next("lfs-put")  # the connection breaks half-way through the weights, once
    out = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    lfs_files = [p for p, e in hub.repo(REPO).commits[out["commit"]].files.items() if e.lfs]
    assert len(hub.requests_matching(r"PUT /lfs-upload/")) == len(lfs_files) + 1
    assert hub.read_file(REPO, "model.safetensors", "v1.0.0") == (release / "model.safetensors").read_bytes()
    repo = hub.repo(REPO)
    assert repo.commits[repo.commits[out["commit"]].parent].title == "initial commit" and len(repo.commits) == 2


def test_token_comes_from_the_login_file_and_is_never_printed(hub, release, monkeypatch, tmp_path, capsys, caplog):
    from finsent.cli import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    (tmp_path / "token").write_text(hub.token)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    assert main(["push", str(release), "--repo-id", REPO, "--tag", "v1.0.0", "--endpoint", hub.url]) == 0
    captured = capsys.readouterr()
    assert "published alice/Llama-FinSent-S v1.0.0" in captured.out
    assert hub.token not in captured.out + captured.err + caplog.text
    assert not [p for p in release.rglob("*") if p.is_file() and hub.token.encode() in p.read_bytes()]


def test_token_from_hf_token_env(hub, release, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", hub.token)
    out = push_release(release, REPO, "v1.0.0", endpoint=hub.url)
    assert hub.repo(REPO).tags["v1.0.0"] == out["commit"]


def test_gate_blocks_a_regression_and_allow_regression_lets_it_through(hub, release, tmp_path):
    push_release(copy_release(release, tmp_path / "r1", tfns_f1=0.80), REPO, "v1.0.0",
                 token=hub.token, endpoint=hub.url)
    worse = copy_release(release, tmp_path / "r2", tfns_f1=0.75)
    head = hub.repo(REPO).branches["main"]
    before = len(upload_requests(hub))
    with pytest.raises(PublishError, match=r"(?s)release gate: 1 result.*v1\.0\.0.*tfns-3-score: weighted F1 0\.8000 "
                                           r"-> 0\.7500 \(-0\.0500\).*--allow-regression"):
        push_release(worse, REPO, "v1.1.0", token=hub.token, endpoint=hub.url)
    assert hub.repo(REPO).branches["main"] == head and set(hub.repo(REPO).tags) == {"v1.0.0"}
    assert len(upload_requests(hub)) == before + 1  # only the create_repo(exist_ok) call, no upload
    out = push_release(worse, REPO, "v1.1.0", allow_regression=True, token=hub.token, endpoint=hub.url)
    assert out["previous_tag"] == "v1.0.0" and len(out["regressions"]) == 1
    assert hub.repo(REPO).tags["v1.1.0"] == out["commit"]


def test_gate_allows_a_drop_within_the_recipe_threshold(hub, release, tmp_path):
    push_release(copy_release(release, tmp_path / "r1", tfns_f1=0.80), REPO, "v1.0.0",
                 token=hub.token, endpoint=hub.url)
    out = push_release(copy_release(release, tmp_path / "r2", tfns_f1=0.795), REPO, "v1.0.1",
                       token=hub.token, endpoint=hub.url)  # recipe publish.max_regression = 0.01
    assert out["previous_tag"] == "v1.0.0" and out["regressions"] == []


def test_existing_tag_and_bad_version_are_refused(hub, release, tmp_path):
    push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    with pytest.raises(PublishError, match="tag v1.0.0 already exists .* with other files"):
        push_release(copy_release(release, tmp_path / "r2", tfns_f1=0.9), REPO, "v1.0.0", token=hub.token,
                     endpoint=hub.url)
    with pytest.raises(PublishError, match="not a release version"):
        push_release(release, REPO, "latest", token=hub.token, endpoint=hub.url)


def test_create_pr_opens_a_pull_request_without_a_tag(hub, release):
    HfApi(endpoint=hub.url, token=hub.token).create_repo(REPO)
    head = hub.repo(REPO).branches["main"]
    out = push_release(release, REPO, "v1.0.0", create_pr=True, token=hub.token, endpoint=hub.url)
    repo = hub.repo(REPO)
    assert out["pr_url"].endswith("/discussions/1") and out["tag"] is None
    assert repo.prs == [out["commit"]] and repo.tags == {} and repo.branches["main"] == head
    assert hub.read_file(REPO, "config.json", "refs/pr/1") == (release / "config.json").read_bytes()


def test_private_repo_is_created_private(hub, release):
    push_release(release, REPO, "v1.0.0", private=True, token=hub.token, endpoint=hub.url)
    from huggingface_hub.errors import RepositoryNotFoundError

    assert hub.repo(REPO).private
    assert HfApi(endpoint=hub.url, token=hub.token).model_info(REPO).private
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info(REPO)


def test_predictions_with_gold_labels_never_leave_the_machine(hub, release, tmp_path, capsys):
    from finsent.cli import main

    local = copy_release(release, tmp_path / "r1")
    (local / "eval" / "tfns-3-score.predictions.jsonl").write_text('{"i": 0, "gold": "negative"}\n')
    out = push_release(local, REPO, "v1.0.0", dry_run=True, token=hub.token, endpoint=hub.url)
    assert not [rel for rel, _ in out["files"] if "predictions" in rel]
    assert main(["push", str(local), "--repo-id", REPO, "--tag", "v1.0.0", "--dry-run", "--endpoint", hub.url]) == 0
    assert "predictions" not in capsys.readouterr().out
    # A copy that an older push uploaded is deleted by the next release.
    HfApi(endpoint=hub.url, token=hub.token).create_repo(REPO)
    hub.commit_files(REPO, {"eval/tfns-3-score.predictions.jsonl": b'{"i": 0, "gold": "negative"}\n'})
    out = push_release(local, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert out["deleted"] == ["eval/tfns-3-score.predictions.jsonl"]
    published = hub.repo(REPO).commits[out["commit"]].files
    assert not [p for p in published if "predictions" in p] and "eval/tfns-3-score.json" in published


def test_a_card_that_loads_another_model_is_refused(hub, release, tmp_path):
    local = copy_release(release, tmp_path / "r1")
    (local / "README.md").write_text(f'---\nlicense: apache-2.0\n---\n```python\nmodel_id = "{local}"\n```\n')
    with pytest.raises(PublishError, match=rf"usage code loads {local}, not {REPO}: .*finsent card {local} "
                                           rf"--repo-id {REPO}"):
        push_release(local, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    out = push_release(local, REPO, "v1.0.0", dry_run=True, token=hub.token, endpoint=hub.url)
    assert "usage code loads" in out["refused"]
    assert hub.requests_matching(r"POST|PUT") == []
    (local / "README.md").write_text(f'---\nlicense: apache-2.0\n---\n```python\nmodel_id = "{REPO}"\n```\n')
    assert push_release(local, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)["action"] == "commit+tag"


def test_the_card_stage_pruning_cost_plot_is_published_with_the_card(hub, release, tmp_path):
    from finsent.core.recipes import load_recipe
    from finsent.hub.card import render_card

    local = copy_release(release, tmp_path / "r1")
    cost = write_pruning_cost(tmp_path / "bench")
    recipe = load_recipe(local / "reports" / "recipe.yaml", {"card.pruning_cost": str(cost)})
    render_card(recipe, local, repo_id=REPO)  # the card stage: copies the plot beside the card that embeds it
    assert "![Dev accuracy against parameters" in (local / "README.md").read_text()
    out = push_release(local, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert ("reports/pruning_cost.png", len(b"\x89PNG\r\n\x1a\npruning cost")) in out["files"]
    files = hub.repo(REPO).commits[out["commit"]].files
    assert files["reports/pruning_cost.png"].lfs  # the Hub keeps images in LFS, as it does the weights
    assert hub.read_file(REPO, "reports/pruning_cost.png", "v1.0.0") == (cost.parent / "pruning_cost.png").read_bytes()
    assert "](reports/pruning_cost.png)" in hub.read_file(REPO, "README.md", "v1.0.0").decode()


def test_hub_readme_commands_run(hub, release, tmp_path, monkeypatch, capsys):
    import re
    import shlex
    import shutil

    from finsent.cli import main

    readme = (CHECKOUT / "hub" / "README.md").read_text()
    commands = [line for block in re.findall(r"```sh\n(.*?)```", readme, re.S)
                for line in block.splitlines() if line.startswith("finsent ")]
    assert [c.split()[1] for c in commands] == ["card", "push", "push"]
    target = shutil.copytree(release, tmp_path / "releases" / "llama-finsent-s")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    for command in commands:
        argv = shlex.split(command.replace("OWNER/", "alice/"))[1:]
        assert main(argv + (["--endpoint", hub.url] if argv[0] == "push" else [])) == 0, command
    assert 'model_id = "alice/Llama-FinSent-S"' in (target / "README.md").read_text()
    assert "published alice/Llama-FinSent-S v1.0.0" in capsys.readouterr().out
    assert hub.read_file(REPO, "README.md", "v1.0.0") == (target / "README.md").read_bytes()
