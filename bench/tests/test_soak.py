"""bench.soak, short, as a test of the served inbox."""

import pytest


@pytest.mark.slow
def test_a_short_soak_of_the_served_inbox(tmp_path):
    """bench/soak.py, short: `mosaic serve --every 1` on Mosaic's local server, good and bad files in the inbox."""
    from bench.soak import run

    result = run(minutes=2.5, outage_at=0, outage=0, good=3, base=tmp_path, say=lambda line: None, until_done=True)
    assert result["reviewed_once"] and result["bad_left_in_inbox"] == [], result
    assert result["rejected_with_reason"], result["reasons"]
    assert result["sweeps"] >= 1 and result["failed_sweeps_outside_outage"] == [], result
    assert result["tracebacks_in_serve_log"] == 0
