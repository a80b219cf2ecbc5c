"""Model resolution shared by the commands: a zoo name becomes the zoo model trained on digits.

It lives in the CLI because it reaches into the train stage (get_or_train), which the core may not.
Imports are deferred so that `gencompress --help` does not load torch.
"""
from __future__ import annotations

from pathlib import Path


def is_zoo_name(spec: str) -> bool:
    """A zoo name that no file or folder of that name shadows."""
    from gencompress import zoo

    return spec in zoo.names() and not Path(spec).exists()


def load_model(spec: str, progress: bool = True, **load_options):
    """A bundle folder, a model file or import spec (load_spec, with `load_options`), or a zoo name
    (its model trained on digits: shipped, cached, or trained now; it takes no load options)."""
    from gencompress.loading import load_spec

    if is_zoo_name(spec):
        from gencompress.train import get_or_train

        return load_spec(str(get_or_train(spec, progress=progress).path))
    return load_spec(spec, **load_options)
