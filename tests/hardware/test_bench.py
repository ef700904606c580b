"""The storage benchmark: its generated tree is what it says, and every contender agrees."""

from __future__ import annotations

from pathlib import Path

from sutazai.ops.bench.hardware import fdupes_style, generate, measure


def test_the_generated_tree_holds_what_it_reports(tmp_path: Path) -> None:
    tree = generate(tmp_path / "tree", 500, seed=3, duplicate_share=0.2)
    files = [p for p in tree.root.rglob("*") if p.is_file()]
    assert len(files) == tree.files == 500
    assert sum(p.stat().st_size for p in files) == tree.bytes
    groups, wasted, _ = fdupes_style(tree.root)
    assert (groups, wasted) == (tree.duplicate_groups, tree.wasted_bytes)
    assert tree.duplicate_files > 0
    again = generate(tmp_path / "again", 500, seed=3, duplicate_share=0.2)
    assert (again.bytes, again.wasted_bytes) == (tree.bytes, tree.wasted_bytes)


def test_a_small_run_reports_every_contender(tmp_path: Path) -> None:
    result = measure(files=300, runs=1, seed=5, duplicate_share=0.1, parent=tmp_path)
    analysis = result["analysis"]
    duplicates = result["duplicates"]
    assert isinstance(analysis, list)
    assert isinstance(duplicates, list)
    assert [row["name"] for row in analysis] == [
        "sutazai analyze",
        "du -sb",
        "find -type f -printf '%s\\n'",
        "python os.walk + lstat",
    ]
    assert [row["name"] for row in duplicates][:3] == [
        "sutazai find_duplicates, cold cache",
        "sutazai find_duplicates, warm cache",
        "fdupes-style baseline (Python: size groups, then whole-file SHA-256)",
    ]
    assert duplicates[1]["files_hashed"] == 0
    assert duplicates[1]["cache_hits"] == duplicates[0]["files_hashed"] > 0
    assert list(tmp_path.iterdir()) == []  # the tree is removed
