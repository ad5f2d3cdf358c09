"""The README's and docs/benchmarks.md's figures are what the committed results write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import readme

LATEST = readme.RESULTS

RESULTS: dict[str, Any] = {
    "machine": {
        "model": "AMD EPYC 7B13",
        "cpus": 2,
        "memory_gib": 24.0,
        "python": "3.11.9",
        "postgresql": "15.20",
        "redis": "7.0.15",
    },
    "quick": False,
    "date": "2026-12-07 09:00 UTC",
    "sections": {"chat": {"date": "2026-12-07 09:00 UTC", "seconds": 300}},
    "chat_latency": [
        {
            "latency_ms": 0.0,
            "messages": 100,
            "gap_s": 1.0,
            "p50_ms": 55.04,
            "p95_ms": 68.2,
            "p99_ms": 75.61,
            "max_ms": 97.1,
            "stages_p50_ms": {"stream": 19.6, "page": 2.1, "rendered": 33.6},
        }
    ],
}


def test_the_committed_documents_match_the_committed_results() -> None:
    if not LATEST.exists():
        pytest.skip(f"no {LATEST.name} committed yet: `uv run python -m benchmarks` writes it")
    results = json.loads(LATEST.read_text())
    assert not results.get("quick"), "latest.json holds a --quick run"
    for path, (now, expected) in readme.rendered(readme.ROOT, results).items():
        assert now == expected, f"{path} differs: run `uv run python -m benchmarks.readme`"


def test_the_readme_part_says_machine_and_date_and_only_what_was_run() -> None:
    part = readme.readme_part(RESULTS)
    assert "2 cores AMD EPYC 7B13, 24 GiB, Python 3.11.9, PostgreSQL 15.20, Redis 7.0.15" in part
    assert "2026-12-07 09:00 UTC" in part
    assert "**p50 55.0 ms, p99 75.6 ms** at 0 ms" in part
    # No figure of a section the results lack: no budget table, no write path, no drain
    assert "| measure |" not in part
    assert "write_path" not in part and "commit-to-Stream" not in part


def test_a_sections_part_is_its_rows_under_machine_and_date() -> None:
    lines = readme.part("chat", RESULTS).splitlines()
    assert lines[0].endswith("`chat` 2026-12-07 09:00 UTC")
    assert lines[2] == "| benchmark | figure | figure | note |"
    assert lines[4].startswith("| chat page: legacy post to rendered, emulator 0 ms | p50 55.0 ms")


def test_a_section_not_run_has_no_figures() -> None:
    assert readme.part("drain,chat", RESULTS).endswith(
        "Not in the committed run: `python -m benchmarks --only drain`."
    )
    with pytest.raises(readme.MarkersError):
        readme.part("nonsense", RESULTS)


def test_the_run_part_lists_each_sections_date() -> None:
    assert "| `chat` | 2026-12-07 09:00 UTC | 5.0 min |" in readme.part("run", RESULTS)


def test_every_section_of_the_run_is_known_to_the_generator() -> None:
    from benchmarks.__main__ import SECTIONS

    assert set(SECTIONS) == set(readme.SECTION_KEYS)


def test_splice_rewrites_only_between_the_markers() -> None:
    start, end = readme.README_MARKS
    text = f"# Title\n\nbefore\n{start}\nold figures\n{end}\nafter\n"
    assert readme.splice(text, readme.README_MARKS, "new figures\n") == (
        f"# Title\n\nbefore\n{start}\nnew figures\n{end}\nafter\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all",
        f"{readme.README_MARKS[0]} only the start",
        f"{readme.README_MARKS[1]} x {readme.README_MARKS[0]}",
        f"{readme.README_MARKS[0]}{readme.README_MARKS[0]}{readme.README_MARKS[1]}",
    ],
)
def test_splice_refuses_missing_or_misplaced_markers(text: str) -> None:
    with pytest.raises(readme.MarkersError):
        readme.splice(text, readme.README_MARKS, "x")


def test_the_documents_hold_well_formed_parts() -> None:
    found = readme.documents(readme.ROOT)
    assert readme.ROOT / "README.md" in found
    for path in found:
        readme.render(path.read_text(), RESULTS)  # raises on a missing or doubled marker


def test_a_quick_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "quick.json"
    results.write_text(json.dumps({**RESULTS, "quick": True}))
    with pytest.raises(SystemExit) as stopped:
        _main("--results", str(results), "--root", str(tmp_path))
    assert "--quick run" in str(stopped.value)


def test_check_reports_a_stale_document(tmp_path: Path) -> None:
    for name, part in (("README.md", "readme"), ("docs/benchmarks.md", "chat")):
        start, end = readme.marks(part)
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"x\n{start}\nstale\n{end}\n")
    results = tmp_path / "latest.json"
    results.write_text(json.dumps(RESULTS))
    with pytest.raises(SystemExit) as stopped:
        _main("--results", str(results), "--root", str(tmp_path), "--check")
    assert stopped.value.code == 1
    _main("--results", str(results), "--root", str(tmp_path))
    _main("--results", str(results), "--root", str(tmp_path), "--check")  # now the same
    assert "p99 75.6 ms" in (tmp_path / "README.md").read_text()
    assert "| p50 55.0 ms |" in (tmp_path / "docs" / "benchmarks.md").read_text()


def _main(*argv: str) -> None:
    import sys

    saved = sys.argv
    sys.argv = ["benchmarks.readme", *argv]
    try:
        readme.main()
    finally:
        sys.argv = saved
