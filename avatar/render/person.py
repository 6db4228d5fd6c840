"""A person folder loaded for rendering: its face model, its target video's track and poses, and
its renderer (the files as avatar.io.person names and checks them)."""
from __future__ import annotations

from avatar.config import DEFAULT_DEVICE
from avatar.errors import AvatarError
from avatar.io import person as person_io
from avatar.render.renderer import FaceRenderer
from avatar.types import Person, Target


def load_person(name_or_path: str, device: str = DEFAULT_DEVICE) -> Person:
    """Load a person folder once (face model, target track + poses, renderer) and check it:
    person.json against its schema, status complete, every file against its recorded sha256."""
    folder, config, hashes = person_io.load_complete(name_or_path)
    face_model = person_io.load_face_model(folder / person_io.FACE_MODEL)
    track, poses = person_io.load_track(folder / person_io.TRACK)
    if poses is None:
        raise AvatarError(f"person {folder.name}: its track has no head poses; re-run train-person")
    renderer = FaceRenderer.from_file(folder / person_io.RENDERER, device=device)
    return Person(folder.name, folder, config, face_model,
                  Target(folder / person_io.TARGET, track, poses), renderer, hashes)
