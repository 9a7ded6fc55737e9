"""Checks shared by the CLI tests."""
from __future__ import annotations


def assert_user_error(result, *fragments):
    """A user's mistake as the CLI promises it (docs/cli.md): exit 2, one line on stderr,
    ``error: PROBLEM -- fix: FIX``, no traceback, every fragment in that line."""
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and " -- fix: " in err, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in err, err
