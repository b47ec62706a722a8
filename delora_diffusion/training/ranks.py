"""Work the main process does first while the other processes of a run wait for it.

When the main process raises inside accelerate's ``main_process_first``, the others stay at a barrier it
never reaches: they end only when a launcher kills them (torchrun does, without a word of why) or when the
collective times out (other machines, other launchers). Here the main process tells the others whether its
part succeeded, and on failure every process stops with an error that names the main process's.
"""

from __future__ import annotations

from contextlib import contextmanager


class MainProcessError(RuntimeError):
    """Raised on the other processes when the main process failed in work they were waiting for."""


@contextmanager
def main_process_first(accelerator):
    """Run the block on the main process, then on the others; an exception on the main process is re-raised
    there and becomes a ``MainProcessError`` naming it on the others (never a hang at a barrier)."""
    if accelerator.num_processes == 1:
        yield
        return
    from accelerate.utils import broadcast_object_list

    if accelerator.is_main_process:
        try:
            yield
        except BaseException as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            broadcast_object_list([f"{type(exc).__name__}: {first_line}"], from_process=0)
            raise
        broadcast_object_list([None], from_process=0)
        return
    outcome = [None]
    broadcast_object_list(outcome, from_process=0)  # waits for the main process's block to end
    if outcome[0] is not None:
        raise MainProcessError(f"the main process stopped ({outcome[0]})")
    yield
