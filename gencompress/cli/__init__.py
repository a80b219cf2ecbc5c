"""The `gencompress` command line (click).

Each command lives in its own module and only parses options into a stage's config
and calls one function. Errors the user can fix (GencompressError, usage errors) become
a one-line message and exit code 2 (1 for a failed verification); SIGINT/SIGTERM exit
130/143 after temp folders are removed; a bug is one line and exit 3. `--debug` (or
GENCOMPRESS_DEBUG=1) shows the traceback.
"""
from __future__ import annotations

import contextlib
import errno
import importlib
import os
import signal
import sys
import threading

import click

from gencompress import __version__
from gencompress.errors import GencompressError, Interrupted, MissingDependencyError

# (module, command name, one-line help): a command is imported only when it runs or shows its
# own help, so `gencompress --help` imports no torch (under a second) and a broken optional
# dependency in one command never breaks the others. tests/test_cli_voice.py checks that each
# one-line help is the first line of its command's docstring.
COMMANDS = {
    "build": ("gencompress.cli.build_cmd", "build", "Compress a generator end to end: quantise, export ONNX, measure, report."),
    "train": ("gencompress.cli.train_cmd", "train", "Train MODEL (a zoo name) on DATA; writes a bundle to --out."),
    "prune": ("gencompress.cli.prune_cmd", "prune", "Prune BUNDLE's channels by --prune and distil it from the original."),
    "quantize": ("gencompress.cli.quantize_cmd", "quantize", "INT8-quantise BUNDLE (fake-quant, TensorRT's Q/DQ form on export)."),
    "export": ("gencompress.cli.export_cmd", "export", "Export BUNDLE (a bundle folder or an .onnx file) to ONNX or a TensorRT engine."),
    "bench": ("gencompress.cli.bench_cmd", "bench", "Time BUNDLE(s) on each backend and batch; judge quality against the original."),
    "report": ("gencompress.cli.report_cmd", "report", "Write report.md and report.html from bench/sweep result JSONs (or folders of them) and build bundles."),
    "sweep": ("gencompress.cli.sweep_cmd", "sweep", "Build every (prune ratio x precision) variant of BUNDLE, measure each, mark the Pareto front."),
    "estimate": ("gencompress.cli.estimate_cmd", "estimate", "Roofline latency estimate per layer from the bundle's ONNX graph (FLOPs and bytes)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        return self._load(name)

    def format_commands(self, ctx, formatter):
        """The command list from COMMANDS' one-line help, without importing any command."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, _, help_text) in COMMANDS.items()])

    def invoke(self, ctx):
        # Handled here (not only in main) so click's CliRunner sees the same exit codes.
        try:
            return super().invoke(ctx)
        except (GencompressError, click.UsageError) as exc:
            if (ctx.obj or {}).get("debug") or isinstance(exc, _NO_ARGS_IS_HELP):
                raise
            click.echo(one_line_error(exc), err=True)
            ctx.exit(exit_code_of(exc))

    @staticmethod
    def _load(name, quiet=False):
        """The command object; a command whose optional dependency is missing is None (quiet)
        or says what is missing when run, without breaking the others."""
        if name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a missing optional dependency; any other exception is a bug and surfaces
            if quiet:
                return None
            raise MissingDependencyError(f"command {name!r} is unavailable: {exc}") from exc
        return getattr(module, attr)


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gencompress")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors (or set GENCOMPRESS_DEBUG=1).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Prune, INT8-quantise, export and benchmark image generators."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or _debug_from_env()


def _debug_from_env() -> bool:
    return os.environ.get("GENCOMPRESS_DEBUG", "") not in ("", "0")


def one_line_error(exc: BaseException) -> str:
    """The single stderr line a user sees for an error they can act on."""
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        if isinstance(exc, click.NoSuchOption):
            from gencompress.cli.options import renamed_hint

            hint = renamed_hint(exc.ctx.info_name if exc.ctx else None, exc.option_name) + hint
        return f"gencompress: error: {exc.format_message()}{hint}"
    if isinstance(exc, click.ClickException):
        return f"gencompress: error: {exc.format_message()}"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"gencompress: error: {exc.strerror or exc}{where}"
    return f"gencompress: error: {exc}"


def exit_code_of(exc: BaseException) -> int:
    return int(getattr(exc, "exit_code", 2))


# OS errors a user fixes (space, permissions, read-only media), not bugs: one line, exit 2.
_USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def main(argv=None) -> None:
    """Console entry point: every failure becomes one stderr line and an exit code.

    2: bad input (GencompressError, usage errors, a full or read-only disk); 1: a failed
    verification; 130/143: SIGINT/SIGTERM (temp folders removed, --out untouched);
    3: a bug (one line here; --debug or GENCOMPRESS_DEBUG=1 shows the traceback).
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    debug = "--debug" in args or _debug_from_env()
    try:
        with _signals_raise_interrupted():
            result = cli.main(args=args, prog_name="gencompress", standalone_mode=False)
    except BaseException as exc:  # noqa: BLE001 - this is the one place that sorts them all
        sys.exit(_handle(exc, debug))
    # standalone_mode=False returns ctx.exit()'s code instead of exiting with it
    sys.exit(result if isinstance(result, int) else 0)


def _handle(exc: BaseException, debug: bool) -> int:
    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, _NO_ARGS_IS_HELP):
        exc.show()
        return exc.exit_code
    if debug:
        raise exc
    if isinstance(exc, Interrupted):
        click.echo(f"gencompress: interrupted by {exc}; nothing half-written was left", err=True)
        return exc.exit_code
    if isinstance(exc, (KeyboardInterrupt, click.exceptions.Abort)):
        click.echo("gencompress: interrupted by SIGINT; nothing half-written was left", err=True)
        return 130
    if isinstance(exc, (GencompressError, click.ClickException)):
        click.echo(one_line_error(exc), err=True)
        return exit_code_of(exc)
    if isinstance(exc, OSError) and exc.errno in _USER_OS_ERRORS:
        click.echo(one_line_error(exc), err=True)
        return 2
    if isinstance(exc, MemoryError):
        click.echo("gencompress: error: out of memory (try fewer samples or a smaller batch)", err=True)
        return 2
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    click.echo(f"gencompress: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)", err=True)
    return 3


@contextlib.contextmanager
def _signals_raise_interrupted():
    """SIGINT and SIGTERM raise Interrupted, so atomic writes clean up on the way out.

    Python's default lets SIGTERM kill the process on the spot, leaving temp folders.
    After the first signal the defaults come back, so a second one stops a stuck cleanup.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signums}

    def handler(signum, frame):
        for s in signums:
            signal.signal(s, signal.SIG_DFL if s == signal.SIGTERM else signal.default_int_handler)
        raise Interrupted(signum)

    for s in signums:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
