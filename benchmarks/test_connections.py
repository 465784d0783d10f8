"""The connections benchmark (benchmarks/connections.py) runs end to end on small numbers."""

from __future__ import annotations

import connections
import pytest

from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE


@pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
def test_connections_prints_both_tables_with_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    assert connections.main(["--idle", "300", "--storm", "300", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "| RSS per connection (B) |" in out
    assert "| all accepted (s) |" in out
    assert "| server CPU per connection (us) |" in out
    storm = [ln for ln in out.splitlines() if ln.startswith("storm ")]
    assert [ln.split()[1] for ln in storm] == ["geanstalk", "beanstalkd"]


def test_storm_counts_every_connection_of_a_geanstalk_server() -> None:
    idles, storms = connections.run(["geanstalk"], idle=50, storm=200, repeat=1)
    assert storms["geanstalk"][0].conns == 200
    assert idles["geanstalk"][0].conns == 50
