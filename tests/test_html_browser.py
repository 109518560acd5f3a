"""`report.html` in a real browser (Chromium driven by Playwright): it opens from file:// with no
console error and no network request, filters, opens a participant beside its human twin, keeps
a shareable URL fragment, and runs none of the script injections its run holds (issue 13).

Needs Debian's chromium at /usr/bin/chromium (`playwright install` does not work here): skipped
where it is missing, a failure when CI=true.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis.html_report import write_html_report
from tests.test_html_report import HOSTILE, POLICIES, embedded, make_scored_run

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _playwright() -> Any:
    missing = None if CHROMIUM.is_file() else f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "playwright is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {missing}")
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with _playwright()() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


REPLY = f"B {HOSTILE[1]} {HOSTILE[2]}"  # a model's reply, as a text backend could return it
REASON = f"reply {HOSTILE[0]!r} names no option"


def hostile_reply(run_dir: Path) -> str:
    """Make the first reply of the run unreadable, with injections in its text and its reason (as
    an endpoint's text reply, or an edited run directory someone shares, could hold them)."""
    path = run_dir / "transcripts.jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    reply = next(line for line in lines if line["role"] == "assistant")
    reply.update(content=REPLY, answer=None, invalid=REASON)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return reply["participant_id"]


@pytest.fixture(scope="module")
def report_page(tmp_path_factory, tiny_dir) -> Path:
    _playwright()
    run_dir = make_scored_run(tmp_path_factory.mktemp("browser"), tiny_dir)
    hostile_reply(run_dir)
    return write_html_report(run_dir)


class Opened:
    """A page opened on the report, with everything it logged and requested."""

    def __init__(self, browser: Any, path: Path, fragment: str = "") -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri() + fragment)
        self.page.wait_for_selector("#participants a")

    def listed(self) -> list[str]:
        return self.page.locator("#participants a").evaluate_all(
            "links => links.map(a => a.dataset.participant)")

    def offline(self) -> None:
        assert self.errors == []
        assert all(u.startswith(("file://", "data:")) for u in self.requests), self.requests


def data_of(path: Path) -> dict[str, Any]:
    return embedded(path.read_text(encoding="utf-8"))


def option_text(data: dict[str, Any], question: str, option: str) -> str:
    found = next(o for o in data["questions"][question]["options"] if o["id"] == option)
    return f"{found['label']}) {found['text']}"


def test_filter_open_a_participant_and_see_its_twin(browser, report_page, tmp_path):
    data = data_of(report_page)
    people = {p["id"]: p for p in data["participants"]}
    opened = Opened(browser, report_page)
    page = opened.page
    level = people[opened.listed()[0]]["attrs"]["disclosure"]
    page.select_option("select[data-filter=disclosure]", level)
    listed = opened.listed()
    expected = [p for p, person in people.items() if person["attrs"]["disclosure"] == level]
    assert listed == sorted(expected) and len(listed) < len(people)
    page.locator("#participants a").first.click()
    person = people[listed[0]]
    assert page.text_content("#participant-title") == f"{listed[0]} · {POLICIES[0]}"
    assert page.url.endswith(f"#p={listed[0]}&policy={POLICIES[0]}")
    run = person["runs"][POLICIES[0]]
    assert page.locator("#messages .msg").count() == len(run["messages"])
    system = "\n".join(data["strings"][i] for i in run["messages"][0][4])
    assert page.locator("#messages .msg .text").first.text_content() == system
    twin = person["human"]["1"]["attack"]
    cell = page.locator("td[data-round='1'][data-question='attack']")
    assert cell.locator(".twin").text_content() == "twin: " + option_text(data, "attack", twin)
    assert page.locator("#messages .probs").count() == sum(
        1 for m in run["messages"] if m[5] is not None)
    page.evaluate("() => document.querySelector('#browser').scrollIntoView()")
    page.screenshot(path=str(tmp_path / "participant.png"))
    page.locator("#browser").screenshot(path=str(tmp_path / "browser.png"))
    assert (tmp_path / "browser.png").stat().st_size > 10_000
    opened.offline()


