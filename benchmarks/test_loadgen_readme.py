"""The README summary the load generator writes: what goes in, and that only the block changes."""

from __future__ import annotations

from pathlib import Path

import loadgen_readme
import pytest
from loadgen import Row, readme_summary

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_has_the_markers_the_load_generator_writes_between() -> None:
    text = README.read_text()
    assert text.count(loadgen_readme.BEGIN) == 1
    assert text.index(loadgen_readme.BEGIN) < text.index(loadgen_readme.END)


def test_summary_lists_the_measured_rows_with_ratios_and_skips_the_rest() -> None:
    table = {
        "put-single/c50/b100": {"geanstalk": Row(60_000, 8.7), "beanstalkd": Row(75_000, 7.2)},
        "put-pipelined/c1/b100": {"geanstalk": Row(370_000, 2.2), "beanstalkd": Row(125_000, 7.3)},
        "reserve-delete/c50/b100": {"geanstalk": Row(31_000, 16.6)},  # no reference: left out
    }
    text = readme_summary(
        "today", table, {"geanstalk": (36.0, 70.0), "beanstalkd": (2.0, 2.1)},
        {"geanstalk": 290.0, "beanstalkd": 299.0}, {},
    )  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == "Run of today."
    assert "| put, pipelined 100 per write | 1 | 370,000 | 125,000 | 2.96 | 2.2 / 7.3 |" in lines
    assert "| put, one at a time | 50 | 60,000 | 75,000 | 0.80 | 8.7 / 7.2 |" in lines
    assert not any("reserve + delete" in line for line in lines)
    # rows keep the README's order, whatever order the run produced them in
    assert lines.index(next(x for x in lines if "pipelined" in x)) < lines.index(
        next(x for x in lines if "one at a time" in x)
    )
    assert "| RSS per ready job (10^6 jobs of 100 B) | 290 B | 299 B | 0.97 |" in lines
    assert not any("with `-b`" in line for line in lines)
    assert "| start-up, exec to first accepted connection | 36 ms | 2 ms | |" in lines


def test_only_the_block_between_the_markers_is_replaced(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    begin, end = loadgen_readme.BEGIN, loadgen_readme.END
    readme.write_text(f"# Title\n\nbefore\n{begin}\nold figures\n{end}\nafter\n")
    loadgen_readme.replace_block(readme, "new figures\n")
    assert readme.read_text() == f"# Title\n\nbefore\n{begin}\nnew figures\n{end}\nafter\n"


def test_a_readme_without_markers_is_left_alone(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    with pytest.raises(SystemExit, match="no loadgen summary markers"):
        loadgen_readme.replace_block(readme, "figures\n")
    assert readme.read_text() == "# Title\n"
