"""`gencompress report RUN...`: Markdown and self-contained HTML from bench/sweep results."""
from __future__ import annotations

import click

from gencompress.cli.options import out_option, writes_output


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@out_option("gencompress-report", "Folder for report.md, report.html and the figures (replaced atomically).")
@click.option("--title", default="gencompress benchmark report", show_default=True)
@writes_output
def report(runs, out, title):
    """Write report.md and report.html from bench/sweep result JSONs (or folders of them) and build bundles."""
    from gencompress.benchmarks.report_html import load_runs, write_report

    path = write_report(load_runs(list(runs)), out, title)
    click.echo(f"wrote {path}/report.md and {path}/report.html")
