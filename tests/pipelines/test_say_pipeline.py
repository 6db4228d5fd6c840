"""SayPipeline: typed components, stages in order, progress events, same clip as the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest

import cli
from avatar.config import SaySettings
from avatar.errors import AvatarError
from avatar.types import Expressions
from avatar.video.reader import VideoReader
from pipelines.say_pipeline import SayPipeline
from tests.pipelines.test_say import speech_wav
from tests.pipelines.tiny_person import make_tiny_audio2expr, make_tiny_person


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    return make_tiny_person(root / "tiny"), make_tiny_audio2expr(root / "a2e")


@pytest.fixture(scope="module")
def pipe(models):
    person, a2e = models
    return SayPipeline.from_person(str(person), device="cpu", audio2expr=str(a2e))


def test_components_are_typed(pipe, models):
    from avatar.audio.speech import Voice
    from avatar.render.renderer import FaceRenderer
    from avatar.types import Audio2Expr, Renderer
    assert isinstance(pipe.tts, Voice) and pipe.tts.model is None
    assert isinstance(pipe.renderer, FaceRenderer) and pipe.renderer is pipe.person.renderer
    assert pipe.face_model is pipe.person.face_model and pipe.target is pipe.person.target
    assert callable(getattr(pipe.audio2expr, "predict")) and Audio2Expr and Renderer
    assert pipe.person.folder == models[0]
    assert set(pipe.models["audio2expr"]["files_sha256"]) == {"config.json", "model.safetensors"}


def test_call_runs_the_stages_in_order_and_reports_progress(pipe, tmp_path):
    events = []
    wav = speech_wav(tmp_path / "s.wav", 1.9)
    result = pipe(audio=wav, output=tmp_path / "a.mp4", settings=SaySettings(batch_size=4),
                  progress=lambda stage, done, total: events.append((stage, done, total)))
    stages = list(dict.fromkeys(stage for stage, _, _ in events))
    assert stages == ["audio", "features", "expressions", "plan", "render", "write"]
    render = [(done, total) for stage, done, total in events if stage == "render"]
    assert render[0] == (0, 19) and render[-1] == (19, 19)
    assert [d for d, _ in render] == sorted(d for d, _ in render) and len(render) == 1 + 6
    assert render[1] == (2, 19)                     # a short first batch: the first frame sooner
    for stage in stages:                                    # every stage starts and finishes
        mine = [(d, t) for s, d, t in events if s == stage]
        assert mine[0][0] == 0 and mine[-1][0] == mine[-1][1]
    assert result.n_frames == 19 and result.duration_s == pytest.approx(1.9, abs=0.01)
    assert result.path.is_file() and json.loads(result.sidecar.read_text())["synthetic"] is True
    assert {"audio", "features", "expressions", "render", "encode", "first_frame"} <= set(result.seconds)
    assert 0 < result.seconds["first_frame"] < result.seconds["video_total"] + result.seconds["audio"] + 60


def test_pipeline_and_command_line_make_the_same_frames(pipe, models, tmp_path):
    wav = speech_wav(tmp_path / "s.wav", 1.2)
    pipe(audio=wav, output=tmp_path / "p.mp4")
    person, a2e = models
    assert cli.main(["say", "--audio", str(wav), "--person", str(person), "--audio2expr", str(a2e),
                     "--device", "cpu", "-o", str(tmp_path / "c.mp4"), "--quiet"]) == 0
    a, b = VideoReader(tmp_path / "p.mp4").read_all(), VideoReader(tmp_path / "c.mp4").read_all()
    assert a.shape == b.shape and np.array_equal(a, b)


def test_user_mistakes_are_refused_before_work(pipe, tmp_path):
    def never(*a, **k):
        raise AssertionError("a stage ran")
    with pytest.raises(AvatarError, match="exactly one"):
        pipe("Hello", audio=tmp_path / "s.wav", output=tmp_path / "x.mp4", progress=never)
    with pytest.raises(AvatarError, match="exactly one"):
        pipe(output=tmp_path / "x.mp4", progress=never)
    with pytest.raises(AvatarError, match="must end in .mp4"):
        pipe("Hello", output=tmp_path / "x.avi", progress=never)
    with pytest.raises(AvatarError, match="fps"):
        pipe("Hello", output=tmp_path / "x.mp4", settings=SaySettings(fps=1000), progress=never)
    with pytest.raises(AvatarError, match="English voice cannot speak"):
        pipe("Привет", output=tmp_path / "x.mp4", progress=never)
    (tmp_path / "mine.mp4").write_bytes(b"not ours")
    with pytest.raises(AvatarError, match="not made by this toolkit"):
        pipe("Hello", output=tmp_path / "mine.mp4", progress=never)
    assert (tmp_path / "mine.mp4").read_bytes() == b"not ours"


def test_the_short_first_batch_changes_no_frame(pipe, tmp_path, monkeypatch):
    import avatar.render.clip as clip
    assert clip.batch_starts(19, 4) == [0, 2, 6, 10, 14, 18] and clip.batch_starts(1, 8) == [0]
    assert clip.batch_starts(0, 8) == [] and clip.batch_starts(5, 1) == [0, 1, 2, 3, 4]
    wav = speech_wav(tmp_path / "s.wav", 1.0)
    settings = SaySettings(batch_size=4)
    pipe(audio=wav, output=tmp_path / "short.mp4", settings=settings)
    monkeypatch.setattr(clip, "FIRST_BATCH", 4)
    pipe(audio=wav, output=tmp_path / "even.mp4", settings=settings)
    a, b = VideoReader(tmp_path / "short.mp4").read_all(), VideoReader(tmp_path / "even.mp4").read_all()
    assert a.shape == b.shape and np.array_equal(a, b)


def test_render_takes_expressions_without_audio(pipe, tmp_path):
    """reenact's path: expressions for every channel, a silent clip of n frames."""
    weights = np.zeros((7, 52), np.float32)
    weights[:, 25] = np.linspace(0, 1, 7)                       # jawOpen
    result = pipe.render(None, Expressions(weights, 10.0), tmp_path / "r.mp4", SaySettings(),
                         {"kind": "test"}, drive="all", n_frames=7, command="reenact")
    meta = json.loads(result.sidecar.read_text())
    assert result.n_frames == 7 and meta["command"] == "reenact" and meta["output"]["audio"] is False
    with pytest.raises(ValueError, match="n_frames"):
        pipe.render(None, Expressions(weights, 10.0), tmp_path / "s.mp4", SaySettings(), {})


