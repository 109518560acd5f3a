"""`report.html`: a real builtin:tiny run (two policies), scored, written as one self-contained
page; hostile scenario text and data cells end up escaped in its source (issue 13).

The run's persona, one answer option's text and the twins' `ethnicity` data cells hold script
injections; the browser side of the same proof is tests/test_html_browser.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.errors import AnalysisInputError
from analysis.html_report import HTML_REPORT, write_html_report
from analysis.report import score_run
from contracts.run_format import REPORT, leading_note
from tests.conftest import FLAGSHIP

PARTICIPANTS = 8
POLICIES = ("base", "base_no_demographics")
HOSTILE = ("<script>window.__pwned=1</script>", '"><img src=x onerror="window.__pwned=1">',
           "</script><script>window.__pwned=1</script>")
DATA = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"


def hostile_scenario(folder: Path) -> Path:
    """The flagship with injections in its persona, an option's text and the ethnicity cells."""
    text = DATA.read_text(encoding="utf-8")
    note = leading_note(text.splitlines())
    table = pd.read_csv(DATA, comment=None, skiprows=len(note), dtype=str)
    table["ethnicity"] = [HOSTILE[i % 3] if i % 4 < 3 else "White" for i in range(len(table))]
    data = folder / "hostile.csv"
    data.write_text("".join(f"# {line}\n" for line in note) + table.to_csv(index=False),
                    encoding="utf-8")
    spec = yaml.safe_load(FLAGSHIP.read_text(encoding="utf-8"))
    spec["population"]["data"] = str(data)
    spec["persona"] = spec["persona"].replace("Answer every", f"{HOSTILE[0]} {HOSTILE[1]} Answer every")
    spec["stages"][1]["questions"][0]["options"][0]["text"] = f"North Beach {HOSTILE[2]}"
    path = folder / "hostile.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def make_scored_run(folder: Path, tiny_dir: Path) -> Path:
    """A hostile flagship run of a few twins under two policies (base, and base without
    demographics), on builtin:tiny, scored with a small bootstrap."""
    from engine.backends.transformers_backend import TransformersBackend
    from engine.policies import Policy
    from engine.runner import run_scenario
    from scenarios.loader import load_scenario

    run_dir = folder / "run"
    backend = TransformersBackend(tiny_dir, adapters={name: None for name in POLICIES})
    run_scenario(load_scenario(hostile_scenario(folder)), participants=PARTICIPANTS, out=run_dir,
                 backend=backend, policies=[Policy(POLICIES[0]),
                                            Policy(POLICIES[1], demographics=False)])
    score_run(run_dir, bootstrap=10, seed=1)
    return run_dir


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, tiny_dir) -> Path:
    return make_scored_run(tmp_path_factory.mktemp("html-report"), tiny_dir)


@pytest.fixture(scope="module")
def page(scored_run) -> str:
    path = write_html_report(scored_run)
    assert path == scored_run / HTML_REPORT
    return path.read_text(encoding="utf-8")


def embedded(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', page, re.S)
    assert found, "the page embeds its data as application/json"
    return json.loads(found.group(1))


def test_the_page_holds_the_tables_figures_and_header(scored_run, page):
    report = json.loads((scored_run / REPORT).read_text())
    for section in ("Heterogeneity", "Distributional alignment", "coherence", "Regression"):
        assert section.lower() in page.lower(), section
    assert "human split-half ceiling" in page
    assert page.count('<table class="metrics"') >= len(report["tables"])
    assert ">n/e<" in page  # small subgroups are not estimable and are marked so
    for policy in POLICIES:
        assert f"<th>{policy}</th>" in page
    figures = re.findall(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+"', page)
    assert len(figures) >= 4  # distributions, subgroups, forest, heterogeneity, gap
    assert "SYNTHETIC STAND-IN, not human data" in page
    assert "builtin:tiny" in page and "random-weights model" in page


def test_the_page_needs_nothing_from_outside(page):
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page
    assert "default-src 'none'" in page  # the browser itself refuses any fetch


def test_the_browser_data_hold_every_participant_transcript_and_twin(scored_run, page):
    data = embedded(page)
    assert data["policies"] == list(POLICIES)
    people = data["participants"]
    assert len(people) == PARTICIPANTS
    lines = (scored_run / "transcripts.jsonl").read_text().splitlines()
    assert sum(len(run["messages"]) for p in people for run in p["runs"].values()) == len(lines)
    first = json.loads(lines[0])
    person = next(p for p in people if p["id"] == first["participant_id"])
    message = person["runs"][first["policy"]]["messages"][0]
    assert "\n".join(data["strings"][i] for i in message[4]) == first["content"]
    human = pd.read_csv(scored_run.parent / "hostile.csv", comment="#", dtype=str)
    row = human[human["participant_id"] == person["id"]].iloc[0]
    assert person["human"]["1"]["attack"] == row["r1_attack"]


def test_repeated_text_is_stored_once(page):
    data = embedded(page)
    instructions = "In this game you are a pirate."
    assert sum(s.startswith(instructions) for s in data["strings"]) <= 4  # one per condition cell
    assert len(page.encode()) < 3_000_000


def test_hostile_text_is_escaped_in_the_source(scored_run, page):
    responses = pd.read_parquet(scored_run / "responses.parquet")
    assert set(HOSTILE) <= set(responses["ethnicity"])  # the injections reached the run
    assert len(re.findall(r"<script", page)) == 2  # the data block and our own script only
    for hostile in HOSTILE:
        assert hostile not in page
    assert "<img src=x" not in page
    data = embedded(page)
    assert any(HOSTILE[0] in s for s in data["strings"])  # kept as text, decoded by JSON.parse


def test_a_missing_or_damaged_report_is_a_clear_input_error(scored_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(scored_run, copy)
    (copy / REPORT).unlink()
    (copy / HTML_REPORT).unlink(missing_ok=True)
    with pytest.raises(AnalysisInputError, match=r"report\.json: missing; run `python run.py score"):
        write_html_report(copy)
    (copy / REPORT).write_text("{not json", encoding="utf-8")
    with pytest.raises(AnalysisInputError, match=r"report\.json: not valid JSON"):
        write_html_report(copy)
    (copy / REPORT).write_text("[]", encoding="utf-8")
    with pytest.raises(AnalysisInputError, match="not a scored report"):
        write_html_report(copy)
    assert not (copy / HTML_REPORT).exists()


def test_the_report_command_scores_an_unscored_run_then_writes_the_page(scored_run, tmp_path,
                                                                        capsys):
    import run

    copy = tmp_path / "run"
    shutil.copytree(scored_run, copy)
    (copy / REPORT).unlink()
    (copy / HTML_REPORT).unlink(missing_ok=True)
    assert run.main(["report", str(copy)]) == 0
    out, err = capsys.readouterr()
    assert "scoring it first" in err
    assert out.strip().endswith(str(copy / HTML_REPORT))
    assert json.loads((copy / REPORT).read_text(encoding="utf-8"))["policies"] == list(POLICIES)
    assert "Transcript browser" in (copy / HTML_REPORT).read_text(encoding="utf-8")
    assert run.main(["report", str(tmp_path / "no-such-run")]) == 2
    assert "error:" in capsys.readouterr().err
