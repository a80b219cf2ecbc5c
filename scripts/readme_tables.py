"""Write every results table of README.md and docs/*.md from the JSON that holds its numbers.

A table lives between two markers, and nothing else writes inside them:

    <!-- table: cpu_peers -->
    | ... generated ... |
    <!-- /table -->

`python scripts/readme_tables.py` rewrites each marked table from `benchmarks/results/`;
`--check` changes nothing and exits 1 naming every table that differs from its JSON
(tests/test_readme_numbers.py runs the same check, so a number edited by hand fails the suite).
Each renderer is the table function of the script that writes the JSON, where it has one.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCRIPTS = ROOT / "scripts"
MARKED = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _script(name: str):
    """A module of scripts/ (not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location(f"_readme_tables_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def cpu_peers() -> str:
    return _script("cpu_peers").markdown(_load("cpu_peers.json"))


def cpu_peers_avx2() -> str:
    """The same script's run on a CPU without VNNI (AVX2 only), kept beside the newest run."""
    return _script("cpu_peers").markdown(_load("cpu_peers_avx2.json"))


def real_architectures() -> str:
    return _script("real_architectures").table_markdown(_load("real_architectures.json"))


def real_architectures_short() -> str:
    own = {}
    for name, r in _load("trained_suite.json")["models"].items():
        baseline = _suite_baseline(r["quality"])
        what = "reconstruction " if "reconstruction_psnr_db" in r["quality"] else "digits " if "fid" in r["quality"] else ""
        own[name] = what + _suite_quality(r["quality"]) + (f" ({baseline})" if baseline != "-" else "")
    return _script("real_architectures").readme_markdown(_load("real_architectures.json"), own)


def user_latents() -> str:
    rows = _load("user_latents.json")["rows"]
    lines = ["| INT8 form | calibrated on | PSNR vs FP32 (dB) |", "|---|---|---|"]
    lines += [f"| {r['form']} | {r['calibrated_on']} | {r['psnr_db']:.2f} |" for r in rows]
    return "\n".join(lines)


def train_objectives() -> str:
    lines = ["| objective | model | steps | FID untrained | FID (EMA) | FID ratio | KID | IS | claim | holds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in _load("train_objectives.json")["results"]:
        ratio = f"{r['fid']/r['fid_untrained']:.3f}"
        is_mean = f"{r['is_mean']:.2f}" if r.get("is_mean") is not None else "-"
        lines.append(f"| {r['objective']} | {r['model']} | {r['steps']} | {r['fid_untrained']:.2f} | {r['fid']:.2f} | {ratio} | "
                     f"{r['kid_mean']:.3f} ± {r['kid_std']:.3f} | {is_mean} | {r['claim'] or '-'} | {_holds(r)} |")
    return "\n".join(lines)


def _holds(row: dict) -> str:
    return "n/a" if row.get("claim_holds") is None else str(row["claim_holds"])


def _suite_quality(quality: dict) -> str:
    """A suite model's own quality: PSNR on the held-out photos, or digits FID for the GAN."""
    if "fid" in quality:
        return f"FID {quality['fid']:.1f}"
    metric = next(k for k in quality if k.endswith("psnr_db") and not k.startswith(("bicubic", "noisy")))
    return f"{quality[metric]:.2f} dB"


def _suite_baseline(quality: dict) -> str:
    if "bicubic_psnr_db" in quality:
        return f"bicubic {quality['bicubic_psnr_db']:.2f} dB"
    if "noisy_input_psnr_db" in quality:
        return f"noisy input {quality['noisy_input_psnr_db']:.2f} dB"
    return "-"


def trained_suite() -> str:
    lines = ["| layout | task | steps x batch, crop | train CPU s | held-out quality at init | after training | baseline | weights |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in _load("trained_suite.json")["models"].items():
        shipped = f"{r['weights']['bytes'] / 2**20:.1f} MiB, " + ("ships" if r["weights"]["shipped"] else "first use")
        lines.append(f"| {name} | {r['task'].split(';')[0]} | {r['steps']} x {r['batch']}, {r['crop']} px | {r['train_cpu_seconds']:.0f} | "
                     f"{_suite_quality(r['quality_at_init'])} | {_suite_quality(r['quality'])} | {_suite_baseline(r['quality'])} | {shipped} |")
    return "\n".join(lines)


TABLES = {f.__name__: f for f in (cpu_peers, cpu_peers_avx2, real_architectures, real_architectures_short, user_latents, train_objectives, trained_suite)}


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def render(text: str) -> str:
    """`text` with every marked table written from its JSON; an unknown name is an error."""
    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"

    return MARKED.sub(fill, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Change nothing; exit 1 if a table differs from its JSON.")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        text = path.read_text()
        fresh = render(text)
        if fresh != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(fresh)
    verb = "differ from their JSON" if args.check else "rewritten"
    print(f"{verb}: {', '.join(map(str, stale))}" if stale else "every table matches its JSON", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
