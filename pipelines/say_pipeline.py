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
(done=total), after every spoken sentence with stage "tts" (done = sentences so far) and after
every rendered batch with stage "render" (done = frames so far). Stages: "load" (from_person:
voice, person, audio2expr), "target" (only with settings.target_video), "tts" or "audio",
"features" and "expressions" (one "expressions" for an Audio2Expr without predict_features),
"plan", "render", "write". The command line's progress bars and the web UI are both driven
from it.

Reproducible: the same inputs, settings (seed included) and models give the same frame count
and frames (piper's noise is seeded, avatar.audio.tts); the side-car records them, with the
device, the renderer's runtime and the library versions. `stream=True` writes a fragmented mp4
playable while it is written (avatar.video.writer); VideoResult.seconds["first_frame"] is the
time from the call to the first frame handed to the encoder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from avatar.audio.speech import Voice, check_audio_file, speech_from_audio
from avatar.background import in_background
from avatar.audio.tts import split_sentences
from avatar.config import DEFAULT_DEVICE, SAY_DEFAULTS, SaySettings
from avatar.errors import AvatarError
from avatar.io.provenance import audio_record, folder_hashes, text_record, write_sidecar
from avatar.types import (Audio2Expr, Expressions, Person, PersonFaceModel, Renderer, Speech,
                          Target)
from avatar.video.frames import TargetFrames
from avatar.video.timeline import check_start_frame, frame_indices, output_geometry
from avatar.video.writer import VideoWriter, frames_for_audio

if TYPE_CHECKING:           # the renderer (torch, numba) is imported when a clip is rendered,
    from avatar.render.clip import Progress      # so the first progress bar comes at once


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
    warming: Future | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_person(cls, name_or_path: str, device: str = DEFAULT_DEVICE,
                    audio2expr: str | Path | None = None, voice: str | Path | None = None,
                    load_voice: bool = False, progress: Progress | None = None) -> "SayPipeline":
        """Load a person (a name in $AVATAR_HOME/persons or the shipped ones, or a folder), the
        shared audio2expr network (`audio2expr`: a checkpoint folder, default the shipped one)
        and a voice (`voice`: a piper .onnx, default the bundled English one; `load_voice`: its
        model now rather than at the first text). progress("load", done, total) per model."""
        tts = Voice(voice)                        # a bad voice file fails before any model loads
        warm = []                                 # its feature models load beside the person

        def shared_model():
            model = audio2expr_model(str(audio2expr_folder(audio2expr)), torch_device(device))
            warm.append(in_background(warm_up, model, name="avatar-warm"))
            return model
        steps = [tts.load] if load_voice else []
        steps += [shared_model, lambda: load_person_lazily(name_or_path, device)]
        loaded = Stages(progress).steps("load", steps)
        for done in warm:
            done.result()
        pipe = cls.of(loaded[-1], loaded[-2], tts, audio2expr_hashes(audio2expr_folder(audio2expr)),
                      device)
        pipe.warming = in_background(warm_renderer, pipe.person, name="avatar-warm")   # waited for before rendering
        return pipe

    @classmethod
    def of(cls, person: Person, audio2expr: Audio2Expr | None = None, tts: Voice | None = None,
           models: dict | None = None, device: str = DEFAULT_DEVICE) -> "SayPipeline":
        """A pipeline of a loaded person (audio2expr None: it can only `render` expressions)."""
        return cls(person, tts or Voice(), audio2expr, person.face_model, person.renderer,
                   person.target, models=models or {}, device=device)

    def __call__(self, text: str | None = None, *, audio: str | Path | None = None,
                 output: str | Path, settings: SaySettings = SAY_DEFAULTS,
                 target: Target | None = None, overwrite: bool = False,
                 progress: Progress | None = None, provenance: dict | None = None,
                 stream: bool = False) -> VideoResult:
        """Text (spoken by `tts`) or an audio file -> `output` (.mp4) + its side-car .json.

        Exactly one of `text`, `audio`. `target`: another Target of the person (default: the
        settings' target_video tracked here, else the person's own). `provenance`: more keys for
        the side-car's input record. `stream`: a fragmented mp4 written in place, playable while
        it grows. Raises AvatarError for a user mistake, before any model runs where it can be
        known then (inputs, settings, output path)."""
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
        speech = self.speech(spoken, audio, settings.seed, stages)
        record = audio_record(audio, speech.duration_s) if audio is not None \
            else {**text_record(text, self.tts.model), "tts": tts_record(settings.seed)}
        fps = float(settings.fps or target.track.fps)
        opened = self.open_clip(out, speech, settings, target, frames_for_audio(speech.duration_s, fps),
                                "say", stream)      # ffmpeg starts, first frames decode meanwhile
        try:
            expressions = self.expressions(speech, fps, stages)
        except BaseException as e:
            opened.__exit__(type(e), e, e.__traceback__)
            raise
        return self.render(speech, expressions, out, settings, {**record, **(provenance or {})},
                           target=target, stages=stages, stream=stream, opened=opened)

    def speech(self, text: str | None, audio: str | Path | None, seed: int,
               stages: "Stages") -> Speech:
        """The recording, or `text` spoken by the voice with piper's noise from `seed`."""
        if audio is not None:
            with stages.run("audio"):
                return speech_from_audio(audio)
        sentences = max(1, len(split_sentences(text)))
        with stages.run("tts", sentences):
            return self.tts.speak(text, seed, lambda done, total: stages.report("tts", done, total))

    def expressions(self, speech: Speech, fps: float, stages: "Stages") -> Expressions:
        """audio2expr on the speech: features and network as two stages where the model has
        them apart (the checkpoint's Audio2Expression: the same result as its predict)."""
        model = self.audio2expr
        if not hasattr(model, "predict_features"):
            with stages.run("expressions"):
                return model.predict(speech, fps)
        from avatar.audio.features import n_video_frames, speech_features
        with stages.run("features"):
            feats = speech_features(speech, model.feature_kind)
        with stages.run("expressions"):
            return model.predict_features(feats, fps, n_video_frames(speech.duration_s, fps),
                                          model.phones_for(speech), model.closure_phones_for(speech))

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
               models: dict | None = None, stages: "Stages | None" = None,
               stream: bool = False, opened: "OpenedClip | None" = None) -> VideoResult:
        """Expressions on the target's frames -> output mp4 (with `speech`, or silent with
        `n_frames`) + side-car. drive="all" takes every channel from `expressions` (reenact);
        stream: a fragmented mp4 written in place; opened: this clip's open_clip(), which
        render closes."""
        from avatar.render.clip import plan_clip, render_frames, seed_everything
        settings, target = settings.checked(), target or self.target
        stages = stages or Stages(None)
        fps = float(settings.fps or target.track.fps)
        n_frames = frames_for_audio(speech.duration_s, fps) if speech is not None else n_frames
        if not n_frames:
            raise ValueError("n_frames is required without speech")
        with opened or self.open_clip(output, speech, settings, target, n_frames, command,
                                      stream) as clip:
            with stages.run("plan"):
                plan = plan_clip(expressions, target, settings, n_frames, drive)
            self.wait_warm()
            seed_everything(settings.seed)
            t0 = time.perf_counter()
            stages.report("render", 0, n_frames)
            timing = render_frames(plan, self.face_model, self.renderer, target, clip.frames,
                                   clip.writer.write, stages.report)
            stages.report("write", 0, 1)
            t = time.perf_counter()
        timing["encode"] += time.perf_counter() - t       # ffmpeg finishing after the last frame
        stages.report("write", 1, 1)
        stages.seconds.update(timing, video_total=time.perf_counter() - t0)
        if getattr(clip.writer, "first_frame_at", None) is not None:
            stages.seconds["first_frame"] = clip.writer.first_frame_at - stages.started
        self.write_sidecar(output, command, input_record, models, settings, target, plan, speech)
        return VideoResult(Path(output), Path(output).with_suffix(".json"), n_frames, plan.fps,
                           plan.width, plan.height,
                           {k: round(v, 3) for k, v in stages.seconds.items()},
                           speech.duration_s if speech is not None else 0.0)

    def open_clip(self, output: str | Path, speech: Speech | None, settings: SaySettings,
                  target: Target, n_frames: int, command: str, stream: bool) -> "OpenedClip":
        """The clip's target frames (its first batch decoding in the background) and its
        writer (ffmpeg started), before the expressions exist; the same frames and file as
        opening them at render time."""
        from avatar.render.clip import first_batch
        width, height, _ = output_geometry(target, settings)
        fps = float(settings.fps or target.track.fps)
        indices = frame_indices(target, settings, fps, n_frames)
        frames = TargetFrames(target.path, (width, height), indices)
        try:
            frames.prefetch(indices[:first_batch(n_frames, int(settings.batch_size))])
            writer = self.writer(output, width, height, fps, audio=speech, metadata=self.metadata(command),
                                 watermark=settings.watermark, n_frames=n_frames,
                                 **({"stream": True} if stream else {}))
            writer.__enter__()
        except BaseException:
            frames.close()
            raise
        return OpenedClip(frames, writer)

    def wait_warm(self) -> None:
        """Wait for the renderer's warm-up started by from_person (its error, if any, is raised)."""
        warming, self.warming = self.warming, None
        if warming is not None:
            warming.result()

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
                      settings={**asdict(settings), "target_video": str(target.path.name),
                                "runtime": self.runtime_record()},
                      output={"frames": plan.n_frames, "fps": plan.fps, "width": plan.width,
                              "height": plan.height, "duration_s": round(plan.n_frames / plan.fps, 4),
                              "watermark": settings.watermark, "audio": speech is not None,
                              **audio_output(speech)})

    def runtime_record(self) -> dict:
        """Where and with what the networks ran (frames can differ between renderer runtimes:
        bf16 OpenVINO where the CPU has it, fp32 elsewhere)."""
        renderer = self.renderer
        return {"device": self.device, "renderer_runtime": getattr(renderer, "runtime", None),
                "renderer_workers": getattr(renderer, "workers", None), "versions": versions()}

    def with_voice(self, voice: str | Path | None) -> "SayPipeline":
        """The same pipeline speaking with another piper voice file (None: the bundled one)."""
        return dataclasses.replace(self, tts=Voice(voice))


