"""What a run records of the code it ran: the checkout's commit, read without touching the user's repository."""

from __future__ import annotations

import os
import subprocess
import time

from flows.tracking.provenance import git_tags


def git(repo, *argv: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *argv], capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout.strip()


def test_the_commit_is_read_without_rewriting_the_index(tmp_path):
    """A file touched since the last commit (content unchanged) makes a plain ``git status`` rewrite the index under
    .git/index.lock; bp's reading must leave the index, and so the lock, alone."""
    git(tmp_path, "init", "-q")
    (tmp_path / "f.txt").write_text("x\n")
    git(tmp_path, "add", "f.txt")
    git(tmp_path, "commit", "-q", "-m", "one")
    later = time.time() + 5
    os.utime(tmp_path / "f.txt", (later, later))  # its stat no longer matches the index's record
    index = tmp_path / ".git" / "index"
    before = index.stat()
    tags = git_tags(tmp_path)
    assert tags == {"mlflow.source.git.commit": git(tmp_path, "rev-parse", "HEAD"), "bp.git_dirty": "false"}
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "git rewrote the index"
    git(tmp_path, "status", "--porcelain")  # what git does on its own: it rewrites the index (the test can fail)
    assert index.stat().st_ino != before.st_ino
