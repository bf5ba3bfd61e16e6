"""How many torch threads a run uses, set for the duration of a call and restored afterwards.

Library calls never leave torch's process-wide thread count changed: ``torch_threads`` sets it for
a block and puts the caller's value back, however the block ends.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from lstmbt.models.specs import available_cores


def default_threads() -> int | None:
    """One torch thread per core this process may use, or None when the user pinned
    ``OMP_NUM_THREADS`` (torch already follows it, so the caller's setting stays)."""
    return None if os.environ.get("OMP_NUM_THREADS") else available_cores()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the caller's count.

    Parameters
    ----------
    threads : threads for the block, >= 1; None (or 0) leaves torch's setting alone and does
        not import torch.
    """
    if not threads:
        yield
        return
    if threads < 0:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    import torch  # heavy: only when a thread count is really set

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
