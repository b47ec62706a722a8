"""Shared fixtures: tiny random-weight models built once per test session, fully offline."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# converted single-file checkpoints and built-in configs go here, never into the user's ~/.cache
os.environ["DELORA_DIFFUSION_CACHE"] = tempfile.mkdtemp(prefix="delora-diffusion-cache-")
atexit.register(shutil.rmtree, os.environ["DELORA_DIFFUSION_CACHE"], ignore_errors=True)

from pathlib import Path  # noqa: E402

import huggingface_hub  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from train_helpers import reset_accelerate  # noqa: E402

SHARED_DREAMBOOTH = Path(__file__).resolve().parents[2] / "shared" / "dreambooth"

# The tests' models are tiny: intra-op threads gain nothing and cost several times over on a shared CPU.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


def _tiny_fixture(kind: str, what: str):
    """A session fixture: the path of the saved tiny ``kind`` model (``delora-make-tiny``'s builders)."""

    @pytest.fixture(scope="session", name=f"tiny_{kind}")
    def fixture(tiny_root) -> Path:
        from delora_diffusion.models.tiny import ensure_tiny

        return ensure_tiny(kind, tiny_root)

    fixture.__doc__ = f"Path of a saved tiny {what}."
    return fixture


tiny_sd = _tiny_fixture("sd", "Stable Diffusion pipeline (loadable with from_pretrained)")
tiny_sd2 = _tiny_fixture("sd2", "SD 2.x-shaped pipeline (v-prediction)")
tiny_sdxl = _tiny_fixture("sdxl", "SDXL pipeline (two text encoders, text_time conditioning)")
tiny_dino = _tiny_fixture("dino", "DINO ViT (transformers ViTModel + image processor)")
tiny_clip = _tiny_fixture("clip", "CLIP (transformers CLIPModel + processor with a character-level tokenizer)")
tiny_segformer = _tiny_fixture("segformer", "SegFormer with the 150 ADE20K labels (transformers model + processor)")


@pytest.fixture(autouse=True)
def fresh_accelerate():
    """Every test starts and ends with accelerate's process-wide state reset: a trainer run in-process builds
    its own Accelerator, and accelerate keeps state between them."""
    reset_accelerate()
    yield
    reset_accelerate()


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def dreambooth_dataset() -> Path:
    """The team's copy of the real DreamBooth dataset, beside the project; tests skip when absent."""
    if not (SHARED_DREAMBOOTH / "prompts_and_classes.txt").is_file():
        pytest.skip(f"DreamBooth dataset not found at {SHARED_DREAMBOOTH}")
    return SHARED_DREAMBOOTH


@pytest.fixture(scope="session")
def tiny_fid_features(tiny_root) -> Path:
    """Path of a tiny random image-feature extractor exported with torch.export (stands in for Inception)."""
    from delora_diffusion.models.tiny import ensure_tiny

    return ensure_tiny("fid_features", tiny_root) / "extractor.pt2"


@pytest.fixture(scope="session")
def toy_pipeline():
    """The shipped toy-world StableDiffusionPipeline, loaded as generate.py loads a checkpoint."""
    from delora_diffusion.inference import load_pipeline
    from delora_diffusion.world.assets import pretrained_path

    return load_pipeline(str(pretrained_path("sd")))


@pytest.fixture(scope="session")
def toy_judges():
    """The shipped toy-world DINO-style ViT and CLIP, loaded as delora-eval loads backbones."""
    from delora_diffusion.world.assets import pretrained_path
    from delora_diffusion.world.quality import Judges

    return Judges.load(str(pretrained_path("dino")), str(pretrained_path("clip")))


class RecordingApi:
    """What the trainer asks of ``huggingface_hub.HfApi``; ``whoami_error`` makes the token check fail."""

    calls: list[tuple[str, dict]] = []
    whoami_error: Exception | None = None

    def __init__(self, token=None):
        self.token = token

    def whoami(self):
        RecordingApi.calls.append(("whoami", {"token": self.token}))
        if RecordingApi.whoami_error is not None:
            raise RecordingApi.whoami_error
        return {"name": "someone"}

    def create_repo(self, repo_id, **options):
        RecordingApi.calls.append(("create_repo", {"repo_id": repo_id, **options}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **options):
        RecordingApi.calls.append(("upload_folder", options))


@pytest.fixture
def online_hub(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    RecordingApi.calls, RecordingApi.whoami_error = [], None
    reset_accelerate()
    yield RecordingApi
    reset_accelerate()
