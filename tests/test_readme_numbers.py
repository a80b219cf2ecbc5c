"""Every measured number in the README and docs/ comes from a committed JSON.

Results tables are generated: each lies between `<!-- table: NAME -->` markers and must equal,
character for character, what `scripts/readme_tables.py` writes from its JSON, so editing any
number in one fails here; no table outside the markers holds numbers. In prose, a section (text between headings) that quotes results names the JSON(s) under
`benchmarks/results/` they come from; each result-like number in it (a speed ratio `2.6x`,
`dB`, `ms`, seconds, an FID, every number in a results table) must equal, at the precision
printed, a number in one of those JSONs. Commands (code blocks, `inline code`) are options,
not results, and are skipped.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NUM = r"\d+(?:\.\d+)?"
# a number (or a range lo-hi) followed by a result unit, or preceded by FID/KID/-> (a metric value)
UNIT = re.compile(rf"(?<![\w.])({NUM})(?:\s?-\s?({NUM}))?\s?(?:x\b|dB\b|ms\b|s\b(?! on first))")
METRIC = re.compile(rf"(?:\bFID|\bKID|->)\s+({NUM})")
CITED = re.compile(r"benchmarks/results/([\w.-]+\.json)")
MARKED = re.compile(r"<!-- table: [\w-]+ -->\n.*?<!-- /table -->", re.S)
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, prose) pairs; generated tables, code blocks and inline code removed."""
    text = MARKED.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", lambda m: m.group(0) if CITED.search(m.group(0)) else "", text)
    parts = re.split(r"^(#+ .*)$", text, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)] + [("(top)", parts[0])]


def claims(prose: str) -> list[str]:
    """Result-like numbers as printed ('2.64', '30.4', '28')."""
    found = []
    for line in prose.splitlines():
        if line.startswith("|"):
            if set(line) <= set("|-: "):
                continue
            found += re.findall(rf"(?<![\w.]){NUM}(?![\w.])", line)
            continue
        for lo, hi in UNIT.findall(line):
            found += [lo] + ([hi] if hi else [])
        found += METRIC.findall(line)
    return found


def json_numbers(names: list[str]) -> list[float]:
    out: list[float] = []

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            out.append(float(value))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for name in names:
        walk(json.loads((RESULTS / name).read_text()))
    return out


def held_by(printed: str, numbers: list[float]) -> bool:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    value = float(printed)
    return any(abs(round(n, decimals) - value) < 1e-9 for n in numbers)


def unbacked(text: str) -> list[str]:
    problems = []
    for heading, prose in sections(text):
        found = claims(prose)
        if not found:
            continue
        cited = sorted(set(CITED.findall(heading + prose)))  # a heading may name the section's JSON
        missing = [name for name in cited if not (RESULTS / name).is_file()]
        if missing or not cited:
            problems.append(f"{heading}: quotes {found[:5]} but names {'no JSON' if not cited else missing}")
            continue
        numbers = json_numbers(cited)
        problems += [f"{heading}: {n} is in none of {cited}" for n in found if not held_by(n, numbers)]
    return problems


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_every_number_in_prose_is_in_a_named_committed_json(doc):
    problems = unbacked(doc.read_text())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_results_tables_are_exactly_what_their_json_gives(doc):
    text = doc.read_text()
    assert readme_tables().render(text) == text, f"{doc.name}: run python scripts/readme_tables.py"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_no_hand_written_table_holds_numbers(doc):
    text = re.sub(r"```.*?```", "", MARKED.sub("", doc.read_text()), flags=re.S)
    rows = [line for line in text.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]
    numeric = [row for row in rows if re.search(rf"(?<![\w.`-]){NUM}(?![\w`])", re.sub(r"`[^`]*`", "", row))]
    assert not numeric, f"{doc.name}: tables with numbers belong between table markers: {numeric[:3]}"


def test_editing_a_number_in_a_generated_table_is_caught():
    doc = next(d for d in DOCUMENTS if "<!-- table: user_latents -->" in d.read_text())
    text = doc.read_text()
    start = text.index("<!-- table: user_latents -->")
    edited = text[:start] + re.sub(r"\| 47\.19 \|", "| 47.91 |", text[start:], count=1)
    assert edited != text
    assert readme_tables().render(edited) != edited


@pytest.mark.parametrize("text", [
    # the number the issue found: quoted, but no committed JSON holds it
    "## Compress\n\nFID 0.496 -> 30.4 pruned -> 0.501 (see `benchmarks/results/compress_quality.json`).\n",
    # a measured speed with no JSON named at all
    "## Speed\n\nINT8 runs 2.3x faster.\n",
])
def test_a_number_no_json_holds_is_caught(text):
    assert unbacked(text)


def test_a_json_named_in_the_heading_backs_its_section():
    text = "## Compress (`benchmarks/results/compress_quality.json`)\n\nFID 0.458 -> 30.4 pruned.\n"
    assert unbacked(text) == []


def test_commands_and_backed_numbers_pass():
    text = ("## Compress\n\n```bash\ngencompress prune dcgan --ratio 0.5 --distill-steps 1500\n```\n"
            "50% cuts MACs 3.72x, FID 0.458 -> 30.4 (`benchmarks/results/compress_quality.json`); `--min-psnr 35`.\n")
    assert unbacked(text) == []
