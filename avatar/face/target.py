"""Another clip of a person's setting as a render target: tracked and aligned to the face model."""
from __future__ import annotations

from pathlib import Path

from avatar.errors import AvatarError
from avatar.types import PersonFaceModel, Target


def load_target(face_model: PersonFaceModel, video: str | Path, progress: bool = True) -> Target:
    """Track `video` (cached) and place the person's face model on its frames."""
    from avatar.face.model import align_track
    from avatar.face.tracker import track_video
    from avatar.video.probe import check_input_file

    path = check_input_file(video, "target video")
    track = track_video(path, progress=progress)
    if track.found.mean() < 0.5:
        raise AvatarError(f"target video {path}: a face was found in only "
                          f"{100 * track.found.mean():.0f} % of frames; give a clip that shows the "
                          "person's face throughout")
    return Target(path, track, align_track(track, face_model))
