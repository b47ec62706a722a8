"""Debris of a process killed in the middle of an atomic write is recognised and removed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from delora_diffusion.fileio import atomic_path, remove_stale_temporaries, temporary_dir_name

# A writer that stops inside atomic_path (the temporary file exists, the rename has not happened) and waits.
WRITER = """
import sys, time
from pathlib import Path
from delora_diffusion.fileio import atomic_path
folder = Path(sys.argv[1])
with atomic_path(folder / "adapter.safetensors") as tmp:
    tmp.write_bytes(b"half")
    (folder / "ready").write_text("")
    time.sleep(60)
"""


def test_a_writer_killed_mid_write_leaves_a_temporary_the_next_run_removes(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
    try:
        deadline = time.time() + 60
        while not (tmp_path / "ready").exists():
            assert time.time() < deadline and child.poll() is None, "the writer did not start"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    debris = [p for p in tmp_path.iterdir() if p.name.startswith(".adapter.safetensors.")]
    assert len(debris) == 1 and f".{child.pid}." in debris[0].name
    assert not (tmp_path / "adapter.safetensors").exists()

    checkpoint_debris = tmp_path / "sub" / temporary_dir_name("checkpoint-4", child.pid)
    checkpoint_debris.mkdir(parents=True)
    (checkpoint_debris / "model.safetensors").write_bytes(b"x")
    with atomic_path(tmp_path / "live.txt") as live:  # a writer still at work (this process) is left alone
        live.write_text("being written")
        removed = remove_stale_temporaries(tmp_path)
        assert live.exists()
    assert sorted(removed) == sorted([debris[0], checkpoint_debris])
    assert not debris[0].exists() and not checkpoint_debris.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.txt", "ready", "sub"]
