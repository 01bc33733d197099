"""Take docs/screenshot.png of the app after one round on the embedded model.

Usage: .venv/bin/python scripts/screenshot.py [OUT.png]   (needs Debian's chromium)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rlli.config import Settings  # noqa: E402
from tests.browser import browser_page, free_port, run_round, running_app  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png"
with running_app(Settings(port=free_port())) as url, browser_page(1400, 1500) as page:
    run_round(page, url)
    page.wait_for_timeout(1500)
    page.screenshot(path=out, full_page=True)
print(f"wrote {out}")
