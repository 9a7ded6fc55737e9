"""Ctrl-C at safe points.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to be.
Two places cannot take it: C++ that called back into Python (an interrupt during
``import torch`` unwinds through torch's C++ initialisation and aborts the process with
``terminate called after throwing an instance of 'python_error'``; an interrupt during the
import of numpy or onnxruntime leaves a half-initialised module that fails later with an
unrelated error), and the few renames that commit a command's outputs.

Inside :func:`deferred`, SIGINT only records the request. The code in the block calls
:func:`check` where stopping is safe (between two training batches) and leaving the block
raises the KeyboardInterrupt if one is pending, so the request is never lost. In a
``strict`` block every Ctrl-C waits for the end of the block (it is short: imports, a
commit); otherwise a second Ctrl-C raises at once, for a user who does not want to wait for
the end of the batch. Blocks nest: an inner block joins the outer one's pending request, and
a strict inner block makes every Ctrl-C wait while it runs.

Only the main thread receives signals; in another thread the block changes nothing.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


@dataclass
class _Block:
    strict: bool
    presses: int = 0


_blocks: list[_Block] = []


def _handler(signum, frame) -> None:
    if not _blocks:  # a signal caught while the block was being left
        raise KeyboardInterrupt
    _blocks[0].presses += 1
    if _blocks[0].presses > 1 and not any(b.strict for b in _blocks):
        raise KeyboardInterrupt


@contextmanager
def deferred(strict: bool = False) -> Iterator[None]:
    """Run the block with Ctrl-C recorded, not raised (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _blocks:  # nested: share the outer block's handler and pending request
        _blocks.append(_Block(strict))
        try:
            yield
        finally:
            _blocks.pop()
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or previous is None:
        yield  # Ctrl-C is ignored (a background job) or handled outside Python: leave it so
        return
    block = _Block(strict)
    _blocks.append(block)
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _blocks.clear()
    if block.presses:
        raise KeyboardInterrupt


def pending() -> bool:
    """Whether Ctrl-C was pressed inside the current :func:`deferred` block."""
    return bool(_blocks) and _blocks[0].presses > 0


def check() -> None:
    """Raise the KeyboardInterrupt a Ctrl-C inside :func:`deferred` asked for, if any; call it
    where stopping is safe."""
    if pending():
        _blocks[0].presses = 0
        raise KeyboardInterrupt