@dataclass
class OpenedClip:
    """A clip's open target frames and writer; leaving it closes both (the writer finishes
    the file, or removes it when an exception is passed)."""
    frames: TargetFrames
    writer: VideoWriter

    def __enter__(self) -> "OpenedClip":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.writer.__exit__(exc_type, exc, tb)
        finally:
            self.frames.close()
        return False


class Stages:
    """Wall time per stage and the progress events of one call."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    @contextlib.contextmanager
    def run(self, stage: str, total: int = 1):
        self.report(stage, 0, total)
        t = time.perf_counter()
        yield
        self.seconds[stage] = time.perf_counter() - t
        self.report(stage, total, total)

    def steps(self, stage: str, steps: list[Callable]) -> list:
        """Run `steps` in turn as one stage, reporting after each; their results."""
        results = []
        with self.run(stage, len(steps)):
            for step in steps:
                results.append(step())
                self.report(stage, len(results), len(steps))
        return results


def tts_record(seed: int) -> dict:
    """How the text was spoken, beyond the voice: where piper's noise came from."""
    return {"seed": int(seed), "noise": "numpy normal per sentence (avatar.audio.tts)"}


def audio_output(speech: Speech | None) -> dict:
    """The output's sound: rate and AAC bit rate (empty without speech)."""
    if speech is None:
        return {}
    from avatar.video.writer import AUDIO_BITRATE
    return {"audio_rate_hz": speech.for_playback()[1], "audio_codec": "aac",
            "audio_bitrate": AUDIO_BITRATE}


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    """Versions of the packages whose numbers shape the output."""
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for name in ("avatar-toolkit", "numpy", "torch", "openvino", "onnxruntime", "piper-tts",
                 "numba", "soxr", "imageio-ffmpeg"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def check_output_path(output: str | Path, overwrite: bool = False) -> Path:
    """The shared output policy (avatar/io/output.py): .mp4, not inside a person or checkpoint
    folder, replaces only files this toolkit made (unless overwrite), writable; stale temp
    files of killed runs removed."""
    from avatar.io.output import check_output
    return check_output(output, overwrite=overwrite)


def warm_up(model: Audio2Expr) -> None:
    """What the first clip would otherwise wait for: ffmpeg's path (checked by running it), the
    networks of the model's speech features and its first prediction (a second of a faint tone:
    PyTorch's and the phone recognizers' first calls)."""
    import numpy as np
    from avatar.audio.features import load_models
    from avatar.video.probe import ffmpeg_exe
    ffmpeg_exe()
    load_models(getattr(model, "feature_kind", ""))
    tone = 0.01 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
    model.predict(Speech(tone, 16000), 25.0)


def warm_renderer(person: Person) -> None:
    """The renderer's first call (compiled graphs' first run, worker threads) on two frames of
    the target's own poses over black frames, so the clip's first batch does not pay it."""
    import numpy as np
    from avatar.render.clip import FIRST_BATCH, posed_meshes
    target, idx = person.target, np.arange(min(FIRST_BATCH, len(person.target)))
    width, height = target.track.frame_size
    meshes, boxes = posed_meshes(person.face_model, target, target.track.blendshapes[idx], idx,
                                 1.0, target.track.fps)
    person.renderer.render(meshes, np.zeros((len(idx), height, width, 3), np.uint8), boxes,
                           frame_meshes=meshes)


def load_person_lazily(name_or_path: str, device: str) -> Person:
    """avatar.render.person.load_person, imported only now (torch, numba: seconds), so that the
    "load" bar is on screen while it happens."""
    from avatar.render.person import load_person
    return load_person(name_or_path, device=device)


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
