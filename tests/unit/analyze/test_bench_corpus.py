"""The B3c corpus file: at least 12 repositories, each pinned by a full commit id."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bench.analyze import CorpusRepo, corpus_truth, load_corpus
from tests.unit.analyze.repo_helpers import make_repo

if TYPE_CHECKING:
    from pathlib import Path


def test_corpus_is_pinned() -> None:
    corpus = load_corpus()
    assert len(corpus) >= 12
    assert all(re.fullmatch(r"[0-9a-f]{40}", r.commit) for r in corpus)
    assert len({r.folder for r in corpus}) == len(corpus)
    assert {r.folder for r in corpus} >= {"karpathy+nanoGPT", "huggingface+peft"}


def test_truth_is_the_main_declarations_unless_given(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {"requirements.txt": "numpy\n", "requirements-dev.txt": "pytest\n"},
    )
    repo = CorpusRepo(name="o/n", commit="0" * 40, kind="k")
    assert corpus_truth(root, repo) == {"numpy"}
    given = CorpusRepo(name="o/n", commit="0" * 40, kind="k", truth=("torch",))
    assert corpus_truth(root, given) == {"torch"}
