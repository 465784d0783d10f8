"""The release configuration holds together: one version, scripts that exist,
and the README's test command is the one CI runs."""

from __future__ import annotations

import pathlib
import re

import pytest

import geanstalk

ROOT = pathlib.Path(__file__).resolve().parents[2]
needs_source = pytest.mark.skipif(
    not (ROOT / ".ci" / "run").is_file(), reason="needs the source tree (.ci/, README.md)"
)


def test_the_version_has_one_source() -> None:
    from geanstalk._version import __version__
    from geanstalk.stats import VERSION

    assert geanstalk.__version__ == __version__ == VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", __version__)


@needs_source
def test_pyproject_reads_the_version_from_the_package() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text
    assert 'version = { attr = "geanstalk._version.__version__" }' in text


@needs_source
def test_every_ci_script_the_workflows_name_exists_and_is_executable() -> None:
    names = set()
    for path in [*(ROOT / ".github" / "workflows").glob("*.yml"), ROOT / "pyproject.toml"]:
        names.update(re.findall(r"\.ci/[\w-]+", path.read_text()))
    assert names >= {".ci/build-artifacts", ".ci/test-installed", ".ci/test-wheel"}
    for name in names:
        script = ROOT / name
        assert script.is_file(), name
        assert script.stat().st_mode & 0o111, f"{name} is not executable"


@needs_source
def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^    (pip install .+)$", readme.split("## ", 2)[1], re.M)
    assert len(commands) == 2, "README's set-up section has exactly two commands"
    assert commands[0].endswith("geanstalk serve")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