def test_the_contradicted_filter_and_a_shared_link(browser, report_page):
    data = data_of(report_page)
    people = {p["id"]: p for p in data["participants"]}
    policy = POLICIES[1]
    target = sorted(people)[-1]
    opened = Opened(browser, report_page, f"#p={target}&policy={policy}")
    page = opened.page
    assert page.text_content("#participant-title") == f"{target} · {policy}"
    page.select_option("select[data-filter=policy]", policy)
    page.check("input[data-filter=contradicted]")
    expected = sorted(p for p, person in people.items() if person["runs"][policy]["contradicted"])
    assert opened.listed() == expected and 0 < len(expected) < len(people)
    opened.offline()


def test_no_injected_script_runs(browser, report_page, tmp_path):
    opened = Opened(browser, report_page)
    page = opened.page
    hostile_groups = [g for g in json.loads(page.evaluate(
        "JSON.stringify([...document.querySelectorAll('select[data-filter=ethnicity] option')]"
        ".map(o => o.value))")) if g in HOSTILE]
    assert sorted(hostile_groups) == sorted(HOSTILE)  # the filter lists them, as text
    for group in hostile_groups:
        page.select_option("select[data-filter=ethnicity]", group)
        for pid in opened.listed():
            for policy in POLICIES:
                page.evaluate("f => { location.hash = f; }", f"p={pid}&policy={policy}")
                page.wait_for_function("t => document.querySelector('#participant-title')"
                                       ".textContent === t", arg=f"{pid} · {policy}")
    page.evaluate("f => { location.hash = f; }", f"p={opened.listed()[0]}&policy={POLICIES[0]}")
    page.wait_for_function("t => document.querySelector('#participant-title').textContent"
                           ".endsWith(t)", arg=f" · {POLICIES[0]}")
    shown = page.text_content("#messages")
    assert HOSTILE[0] in shown and HOSTILE[1] in shown  # the persona, shown as text
    assert HOSTILE[2] in page.text_content("#detail")  # the option text, shown as text
    replied = next(p["id"] for p in data_of(report_page)["participants"]
                   if any(m[7] is not None for m in p["runs"][POLICIES[0]]["messages"]))
    page.evaluate("f => { location.hash = f; }", f"p={replied}&policy={POLICIES[0]}")
    page.wait_for_selector("#messages .invalid")
    assert page.text_content("#messages .invalid") == "invalid answer: " + REASON
    assert page.locator("#messages .msg.assistant .text").first.text_content() == REPLY
    page.locator("#messages .invalid").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "invalid.png"))
    page.locator("#tables").screenshot(path=str(tmp_path / "tables.png"))
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#detail img, #participants img, #filters img").count() == 0
    opened.offline()
    # The probe can see an injection run: the same markup put in as HTML does run.
    page.evaluate("""() => { const d = document.createElement('div');
        d.innerHTML = '<img src=x onerror="window.__pwned=1">'; document.body.appendChild(d); }""")
    page.wait_for_function("window.__pwned === 1")


@pytest.fixture(scope="module")
def social_page(tmp_path_factory, tiny_backend) -> Path:
    from analysis.report import score_run
    from engine.runner import run_scenario
    from scenarios.loader import load_scenario
    from tests.test_network_core import social_scenario

    _playwright()
    folder = tmp_path_factory.mktemp("browser-social")
    result = run_scenario(load_scenario(social_scenario(folder, rounds=3)), participants=24,
                          seed=5, out=folder / "run", backend=tiny_backend)
    score_run(result.run_dir, bootstrap=5, seed=1)
    return write_html_report(result.run_dir)


NETWORK_IMG = "img[alt^='The network, coloured by']"


def test_a_networked_run_shows_its_graph_and_measures_and_the_flagship_does_not(
        browser, social_page, report_page, tmp_path):
    opened = Opened(browser, social_page)
    page = opened.page
    image = page.locator(NETWORK_IMG)
    image.scroll_into_view_if_needed()
    assert image.evaluate("i => i.complete && i.naturalWidth") > 300  # the SVG drew
    assert image.bounding_box()["height"] > 200
    table = page.locator("table.network-table")
    assert table.locator("tbody tr").count() == 3  # base x the 3 summarised questions
    assert "switch to majority: shown" in table.locator("thead").text_content()
    assert "24 participants" in page.text_content("#network + p")
    image.screenshot(path=str(tmp_path / "network.png"))
    assert (tmp_path / "network.png").stat().st_size > 10_000
    opened.offline()
    flagship = Opened(browser, report_page).page
    assert flagship.locator(NETWORK_IMG).count() == 0
    assert flagship.locator("table.network-table, #network").count() == 0
