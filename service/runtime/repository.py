"""Which model directories a server serves: the default model (`VAE_MODEL_DIR`) first, then
every model directory of a repository (`VAE_MODEL_REPOSITORY`), each once, names unique."""

from __future__ import annotations

from pathlib import Path

from service.runtime.errors import ModelLoadError
from vae_manifest import MANIFEST_FILENAME, ManifestError, load_manifest


def model_dirs(default: Path, repository: Path | None) -> list[Path]:
    """The default model's directory, then the repository's model directories by name; a
    directory given twice (the default inside the repository) is served once."""
    dirs = [default]
    if repository is not None:
        if not repository.is_dir():
            raise ModelLoadError(f"{repository}: the model repository is not a directory")
        found = sorted(d for d in repository.iterdir() if (d / MANIFEST_FILENAME).is_file())
        if not found:
            raise ModelLoadError(f"{repository}: no model directory (none holds model.json)")
        resolved = {default.resolve()}
        for directory in found:
            if directory.resolve() not in resolved:
                resolved.add(directory.resolve())
                dirs.append(directory)
    return dirs


def check_unique_names(dirs: list[Path]) -> None:
    """Two directories declaring the same model name are refused, naming both."""
    seen: dict[str, Path] = {}
    for directory in dirs:
        try:
            name = load_manifest(directory, verify=False).name
        except ManifestError as exc:
            raise ModelLoadError(str(exc)) from None
        if name in seen:
            raise ModelLoadError(
                f"{directory}: model name {name!r} is already served from {seen[name]}"
            )
        seen[name] = directory
