"""The on-disk cache of real-image embeddings: hit on the second run, identical numbers, keyed by protocol."""

from __future__ import annotations

from eval_helpers import draw, make_generated, make_real

from delora_diffusion.evaluation import DreamBoothEvalSettings, evaluate_dreambooth
from delora_diffusion.evaluation import dreambooth as dreambooth_module


def _run(tmp_path, tiny_dino, tiny_clip, **kwargs):
    return evaluate_dreambooth(
        DreamBoothEvalSettings(
            real_dir=tmp_path / "real",
            generated_dir=tmp_path / "gen",
            dino_model=str(tiny_dino),
            clip_model=str(tiny_clip),
            cache_dir=tmp_path / "cache",
            progress=False,
            **kwargs,
        )
    )


def _metrics(results):
    return [(row["subject"], row["dino"], row["clip_i"], row["clip_t"]) for row in results["per_subject"]]


def test_second_run_reads_real_embeddings_from_the_cache(tmp_path, tiny_dino, tiny_clip, monkeypatch):
    make_real(tmp_path / "real", {"dog": 3, "vase": 2})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 2})
    make_generated(tmp_path / "gen", "vase", "vase", {0: 1})
    first = _run(tmp_path, tiny_dino, tiny_clip)
    assert first["cache"]["dino_misses"] == first["cache"]["clip_i_misses"] == 5
    assert first["cache"]["dino_hits"] == 0

    real_root = (tmp_path / "real").resolve()
    original = dreambooth_module.load_rgb

    def load_generated_only(path):
        assert real_root not in path.resolve().parents, f"real image {path} decoded despite the cache"
        return original(path)

    monkeypatch.setattr(dreambooth_module, "load_rgb", load_generated_only)
    second = _run(tmp_path, tiny_dino, tiny_clip)
    assert second["cache"]["dino_hits"] == second["cache"]["clip_i_hits"] == 5
    assert second["cache"]["dino_misses"] == 0
    assert _metrics(second) == _metrics(first)  # float32 embeddings stored exactly: identical numbers
    assert second["pooled"] == first["pooled"]


def test_cache_key_covers_protocol_and_file_content(tmp_path, tiny_dino, tiny_clip):
    make_real(tmp_path / "real", {"dog": 2})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 1})
    _run(tmp_path, tiny_dino, tiny_clip)
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one key per role (DINO, CLIP image)
    other = _run(tmp_path, tiny_dino, tiny_clip, protocol="dreambooth")
    assert other["cache"]["dino_hits"] == 0 and len(list((tmp_path / "cache").iterdir())) == 4

    # a changed photo is a new content hash: recomputed, the unchanged one still hits
    photo = tmp_path / "real" / "dog" / "01.jpg"
    draw(999, (96, 80)).save(photo, quality=95)
    again = _run(tmp_path, tiny_dino, tiny_clip)
    assert (again["cache"]["dino_hits"], again["cache"]["dino_misses"]) == (1, 1)


def test_a_damaged_cache_entry_is_recomputed(tmp_path, tiny_dino, tiny_clip):
    make_real(tmp_path / "real", {"dog": 1})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 1})
    first = _run(tmp_path, tiny_dino, tiny_clip)
    for entry in (tmp_path / "cache").glob("*/*.safetensors"):
        entry.write_bytes(b"not a safetensors file")
    second = _run(tmp_path, tiny_dino, tiny_clip)
    assert second["cache"]["dino_misses"] == 1
    assert _metrics(second) == _metrics(first)
