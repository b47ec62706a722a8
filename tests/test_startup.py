"""Every command answers --help and flag errors without importing torch or the model libraries (issue 14):
a process where importing them fails still prints the help. Timing lives in bench/startup.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# An import hook that makes the heavy libraries unimportable, then the command's own entry point.
BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "diffusers", "transformers", "accelerate", "peft",
                                  "open_clip", "timm", "matplotlib", "safetensors"}:
            raise ImportError(f"{name} imported before the flags were parsed")
sys.meta_path.insert(0, Block())
"""
ENTRIES = {
    "train_dreambooth.py": "from delora_diffusion.training.dreambooth import main",
    "train_semantic.py": "from delora_diffusion.training.semantic import main",
    "generate.py": "from delora_diffusion.inference.generate import main",
    "delora-eval": "from delora_diffusion.evaluation.cli import main",
    "delora-export": "from delora_diffusion.cli import export_main as main",
    "delora-make-tiny": "from delora_diffusion.cli import make_tiny_main as main",
    "delora-sweep": "from delora_diffusion.studies.sweep import main",
    "delora-inspect-norms": "from delora_diffusion.studies.norms import main",
    "delora-world-pretrain": "from delora_diffusion.world.pretrain import main",
    "delora-toy-study": "from delora_diffusion.studies.toy_world import main",
}


def _run(entry: str, argv: list[str]) -> subprocess.CompletedProcess:
    code = BLOCKER + ENTRIES[entry] + f"\nsys.exit(main({argv!r}))\n"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_help_without_heavy_imports(entry):
    result = _run(entry, ["--help"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


@pytest.mark.parametrize("argv", [["semantic", "--help"]])
def test_generate_subcommand_help_without_heavy_imports(argv):
    result = _run("generate.py", argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--maps" in result.stdout


@pytest.mark.parametrize(
    "entry,argv,message",
    [
        ("train_dreambooth.py", ["--rank", "x"], "--rank"),
        (
            "generate.py",
            ["--pretrained_model_name_or_path", "x", "--output_dir", "o", "--subject", "dog"],
            "--class_noun",
        ),
        ("delora-eval", ["dreambooth", "--protocol", "nope"], "--protocol"),
    ],
)
def test_flag_errors_without_heavy_imports(entry, argv, message):
    result = _run(entry, argv)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "imported before" not in result.stderr


def test_blocker_blocks():
    """The hook itself works: importing the trainer's task module must fail under it."""
    code = BLOCKER + "import delora_diffusion.training.dreambooth_task\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "imported before the flags were parsed" in result.stderr
