"""Progress bars on stderr, shown only to a person at a terminal (not in CI logs)."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(iterable: Iterable[T], desc: str, enabled: bool = True, **kwargs) -> Iterable[T]:
    # disable=None lets tqdm switch itself off when stderr is not a TTY
    return tqdm(iterable, desc=desc, disable=None if enabled else True, file=sys.stderr, dynamic_ncols=True, **kwargs)
