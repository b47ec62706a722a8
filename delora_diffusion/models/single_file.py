"""Single-file checkpoints (one original-format ``.safetensors``, the way most practitioners hold models).

The family is read from the file's header (``families.single_file_kind``). Before first use the
file is converted once, with diffusers' ``from_single_file``, into a diffusers folder in the cache, which
every command then loads like any pipeline folder; the adapter still records the file as given. The
component configs come from ``--single_file_config`` (a diffusers folder or hub id describing the file) or,
for SD 1.x, SD 2.x and SDXL, from the configs this package builds offline (``single_file_configs.py``),
so loading needs no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .families import SDXL, ModelFamilyError, is_single_file, single_file_kind
from .single_file_configs import builtin_config

COMPLETE_MARKER = ".converted"


def cache_root() -> Path:
    """Where converted single files live: ``$DELORA_DIFFUSION_CACHE`` or ``~/.cache/delora-diffusion``."""
    return Path(os.environ.get("DELORA_DIFFUSION_CACHE", Path.home() / ".cache" / "delora-diffusion"))


def _fingerprint(path: Path, config: str | None) -> str:
    stat = path.stat()
    text = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, config])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve_base_model(name_or_path: str, config: str | None = None, log=print) -> str:
    """``name_or_path`` as it is, or, for a single-file checkpoint, the diffusers folder it converts to
    (converted on first use; ``config``: ``--single_file_config``). ``log`` says when a conversion runs."""
    if not is_single_file(name_or_path):
        return name_or_path
    path = Path(str(name_or_path)).expanduser()
    family, version = single_file_kind(path)
    target = cache_root() / "single_file" / f"{path.stem}-{_fingerprint(path, config)}"
    if (target / COMPLETE_MARKER).exists():
        return str(target)
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.loaders.single_file_utils import SingleFileComponentError  # a component's weights missing

    source = config or str(builtin_config(version, cache_root()))
    log(
        f"converting the single-file checkpoint {path} ({version}) to a diffusers folder in {target} (once; "
        f"configs from {source})"
    )
    pipeline_class = StableDiffusionXLPipeline if family == SDXL else StableDiffusionPipeline
    try:
        pipeline = pipeline_class.from_single_file(str(path), config=source, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFamilyError(
            f"{path} could not be converted with the configs of {source} ({reason}); if the file "
            "has another architecture, give --single_file_config a diffusers folder or hub id "
            "that describes it"
        ) from exc
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipeline.save_pretrained(tmp)
    (tmp / COMPLETE_MARKER).write_text(f"converted from {path}\n")
    if (target / COMPLETE_MARKER).exists():  # another process finished first (and may be reading it): keep its
        shutil.rmtree(tmp, ignore_errors=True)
        return str(target)
    shutil.rmtree(target, ignore_errors=True)  # an interrupted conversion's remains
    os.replace(tmp, target)
    return str(target)
