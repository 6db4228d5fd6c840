"""Bad inputs to `say`: each gets one clear error line (exit 2) and leaves no output behind.

docs/RELIABILITY.md lists the same cases with their messages; jobs-file cases are in
test_batch_jobs.py.
"""
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf

import cli
from avatar.audio.text import speakable_text
from tests.pipelines.tiny_person import make_tiny_audio2expr, make_tiny_person


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_tiny_person(root / "tiny"), make_tiny_audio2expr(root / "a2e")


def run_say(tmp_path, models, *args, person=None):
    out = tmp_path / "out.mp4"
    code = cli.main(["say", "--person", str(person or models[0]), "--audio2expr", str(models[1]),
                     "-o", str(out), "--quiet", *args])
    return code, out


def fails_with(capsys, tmp_path, models, expected, *args, person=None):
    code, out = run_say(tmp_path, models, *args, person=person)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ")
    assert expected in err[0], err[0]
    assert not out.exists() and not out.with_suffix(".json").exists()
    return err[0]


# --- text -------------------------------------------------------------------------------------

def test_empty_text(capsys, tmp_path, models):
    fails_with(capsys, tmp_path, models, "the text to speak is empty", "  ")


def test_10k_chars(capsys, tmp_path, models):
    fails_with(capsys, tmp_path, models, "10000 characters long, at most 5000", "word " * 2000)


def test_emoji_only(capsys, tmp_path, models):
    fails_with(capsys, tmp_path, models, "no words to speak", "😀🎉👍")


def test_cjk(capsys, tmp_path, models):
    fails_with(capsys, tmp_path, models, "letters the English voice cannot speak (你好世界)", "你好世界")


def test_emoji_inside_text_is_left_out(capsys):
    assert speakable_text("Hello 👋 world 🎉!") == "Hello  world !"
    assert "left out 2 emoji" in capsys.readouterr().out


def test_text_and_audio_together(capsys, tmp_path, models):
    fails_with(capsys, tmp_path, models, "exactly one of them", "hi", "--audio", "x.wav")


# --- audio ------------------------------------------------------------------------------------

def test_silent_audio_makes_a_closed_mouth_clip(capsys, tmp_path, models):
    sf.write(str(tmp_path / "silent.wav"), np.zeros(8000, np.float32), 16000)
    code, out = run_say(tmp_path, models, "--audio", str(tmp_path / "silent.wav"))
    assert code == 0 and out.exists()
    assert "is silent; the avatar will keep its mouth closed" in capsys.readouterr().out


def test_one_hour_audio(capsys, tmp_path, models):
    path, rate, n = tmp_path / "hour.wav", 8000, 8000 * 3600      # sparse file, no disk used
    header = (b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " +
              struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8) + b"data" + struct.pack("<I", n))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n)
    fails_with(capsys, tmp_path, models, "is 60.0 min long, at most 30 min", "--audio", str(path))


def test_corrupt_audio(capsys, tmp_path, models):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\0\0\0\0WAVEfmt " + bytes(range(256)) * 20)
    fails_with(capsys, tmp_path, models, "not an audio or video file ffmpeg can read",
               "--audio", str(path))


def test_missing_and_empty_audio(capsys, tmp_path, models):
    fails_with(capsys, tmp_path, models, "does not exist", "--audio", str(tmp_path / "no.wav"))
    (tmp_path / "empty.wav").write_bytes(b"")
    fails_with(capsys, tmp_path, models, "is empty (0 bytes)", "--audio", str(tmp_path / "empty.wav"))


# --- person -----------------------------------------------------------------------------------

def test_missing_person(capsys, tmp_path, models):
    fails_with(capsys, tmp_path, models, "person 'nobody' not found", "hi", person="nobody")


def test_person_name_with_dots(capsys, tmp_path, models):
    fails_with(capsys, tmp_path, models, "is not allowed", "hi", person="..")
    fails_with(capsys, tmp_path, models, "not found", "hi", person="../../etc")


@pytest.mark.parametrize("name,damage,expected", [
    ("renderer.safetensors", "flip", "does not match the sha256 in person.json"),
    ("face_model.safetensors", "flip", "does not match the sha256 in person.json"),
    ("face_model.safetensors", "truncate", "does not match the sha256 in person.json"),
    ("track.safetensors", "truncate", "does not match the sha256 in person.json"),
    ("target.mp4", "flip", "does not match the sha256 in person.json"),
    ("person.json", "garble", "is not valid JSON"),
])
def test_tampered_person_files(capsys, tmp_path, models, name, damage, expected):
    person = tmp_path / "copy"
    shutil.copytree(models[0], person)
    path = person / name
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-10] ^= 0xFF                                  # a weight byte, header intact
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = b"{ not json"
    path.write_bytes(bytes(data))
    fails_with(capsys, tmp_path, models, expected, "hi", person=str(person))


# --- options and output -----------------------------------------------------------------------

def test_bad_output_and_options(capsys, tmp_path, models):
    fails_with(capsys, tmp_path, models, "must end in .mp4", "hi", "-o", str(tmp_path / "o.avi"))
    fails_with(capsys, tmp_path, models, "expression scale 9.0 is out of range", "hi",
               "--expression-scale", "9")
    fails_with(capsys, tmp_path, models, "size 8 is out of range", "hi", "--size", "8")
    fails_with(capsys, tmp_path, models, "past the end of the target video", "hi",
               "--start-frame", "500")
