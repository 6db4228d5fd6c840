"""`SayPipeline`: a person saying a text or an audio file, as one object holding typed components.

    from pipelines.say_pipeline import SayPipeline
    from avatar.config import SaySettings

    pipe = SayPipeline.from_person("demo", device="auto")
    result = pipe("Hello there", output="hello.mp4")                 # text -> mp4 + hello.json
    result = pipe(audio="speech.wav", output="out.mp4",
                  settings=SaySettings(head_motion="still"),
                  progress=lambda stage, done, total: print(stage, done, total))

Components (attributes; swap one with `dataclasses.replace(pipe, tts=Voice("de.onnx"))`):
    tts          avatar.audio.speech.Voice             text -> Speech (piper)
    audio2expr   avatar.types.Audio2Expr               Speech -> Expressions [T, 52] at the fps
    face_model   avatar.types.PersonFaceModel          Expressions -> meshes (the person's map)
    renderer     avatar.types.Renderer                 meshes + target frames -> composited
                                                       frames (re-render and paste: the
                                                       renderer is also the compositor)
    target       avatar.types.Target                   the video rendered into (track + poses)
    writer       type[avatar.video.writer.VideoWriter] frames + speech -> mp4 (watermark, tag)
    person       avatar.types.Person                   name, folder, config, file hashes

Stages, in order, each a function of typed records in its own subpackage: speech
(avatar.audio.speech), expressions (the audio2expr component), plan (avatar.render.clip.plan_clip:
target frames, avatar.expression.shaping weights and blinks, eyes), render + write
(avatar.render.clip.render_frames into the writer), side-car (avatar.io.provenance).

Progress: `progress(stage, done, total)` is called as stages start (done=0) and finish
(done=total), and after every rendered batch with stage "render" (done = frames so far).
Stages: "target" (only with settings.target_video), "tts" or "audio", "expressions", "plan",
"render", "write". The command line's progress bars and the web UI are both driven from it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from avatar.audio.speech import Voice, check_audio_file, speech_from_audio
from avatar.config import DEFAULT_DEVICE, SAY_DEFAULTS, SaySettings
from avatar.errors import AvatarError
from avatar.io.provenance import audio_record, folder_hashes, text_record, write_sidecar
from avatar.render.clip import Progress, plan_clip, render_frames, seed_everything
from avatar.types import (Audio2Expr, Expressions, Person, PersonFaceModel, Renderer, Speech,
                          Target)
from avatar.video.frames import TargetFrames
from avatar.video.timeline import check_start_frame
from avatar.video.writer import VideoWriter, frames_for_audio


@dataclass(frozen=True)
class VideoResult:
    path: Path
    sidecar: Path
    n_frames: int
    fps: float
    width: int
    height: int
    seconds: dict                     # wall time per stage
    duration_s: float = 0.0           # of the speech (0 without audio)


@dataclass
class SayPipeline:
    """A person saying things; see the module docstring for components, stages and progress."""
    person: Person
    tts: Voice
    audio2expr: Audio2Expr | None
    face_model: PersonFaceModel
    renderer: Renderer
    target: Target
    writer: Callable[..., VideoWriter] = VideoWriter
    models: dict = field(default_factory=dict)      # side-car: hashes of the model files used
    device: str = DEFAULT_DEVICE

    @classmethod
    def from_person(cls, name_or_path: str, device: str = DEFAULT_DEVICE,
                    audio2expr: str | Path | None = None, voice: str | Path | None = None
                    ) -> "SayPipeline":
        """Load a person (a name in $AVATAR_HOME/persons or the shipped ones, or a folder), the
        shared audio2expr network (`audio2expr`: a checkpoint folder, default the shipped one)
        and a voice (`voice`: a piper .onnx, default the bundled English one)."""
        from avatar.io.person import load_person
        tts = Voice(voice)                        # a bad voice file fails before any model loads
        person = load_person(name_or_path, device=device)
        folder = audio2expr_folder(audio2expr)
        return cls.of(person, audio2expr_model(str(folder), torch_device(device)), tts,
                      audio2expr_hashes(folder), device)

    @classmethod
    def of(cls, person: Person, audio2expr: Audio2Expr | None = None, tts: Voice | None = None,
           models: dict | None = None, device: str = DEFAULT_DEVICE) -> "SayPipeline":
        """A pipeline of a loaded person (audio2expr None: it can only `render` expressions)."""
        return cls(person, tts or Voice(), audio2expr, person.face_model, person.renderer,
                   person.target, models=models or {}, device=device)

    def __call__(self, text: str | None = None, *, audio: str | Path | None = None,
                 output: str | Path, settings: SaySettings = SAY_DEFAULTS,
                 target: Target | None = None, overwrite: bool = False,
                 progress: Progress | None = None, provenance: dict | None = None) -> VideoResult:
        """Text (spoken by `tts`) or an audio file -> `output` (.mp4) + its side-car .json.

        Exactly one of `text`, `audio`. `target`: another Target of the person (default: the
        settings' target_video tracked here, else the person's own). `provenance`: more keys for
        the side-car's input record. Raises AvatarError for a user mistake, before any model
        runs where it can be known then (inputs, settings, output path)."""
        if (text is None) == (audio is None):
            raise AvatarError("give either a text to speak or an audio file (exactly one of them)")
        settings = settings.checked()
        out = check_output_path(output, overwrite)
        spoken = self.tts.check(text) if text is not None else None
        if audio is not None:
            check_audio_file(audio)
        stages = Stages(progress)
        target = target or self.target_for(settings, stages)
        check_start_frame(target, settings)
        with stages.run("audio" if audio is not None else "tts"):
            speech = speech_from_audio(audio) if audio is not None else self.tts.speak(spoken)
        record = audio_record(audio, speech.duration_s) if audio is not None \
            else text_record(text, self.tts.model)
        fps = float(settings.fps or target.track.fps)
        with stages.run("expressions"):
            expressions = self.audio2expr.predict(speech, fps)
        return self.render(speech, expressions, out, settings, {**record, **(provenance or {})},
                           target=target, stages=stages)

    def target_for(self, settings: SaySettings, stages: "Stages | None" = None) -> Target:
        """The person's target, or settings.target_video tracked and aligned to the face model."""
        if not settings.target_video:
            return self.target
        from avatar.face.target import load_target
        stages = stages or Stages(None)
        with stages.run("target"):
            return load_target(self.face_model, settings.target_video, progress=False)

    def render(self, speech: Speech | None, expressions: Expressions, output: str | Path,
               settings: SaySettings, input_record: dict, *, target: Target | None = None,
               drive: str = "mouth", n_frames: int | None = None, command: str = "say",
               models: dict | None = None, stages: "Stages | None" = None) -> VideoResult:
        """Expressions on the target's frames -> output mp4 (with `speech`, or silent with
        `n_frames`) + side-car. drive="all" takes every channel from `expressions` (reenact)."""
        settings, target = settings.checked(), target or self.target
        stages = stages or Stages(None)
        fps = float(settings.fps or target.track.fps)
        n_frames = frames_for_audio(speech.duration_s, fps) if speech is not None else n_frames
        if not n_frames:
            raise ValueError("n_frames is required without speech")
        with stages.run("plan"):
            plan = plan_clip(expressions, target, settings, n_frames, drive)
        seed_everything(settings.seed)
        t0 = time.perf_counter()
        stages.report("render", 0, n_frames)
        with TargetFrames(target.path, (plan.width, plan.height), plan.indices) as frames, \
                self.writer(output, plan.width, plan.height, plan.fps, audio=speech,
                            metadata=self.metadata(command), watermark=settings.watermark,
                            n_frames=n_frames) as writer:
            timing = render_frames(plan, self.face_model, self.renderer, target, frames,
                                   writer.write, stages.report)
            stages.report("write", 0, 1)
            t = time.perf_counter()
        timing["encode"] += time.perf_counter() - t       # ffmpeg finishing after the last frame
        stages.report("write", 1, 1)
        stages.seconds.update(timing, video_total=time.perf_counter() - t0)
        self.write_sidecar(output, command, input_record, models, settings, target, plan, speech)
        return VideoResult(Path(output), Path(output).with_suffix(".json"), n_frames, plan.fps,
                           plan.width, plan.height,
                           {k: round(v, 3) for k, v in stages.seconds.items()},
                           speech.duration_s if speech is not None else 0.0)

    def metadata(self, command: str) -> dict:
        name = self.person.name
        return {"synthetic": "true", "person": name,
                "description": f"synthetic talking-head video of '{name}' (avatar-toolkit {command})"}

    def write_sidecar(self, output, command, input_record, models, settings, target, plan, speech):
        person = self.person
        write_sidecar(output, command=command, input_record=input_record,
                      person={"name": person.name, "files_sha256": person.hashes,
                              "config_version": person.config.get("format_version"),
                              "consent": person.config.get("consent")},
                      models=self.models if models is None else models,
                      settings={**asdict(settings), "target_video": str(target.path.name)},
                      output={"frames": plan.n_frames, "fps": plan.fps, "width": plan.width,
                              "height": plan.height, "duration_s": round(plan.n_frames / plan.fps, 4),
                              "watermark": settings.watermark, "audio": speech is not None})

    def with_voice(self, voice: str | Path | None) -> "SayPipeline":
        """The same pipeline speaking with another piper voice file (None: the bundled one)."""
        return dataclasses.replace(self, tts=Voice(voice))


