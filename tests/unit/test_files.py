"""Files the harness writes whole (report.html, profile.md, hand-off files) get the mode a user expects."""

import os
import stat

import pytest

from bench.render.html import write_html
from mgpu_core.files import atomic_write


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_an_atomically_written_file_has_the_mode_open_would_give_it(tmp_path, umask, mask, expected):
    umask(mask)
    with atomic_write(tmp_path / "profile.md") as f:
        f.write("x")
    assert stat.S_IMODE((tmp_path / "profile.md").stat().st_mode) == expected
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what an ordinary write gives, for the same umask
    assert stat.S_IMODE(plain.stat().st_mode) == expected


def test_report_html_is_readable_by_others_under_the_usual_umask(tmp_path, umask):
    umask(0o022)
    write_html(tmp_path / "report.html", "t", [("s", "<p>x</p>")], [], {})
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o644
