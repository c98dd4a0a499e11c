"""The HTML report in a real headless browser (Chromium): the claims x models matrix is on the
first screen and the page never scrolls sideways. Skipped where Chromium is not installed (CI
installs Debian's ``chromium`` package)."""

import re
import shutil
import subprocess

import pytest

from sinkmech.reporting.report import write_report
from tests.reporting.units import write_unit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREEN = (1280, 900)
# Written into the page after layout: the matrix's bottom edge and the page's widths.
PROBE = (
    "<script>window.addEventListener('load', () => {const m = document.getElementById('matrix');"
    "document.body.dataset.matrixBottom = Math.ceil(m.getBoundingClientRect().bottom);"
    "document.body.dataset.scrollWidth = document.documentElement.scrollWidth;"
    "document.body.dataset.innerWidth = window.innerWidth;});</script>"
)


def rendered_layout(page: str, tmp_path) -> dict[str, int]:
    """Load ``page`` in headless Chromium at ``SCREEN`` and read back what ``PROBE`` measured."""
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={SCREEN[0]},{SCREEN[1]}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probed.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    found = dict(re.findall(r'data-(matrix-bottom|scroll-width|inner-width)="(\d+)"', dom))
    return {name: int(value) for name, value in found.items()}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_the_matrix_fills_the_first_screen_without_sideways_scrolling(tmp_path):
    for model, qk_norm in (("real_a", False), ("real_b", True)):
        write_unit(tmp_path, model, "local", pair="p", qk_norm=qk_norm)
    write_report(tmp_path, html=True)
    page = (tmp_path / "REPORT.html").read_text()
    assert page.index('id="matrix"') < page.index("<h2>Figures</h2>")
    layout = rendered_layout(page, tmp_path)
    assert set(layout) == {"matrix-bottom", "scroll-width", "inner-width"}
    assert 0 < layout["matrix-bottom"] <= SCREEN[1]
    assert layout["scroll-width"] <= layout["inner-width"]
