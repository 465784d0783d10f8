"""Where the load generator's README summary goes (`--readme`).

The summary (loadgen.readme_summary) sits between two marker comments in
README.md; a full run replaces what is between them and leaves the rest of
the file alone, so the figures a newcomer reads are always those of a real
run, not copied by hand.
"""

from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- loadgen summary: written by python -m benchmarks.loadgen --readme README.md -->"
END = "<!-- end of loadgen summary -->"


def replace_block(path: Path, block: str) -> None:
    """Put block between the README's markers; refuse if they are missing."""
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no loadgen summary markers ({BEGIN} ... {END})")
    head = text[: start + len(BEGIN)]
    path.write_text(head + "\n" + block + text[end:])
