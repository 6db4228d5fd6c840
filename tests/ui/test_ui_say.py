"""The say tab's requests without a browser: the command's parser and checks, its messages, and
the same SayPipeline (per-stage progress events, output in a request folder of its own)."""
import json

import pytest

from avatar.errors import AvatarError
from pipelines import ui_say
from tests.pipelines.test_say import speech_wav


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    from tests.pipelines.tiny_person import make_tiny_audio2expr, make_tiny_person
    make_tiny_person(tmp_path_factory.getbasetemp() / "avatar-home" / "persons" / "tinys")
    a2e = make_tiny_audio2expr(tmp_path_factory.mktemp("ui-say") / "a2e")
    return ui_say.ServerOptions(device="cpu", audio2expr=str(a2e))


def request(**kw):
    return ui_say.SayRequest(**{"person": "tinys", **kw})


@pytest.mark.parametrize("kw, message", [
    ({"text": ""}, "^the text to speak is empty; give at least one word$"),
    ({"text": "   "}, "^the text to speak is empty"),
    ({"text": "😀🎉"}, "no words to speak"),
    ({"text": "x" * 6000}, "at most 5000"),
    ({"text": "Hi", "person": "../tinys"}, "not one of the persons this page offers"),
    ({"text": "Hi", "voice": "/etc/passwd"}, "is not installed"),
    ({"text": "Hi", "expression_scale": 9.0}, "expression scale 9(.0)? is out of range"),
    ({"text": "Hi", "head_motion": "wobble"}, "invalid choice: 'wobble'"),
])
def test_mistakes_get_the_commands_one_line_message(options, kw, message):
    with pytest.raises(AvatarError, match=message):
        ui_say.prepare(request(**kw), options)


def test_text_and_audio_together_is_the_commands_error(options, tmp_path):
    wav = speech_wav(tmp_path / "s.wav", 1.0)
    with pytest.raises(AvatarError, match="exactly one of them"):
        ui_say.prepare(request(text="Hello", audio=str(wav)), options)


def test_text_that_looks_like_an_option_is_spoken(options):
    prepared = ui_say.prepare(request(text="--no-watermark please"), options)
    assert prepared.text == "--no-watermark please" and prepared.settings.watermark is True
    assert prepared.output.parent.name.split("-")[2] == "say"


def test_audio_request_runs_the_pipeline_with_stage_events(options, tmp_path):
    events = []
    prepared = ui_say.prepare(request(audio=str(speech_wav(tmp_path / "s.wav", 1.2)),
                                      head_motion="still", no_watermark=True), options)
    clip = ui_say.make_clip(prepared, lambda s, d, t: events.append((s, d, t)))
    meta = json.loads(clip.sidecar.read_text())
    assert meta["input"]["kind"] == "audio" and meta["settings"]["head_motion"] == "still"
    assert meta["output"]["watermark"] is False and "WITHOUT the visible" in clip.summary
    stages = list(dict.fromkeys(s for s, _, _ in events))     # SayPipeline's stages, in order
    assert {"audio", "expressions", "render", "write"} <= set(stages) and "tts" not in stages
    assert stages.index("audio") < stages.index("expressions") < stages.index("render")
    frames = meta["output"]["frames"]
    assert ("render", frames, frames) in events and events[-1] == ("write", 1, 1)
    assert all(0 <= d <= t for _, d, t in events)
    again = ui_say.make_clip(ui_say.prepare(request(text="Hi."), options))
    assert again.video.parent != clip.video.parent        # a new folder per request
