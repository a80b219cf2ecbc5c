"""The `gencompress` command line (click).

Each command lives in its own module and only parses options into a stage's config
and calls one function. Errors the user can fix (GencompressError) become a one-line
message and exit code 2 (1 for a failed verification); `--debug` shows the traceback.
"""
from __future__ import annotations

import importlib
import sys

import click

from gencompress import __version__
from gencompress.errors import GencompressError

# (module, command name): imported lazily so `gencompress --help` stays fast and a
# broken optional dependency in one command never breaks the others.
COMMANDS = {
    "build": ("gencompress.cli.build_cmd", "build"),
    "train": ("gencompress.cli.train_cmd", "train"),
    "prune": ("gencompress.cli.prune_cmd", "prune"),
    "quantize": ("gencompress.cli.quantize_cmd", "quantize"),
    "export": ("gencompress.cli.export_cmd", "export"),
    "bench": ("gencompress.cli.bench_cmd", "bench"),
    "report": ("gencompress.cli.report_cmd", "report"),
    "sweep": ("gencompress.cli.sweep_cmd", "sweep"),
    "estimate": ("gencompress.cli.estimate_cmd", "estimate"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx, name):
        return self._load(name)

    def invoke(self, ctx):
        # Handled here (not only in main) so click's CliRunner sees the same exit codes.
        try:
            return super().invoke(ctx)
        except GencompressError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo(f"gencompress: error: {exc}", err=True)
            ctx.exit(exc.exit_code)

    @staticmethod
    def _load(name):
        if name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not written yet
                return None
            raise
        return getattr(module, attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gencompress")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Prune, INT8-quantise, export and benchmark image generators."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None) -> None:
    """Console entry point: run the CLI, turning user errors into one line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="gencompress", standalone_mode=False)
    except GencompressError as exc:
        if debug:
            raise
        click.echo(f"gencompress: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("gencompress: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("gencompress: interrupted", err=True)
        sys.exit(130)
