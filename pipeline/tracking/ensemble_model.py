"""An ensemble as one model: its members' weights copied in, and a manifest naming each member
run and the config that rebuilds its networks; served as the mean of the members' probabilities.
Loaded like any logged model (``load_model``), so ``pipeline.predict`` serves an ensemble champion
as it is. Nothing in it is a pickle."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.common.errors import PipelineError
from pipeline.tracking.model_files import MANIFEST, pickled_files, read_manifest, refuse_pickle
from pipeline.tracking.models import download, upload

if TYPE_CHECKING:
    from pipeline.tracking.store import Store


def log_ensemble(run_id: str, member_uris: Sequence[str], classes: Sequence[str],
                 image_size: int, positive_class: str | None, store: Store) -> None:
    """The ensemble of ``member_uris`` as the run's model, in ``store``."""
    with tempfile.TemporaryDirectory() as tmp:
        members = []
        for i, uri in enumerate(member_uris):
            path = download(uri, Path(tmp) / f"member{i:02d}", store.uri)
            if not (path / MANIFEST).is_file() and pickled_files(path):
                raise refuse_pickle(uri, pickled_files(path))  # never copied into an ensemble
            manifest = read_manifest(path, uri)
            if [str(c) for c in manifest["classes"]] != list(classes):
                raise PipelineError(f"the ensemble's member {uri} predicts {manifest['classes']}, "
                                    f"not {list(classes)}")
            for j, entry in enumerate(manifest["members"]):
                members.append((path / entry["weights"], {
                    **entry, "weights": f"member{i:02d}_{j}.safetensors", "uri": uri}))

        def write(folder: Path) -> dict:
            for source, entry in members:
                shutil.copyfile(source, folder / entry["weights"])
            return {"kind": "ensemble", "classes": list(classes), "image_size": int(image_size),
                    "positive_class": positive_class, "members": [e for _, e in members]}

        upload(store, run_id, write)
