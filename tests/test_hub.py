"""--push_to_hub: stops before any work when the hub cannot serve the upload, uploads the output folder at the
end (checkpoints and class images left out), and keeps the token out of everything the run writes.

The hub cannot be reached here: the upload is exercised against a recording stand-in for ``HfApi``, through
the trainer's real command and huggingface_hub's own file filter."""

from __future__ import annotations

import random
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import HfHubHTTPError

from delora_diffusion.training.dreambooth import main
from delora_diffusion.training.hub import UPLOAD_IGNORE, upload_files
from delora_diffusion.world.objects import sample_instance
from delora_diffusion.world.views import write_views

REPO = Path(__file__).resolve().parents[1]
SECRET = "hf_secretTOKEN123"


class Rejected(HfHubHTTPError):
    """The error whoami raises for a bad token (built without an HTTP response)."""

    def __init__(self) -> None:
        Exception.__init__(self, "401 Client Error: Unauthorized for url: https://huggingface.co/api/whoami-v2")


def _flags(out: Path, tiny_sd: Path, class_dir: Path, *extra: str) -> list[str]:
    return [
        "--pretrained_model_name_or_path",
        str(tiny_sd),
        "--instance_data_dir",
        str(REPO / "subjects" / "robot"),
        "--instance_prompt",
        "a photo of sks toy",
        "--resolution",
        "32",
        "--center_crop",
        "--rank",
        "2",
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "1",
        "--validation_steps",
        "0",
        "--validation_prompt",
        "a sks toy",
        "--num_validation_images",
        "1",
        "--validation_inference_steps",
        "2",
        "--with_prior_preservation",
        "--class_prompt",
        "a photo of a toy",
        "--class_data_dir",
        str(class_dir),
        "--num_class_images",
        "2",
        "--report_to",
        "tensorboard",
        "--output_dir",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("class_images")
    write_views(sample_instance("toy", random.Random(1)), folder, name="c")
    return folder


def test_offline_stops_before_any_work(tmp_path, tiny_sd, class_dir, capsys):
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # the suite runs with HF_HUB_OFFLINE=1
    out = tmp_path / "run"
    assert main(_flags(out, tiny_sd, class_dir, "--push_to_hub")) == 2
    err = capsys.readouterr().err
    assert "--push_to_hub" in err and "offline" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing loaded, nothing written


@pytest.mark.parametrize(
    "error,says",
    [
        (Rejected(), "rejected the token"),
        (ConnectionError("Name or service not known"), "cannot be reached"),
    ],
)
def test_bad_token_or_network_stops_before_any_work(tmp_path, tiny_sd, class_dir, online_hub, capsys, error, says):
    online_hub.whoami_error = error
    out = tmp_path / "run"
    assert main(_flags(out, tiny_sd, class_dir, "--push_to_hub", "--hub_token", SECRET)) == 2
    assert says in capsys.readouterr().err
    assert not out.exists()


def test_no_token_stops_before_any_work(tmp_path, tiny_sd, class_dir, online_hub, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(_flags(tmp_path / "run", tiny_sd, class_dir, "--push_to_hub")) == 2
    assert "needs a Hugging Face token" in capsys.readouterr().err


def test_hub_flags_need_push_to_hub(tmp_path, tiny_sd, class_dir, capsys):
    with pytest.raises(SystemExit) as stop:
        main(_flags(tmp_path / "run", tiny_sd, class_dir, "--hub_model_id", "me/x"))
    assert stop.value.code == 2 and "--hub_model_id is used by --push_to_hub" in capsys.readouterr().err


def test_push_uploads_the_outputs_without_checkpoints_or_token(tmp_path, tiny_sd, class_dir, online_hub, capsys):
    out = tmp_path / "robot-delora"
    assert main(_flags(out, tiny_sd, class_dir, "--push_to_hub", f"--hub_token={SECRET}")) == 0
    names = [name for name, _ in online_hub.calls]
    assert names == ["whoami", "create_repo", "upload_folder"]  # the check came first, the upload last
    create, upload = online_hub.calls[1][1], online_hub.calls[2][1]
    assert create["repo_id"] == upload["repo_id"] == "someone/robot-delora"  # default: the output folder's name
    assert Path(upload["folder_path"]) == out and upload["ignore_patterns"] == UPLOAD_IGNORE
    assert "https://huggingface.co/someone/robot-delora" in capsys.readouterr().out

    uploaded = upload_files(out)
    assert {"adapter.safetensors", "pytorch_lora_weights.safetensors", "README.md", "training_args.json"} <= set(
        uploaded
    )
    assert any(name.startswith("logs/") for name in uploaded)  # TensorBoard curves show on the hub
    assert any(name.endswith(".png") for name in uploaded)  # the validation grid the card's widget shows
    assert (out / "checkpoint-1").is_dir()  # there was something to leave out
    assert not [n for n in uploaded if n.startswith(("checkpoint-", "class_images/")) or "/." in f"/{n}"]
    for path in out.rglob("*"):  # the token is nowhere in what the run wrote, uploaded or not
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_upload_files_leaves_out_checkpoints_class_images_and_temporaries(tmp_path):
    for name in (
        "adapter.safetensors",
        "README.md",
        "logs/dreambooth/events.out",
        "validation/step-2.png",
        "checkpoint-5/adapter.safetensors",
        "class_images/c-0.png",
        ".adapter.safetensors.123.tmp",
        "validation/.x.tmp.png",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert upload_files(tmp_path) == [
        "README.md",
        "adapter.safetensors",
        "logs/dreambooth/events.out",
        "validation/step-2.png",
    ]