class Stages:
    """Wall time per stage and the progress events of one call."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    @contextlib.contextmanager
    def run(self, stage: str):
        self.report(stage, 0, 1)
        t = time.perf_counter()
        yield
        self.seconds[stage] = time.perf_counter() - t
        self.report(stage, 1, 1)


def check_output_path(output: str | Path, overwrite: bool = False) -> Path:
    """The shared output policy (avatar/io/output.py): .mp4, not inside a person or checkpoint
    folder, replaces only files this toolkit made (unless overwrite), writable; stale temp
    files of killed runs removed."""
    from avatar.io.output import check_output
    return check_output(output, overwrite=overwrite)


def audio2expr_folder(folder: str | Path | None) -> Path:
    from avatar.expression import DEFAULT_DIR
    return Path(folder) if folder else DEFAULT_DIR


@functools.lru_cache(maxsize=2)
def audio2expr_model(folder: str, device: str = "cpu") -> Audio2Expr:
    """The shared network, loaded once per process and device."""
    from avatar.expression import load_audio2expr
    return load_audio2expr(folder, device=device)


def audio2expr_hashes(folder: Path) -> dict:
    """sha256 of the audio2expr checkpoint files used (for the side-car)."""
    return {"audio2expr": {"folder": folder.name, "files_sha256": folder_hashes(folder)}}


def torch_device(device: str) -> str:
    """"auto" decided ("cuda" when there is a GPU); AvatarError for an unknown device."""
    from avatar.render.renderer import pick_device
    return str(pick_device(device))
