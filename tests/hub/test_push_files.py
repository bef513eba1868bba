"""What `finsent push` may send: only regular files inside the release, to a repo id the Hub accepts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from folders import one_error_line
from release_factory import add_model, write_reports

from finsent.cli import main
from finsent.core.outputs import OutputError, upload_files
from finsent.hub.gate import RepoIdError
from finsent.hub.publish import push_release

REPO = "alice/Llama-FinSent-S"


@pytest.fixture
def release(tmp_path, tiny_llama_dir) -> Path:
    out = tmp_path / "release"
    add_model(out, tiny_llama_dir)
    write_reports(out)
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    return out


@pytest.mark.parametrize("link", ["file-outside", "folder-outside", "file-inside"])
def test_a_link_in_the_release_is_refused_and_nothing_is_sent(link, release, hub, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    if link == "file-outside":
        (release / "reports" / "passwd").symlink_to(secret)
        named = "reports/passwd -> "
    elif link == "folder-outside":
        (release / "notes").symlink_to(tmp_path, target_is_directory=True)
        named = "notes -> "
    else:  # even a link to a file of the release: the upload reads files, it never follows links
        (release / "copy.json").symlink_to(release / "config.json")
        named = "copy.json -> "
    for dry in (["--dry-run"], []):
        code = main(["push", str(release), "--repo-id", REPO, "--tag", "v1.0.0", *dry, "--endpoint", hub.url])
        err = one_error_line(capsys.readouterr().err, "push")
        assert code == 2 and named in err and "never uploaded" in err and "nothing was uploaded" in err
    with pytest.raises(OutputError, match="link"):
        push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert hub.repos == {} and hub.requests_matching(r"POST|PUT|DELETE") == []


def test_upload_files_lists_regular_files_and_skips_what_is_never_published(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.json").write_text("{}")
    (tmp_path / "c.txt").write_text("c")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "link").symlink_to("/etc/passwd")  # in a skipped folder: never read
    files = upload_files(tmp_path, skip=lambda rel: rel.split("/")[-1].startswith("."))
    assert files == [tmp_path / "a" / "b.json", tmp_path / "c.txt"]
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OutputError, match=r"pipe \(not a regular file\)"):
        upload_files(tmp_path, skip=lambda rel: rel.startswith(".cache"))


@pytest.mark.parametrize("repo_id", ["../../etc", "alice/my model", "alicé/modèle", "alice", "alice/a--b",
                                     "/alice", "alice/" + "x" * 97])
def test_a_bad_repo_id_is_one_line_before_anything_else(repo_id, release, hub, capsys):
    assert main(["push", str(release), "--repo-id", repo_id, "--tag", "v1.0.0", "--dry-run",
                 "--endpoint", hub.url]) == 2
    err = one_error_line(capsys.readouterr().err, "push")
    assert f"--repo-id {repo_id!r} is not a Hub repo id" in err
    with pytest.raises(RepoIdError):
        push_release(release, repo_id, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert main(["card", str(release), "--repo-id", repo_id]) == 2
    assert "is not a Hub repo id" in one_error_line(capsys.readouterr().err, "card")
    assert hub.requests == []


def test_the_same_release_without_links_pushes(release, hub):
    out = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    assert out["action"] == "commit+tag" and set(hub.repo(REPO).tags) == {"v1.0.0"}
    assert {rel for rel, _ in out["files"]} == {p.relative_to(release).as_posix() for p in release.rglob("*")
                                                if p.is_file() and not p.name.startswith(".")}
