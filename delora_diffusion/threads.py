"""One CPU-thread policy for every command (``--num_threads``).

torch's default uses every core in every process. On a small machine with any other load that collapses
(measured on 2 cores: 5.8–11.3 s per training step against 0.2–0.8 s single-threaded), and it makes
``python train_dreambooth.py`` and ``accelerate launch`` (which sets one thread per process) compute
different numbers from the same flags. So every command runs ``--num_threads`` threads per process:
``OMP_NUM_THREADS`` when set (as accelerate sets it), else 1. GPU work does not depend on it.
A leaf module: imports nothing of the toolkit.
"""

from __future__ import annotations

import argparse
import os

DEFAULT_THREADS = 1


def _thread_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_thread_arg(parser) -> None:
    """``--num_threads N`` on ``parser`` (or an argument group)."""
    parser.add_argument(
        "--num_threads",
        type=_thread_count,
        metavar="N",
        help=f"CPU threads per process (default: $OMP_NUM_THREADS, else {DEFAULT_THREADS}: "
        "more threads only pay on an otherwise idle machine)",
    )


def resolve_threads(requested: int | None) -> int:
    """The thread count a command runs with: ``requested``, else ``$OMP_NUM_THREADS``, else 1."""
    if requested is not None:
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) >= 1 else DEFAULT_THREADS


def apply_threads(args: argparse.Namespace) -> int:
    """Set torch's intra-op threads from ``args.num_threads`` (resolved and stored back); returns the count."""
    import torch

    args.num_threads = resolve_threads(args.num_threads)
    torch.set_num_threads(args.num_threads)
    return args.num_threads