def test_command_start_imports_no_renderer(models):
    """The say command's checks and its first progress bar need neither torch nor numba: they
    are imported while the "load" bar runs (a fresh interpreter, as `cli.py say` starts)."""
    import subprocess
    import sys
    person, a2e = models
    code = ("import json, sys, cli; from pipelines import say\n"
            "from pipelines.say_pipeline import SayPipeline\n"
            "heavy = lambda: sorted(m for m in ('torch', 'numba', 'onnxruntime', 'piper') if m in sys.modules)\n"
            "seen = [heavy()]\n"
            "SayPipeline.from_person(sys.argv[1], device='cpu', audio2expr=sys.argv[2], load_voice=True,\n"
            "    progress=lambda *event: seen.append(heavy()))\n"
            "print(json.dumps(seen))")
    out = subprocess.run([sys.executable, "-c", code, str(person), str(a2e)], capture_output=True,
                         text=True, check=True)
    seen = json.loads(out.stdout)
    assert seen[0] == [] and seen[1] == []              # imported, then the first load event
    assert {"torch", "onnxruntime"} <= set(seen[-1])    # ... and only then the models


def test_load_progress_comes_before_each_model(models):
    person, a2e = models
    events = []
    SayPipeline.from_person(str(person), device="cpu", audio2expr=str(a2e), load_voice=True,
                            progress=lambda stage, done, total: events.append((stage, done, total)))
    assert events[0] == ("load", 0, 3) and events[-1] == ("load", 3, 3)
    assert [d for _, d, _ in events] == sorted(d for _, d, _ in events) and len(events) >= 4


def test_a_failure_after_the_early_open_leaves_no_file(pipe, tmp_path, monkeypatch):
    """The writer opens while the expressions are computed: if they fail, nothing is left."""
    def broken(*args, **kwargs):
        raise RuntimeError("expressions failed")
    monkeypatch.setattr(pipe, "expressions", broken)
    wav = speech_wav(tmp_path / "s.wav", 1.0)
    out = tmp_path / "clips"
    out.mkdir()
    with pytest.raises(RuntimeError, match="expressions failed"):
        pipe(audio=wav, output=out / "x.mp4")
    assert sorted(p.name for p in out.iterdir()) == []


def test_the_renderer_warms_up_in_the_background_and_render_waits(models, tmp_path):
    person, a2e = models
    pipe = SayPipeline.from_person(str(person), device="cpu", audio2expr=str(a2e))
    assert pipe.warming is not None
    pipe.wait_warm()
    assert pipe.warming is None
    from concurrent.futures import Future
    broken = Future()
    broken.set_exception(RuntimeError("warm-up failed"))
    pipe.warming = broken                                  # its failure surfaces at render time
    with pytest.raises(RuntimeError, match="warm-up failed"):
        pipe(audio=speech_wav(tmp_path / "s.wav", 0.5), output=tmp_path / "w.mp4")
    assert not (tmp_path / "w.mp4").exists()
