"""One exception type for everything a user can get wrong.

The CLI turns a GencompressError into a one-line message and its exit code (2 for bad
input, 1 for a failed verification). Anything else is a bug: one line and exit code 3,
with the traceback under `--debug` (or GENCOMPRESS_DEBUG=1).
"""


class GencompressError(Exception):
    """A problem the user can fix: bad input, a missing file, an impossible request."""

    exit_code = 2


class VerificationError(GencompressError):
    """The pipeline ran, but a result fell short of the threshold the user asked for."""

    exit_code = 1


class MissingDependencyError(GencompressError):
    """An optional backend (TensorRT, say) is not importable here."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so no `except Exception` swallows it;
    on its way out every atomic write removes its temp folder and `--out` stays as it was."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        super().__init__(signal.Signals(signum).name)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def import_optional(module: str, label: str, install: str):
    """Import an optional backend's `module`, or raise a one-line MissingDependencyError naming
    `label` and how to `install` it. Any exception counts: a broken install raises OSError."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as exc:
        raise MissingDependencyError(f"{label} is not importable here ({type(exc).__name__}: {first_line(exc)[:120]}); {install}") from None
