"""Benchmark: the browser report of the whole flagship (929 twins x 2 policies) on builtin:tiny.

    python benchmarks/html_report.py [--run-dir DIR] [--participants 929] [--bootstrap 20]

Runs the flagship with two policies (base and base_no_demographics; builtin:tiny has random
weights, so the answers mean nothing: this measures size and speed only), scores it with a small
bootstrap, writes report.html and prints its size in MB, the time to write it and the time
Chromium takes to open it from file:// until the first participant is shown (median of 3).
A --run-dir that already holds a finished run is reused. Targets: under 15 MB, under 2 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.html_report import write_html_report  # noqa: E402
from analysis.report import score_run  # noqa: E402
from contracts.run_format import REPORT, RESPONSES  # noqa: E402

FLAGSHIP = ROOT / "scenarios" / "security_disclosure.yaml"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _run(run_dir: Path, participants: int) -> None:
    """The flagship under base and base_no_demographics, as `run.py run` makes it."""
    subprocess.run([sys.executable, str(ROOT / "run.py"), "run", str(FLAGSHIP), "--participants",
                    str(participants), "--policies", "base,base_no_demographics", "--out",
                    str(run_dir)], stdout=subprocess.DEVNULL)
    if not (run_dir / RESPONSES).is_file():
        sys.exit(f"{run_dir}: the run did not finish (no {RESPONSES})")


def open_seconds(page_path: Path, repeats: int = 3) -> list[float]:
    """Seconds from navigation to the first participant's transcript shown, per fresh page."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(repeats):
            page = browser.new_page()
            first = page_path.as_uri()
            start = time.perf_counter()
            page.goto(first)
            page.locator("#participants a").first.click()
            page.wait_for_selector("#messages .msg")
            times.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--participants", type=int, default=929)
    parser.add_argument("--bootstrap", type=int, default=20)
    args = parser.parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="html-report-")) / "run"
    if not (run_dir / RESPONSES).is_file():
        start = time.perf_counter()
        _run(run_dir, args.participants)
        print(f"run: {time.perf_counter() - start:.0f} s ({run_dir})")
    if not (run_dir / REPORT).is_file():
        start = time.perf_counter()
        score_run(run_dir, bootstrap=args.bootstrap)
        print(f"score: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    page = write_html_report(run_dir)
    written = time.perf_counter() - start
    size = page.stat().st_size / 1e6
    times = open_seconds(page)
    print(f"report.html: {size:.2f} MB, written in {written:.1f} s; opened in "
          f"{statistics.median(times):.2f} s (median of {len(times)}: "
          f"{', '.join(f'{t:.2f}' for t in times)}); targets 15 MB, 2 s")


if __name__ == "__main__":
    main()
