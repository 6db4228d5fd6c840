"""Issue 14: the hostile inputs and kills that lost data, crashed or misled (one test per case).

Each of these failed on the code before issue 14 (checked by running this file against that
commit); docs/RELIABILITY.md lists the same cases with their messages. Cases 13 (evaluate
rewriting person.json) and 14 (renderer checkpoint interval) live with the renderer's tests;
case 4 (tracking resume) is tests/face/test_tracker_resume.py.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import cli
from tests.conftest import write_video
from tests.pipelines.tiny_person import make_tiny_audio2expr, make_tiny_person

REPO = Path(__file__).resolve().parents[2]
CONSENT = "the astronaut photo of scikit-image (public domain); test only"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    person = make_tiny_person(root / "persons" / "tiny")
    return person, make_tiny_audio2expr(root / "a2e")


@pytest.fixture
def person(models, tmp_path):
    """A private copy of the tiny person, free to damage."""
    copy = tmp_path / "persons" / "p"
    shutil.copytree(models[0], copy)
    return copy


def wav(path, seconds=0.8, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


def say(models, person, out, *args):
    return cli.main(["say", "--person", str(person), "--audio2expr", str(models[1]), "-o", str(out),
                     "--quiet", *args])


@pytest.fixture
def named(models, monkeypatch):
    """Batch jobs take person names: the tiny person as 'tiny' among the shipped persons."""
    import avatar.io.person as person_io
    monkeypatch.setattr(person_io, "PERSONS_ROOT", models[0].parent)
    return "tiny"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- data loss --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["person.mp4", "target.mp4"])
def test_case01_output_inside_a_person_folder_is_refused(models, person, tmp_path, capsys, name):
    before = snapshot(person)
    code = say(models, person, person / name, "--audio", str(wav(tmp_path / "s.wav")))
    assert code == 2
    assert "inside the person" in one_error_line(capsys)
    assert snapshot(person) == before                       # person.json, target.mp4 untouched


def test_case01_output_inside_the_shipped_checkpoints_is_refused(models, tmp_path, capsys):
    out = REPO / "checkpoints" / "x.mp4"
    assert say(models, models[0], out, "--audio", str(wav(tmp_path / "s.wav"))) == 2
    assert "inside the person" in one_error_line(capsys) and not out.exists()


def test_case02_a_json_the_tool_did_not_write_is_not_replaced(models, tmp_path, capsys):
    important = tmp_path / "important.json"
    important.write_text('{"my": "accounts"}')
    audio = wav(tmp_path / "s.wav")
    assert say(models, models[0], tmp_path / "important.mp4", "--audio", str(audio)) == 2
    assert "was not made by this toolkit" in one_error_line(capsys)
    assert important.read_text() == '{"my": "accounts"}' and not (tmp_path / "important.mp4").exists()
    # our own earlier output is replaced without asking; a foreign one with --overwrite
    assert say(models, models[0], tmp_path / "mine.mp4", "--audio", str(audio)) == 0
    assert say(models, models[0], tmp_path / "mine.mp4", "--audio", str(audio)) == 0
    assert say(models, models[0], tmp_path / "important.mp4", "--audio", str(audio),
               "--overwrite") == 0
    assert json.loads(important.read_text())["synthetic"] is True


def test_case03_force_with_a_failing_video_keeps_the_old_person(tmp_path, face_video, capsys):
    from skimage import data
    persons = tmp_path / "persons"
    base = ["train-person", "--persons-dir", str(persons), "--no-render", "--name", "p",
            "--consent", CONSENT]
    assert cli.main([*base, "--video", str(face_video)]) == 0
    before = snapshot(persons / "p")
    no_face = write_video(tmp_path / "cat.mp4", np.stack([data.chelsea()[:256, :256]] * 24))
    assert cli.main([*base, "--video", str(no_face), "--force"]) == 2
    assert "no face was found" in capsys.readouterr().err
    assert snapshot(persons / "p") == before                 # the good person is all there
    assert sorted(p.name for p in persons.iterdir() if p.suffix != ".lock") == ["p"]  # no staging or trash left


# --- tracebacks and late failures -------------------------------------------------------------

def test_case05_unwritable_output_fails_before_any_work(models, tmp_path, capsys, monkeypatch):
    import avatar.render.person as render_person

    def no_work(*a, **k):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(render_person, "load_person", no_work)
    (tmp_path / "afile").write_text("x")
    code = say(models, models[0], tmp_path / "afile" / "out.mp4", "hello there")
    assert code == 2
    assert "is a file, not a folder" in one_error_line(capsys)
    if os.geteuid() != 0:                                    # root writes into read-only folders
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        assert say(models, models[0], locked / "out.mp4", "hello there") == 2
        assert "cannot write into" in one_error_line(capsys)


@pytest.mark.parametrize("seed", ["10000000000000000000000000000000000000000", "-1"])
def test_case06_out_of_range_seed_is_refused_up_front(models, tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as e:
        say(models, models[0], tmp_path / "o.mp4", "--audio", str(wav(tmp_path / "s.wav")),
            "--seed", seed, "--blink", "synthetic")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "Traceback" not in err and not (tmp_path / "o.mp4").exists()


def test_case06_out_of_range_seed_fails_batch_check(named, tmp_path, capsys):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "text": "Hi", "seed": 10000000000000000000000000000000000000000}\n')
    code = cli.main(["batch", str(jobs), "--out", str(tmp_path / "out"), "--person", named,
                     "--check"])
    assert code == 2
    assert "line 1: seed 1" in capsys.readouterr().err


def test_case07_deeply_nested_person_json_is_one_error(models, person, tmp_path, capsys):
    (person / "person.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    assert say(models, person, tmp_path / "o.mp4", "--audio", str(wav(tmp_path / "s.wav"))) == 2
    assert "nested 100000 levels deep" in one_error_line(capsys)


def test_case08_renderer_sizes_are_checked_before_allocating(models, person, tmp_path, capsys,
                                                             monkeypatch):
    from safetensors import safe_open
    from safetensors.torch import save_file

    import avatar.render.store as store
    path = person / "renderer.safetensors"
    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    config["texture_size"] = 60000                          # 230 GB of texture if believed
    save_file(tensors, str(path), {**meta, "config": json.dumps(config)})
    info = json.loads((person / "person.json").read_text())
    from avatar.io.files import sha256_file
    info["files"]["renderer.safetensors"] = sha256_file(path)
    (person / "person.json").write_text(json.dumps(info))
    real = store.DeferredRenderer

    def guarded(cfg):
        import torch
        if cfg.texture_size > 4096 and torch.empty(0).device.type != "meta":
            raise AssertionError("a renderer was allocated from unchecked metadata")
        return real(cfg)

    monkeypatch.setattr(store, "DeferredRenderer", guarded)
    assert say(models, person, tmp_path / "o.mp4", "--audio", str(wav(tmp_path / "s.wav"))) == 2
    assert "texture_size=60000 is out of range" in one_error_line(capsys)


def lying_mp3(path: Path, silent_s: float) -> Path:
    """VBR mp3 without a Xing header: 2 s of loud noise (high bitrate) then silence (lowest
    bitrate): ffmpeg estimates the length from the first frames' bitrate, so it says ~1/8."""
    from avatar.video.probe import ffmpeg_exe
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "anoisesrc=d=2:a=0.8:r=22050", "-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono",
                    "-filter_complex", f"[1]atrim=duration={silent_s}[s];[0][s]concat=n=2:v=0:a=1",
                    "-ac", "1", "-c:a", "libmp3lame", "-q:a", "0", "-write_xing", "0",
                    "-id3v2_version", "0", "-write_id3v1", "0", str(path)], check=True)
    return path


def test_case09_audio_length_is_enforced_while_decoding(models, tmp_path, capsys, monkeypatch):
    import avatar.audio.load as load
    import avatar.config as config
    from avatar.video.probe import ffmpeg_header, header_duration
    mp3 = lying_mp3(tmp_path / "lying.mp3", 200)
    assert header_duration(ffmpeg_header(mp3)) < 40      # the header understates it
    monkeypatch.setattr(config, "MAX_SPEECH_S", 40.0)
    decoded = {"bytes": 0}

    class Counting(load.FfmpegOutput):
        def __iter__(self):
            for block in super().__iter__():
                decoded["bytes"] += len(block)
                yield block

    monkeypatch.setattr(load, "FfmpegOutput", Counting)
    assert say(models, models[0], tmp_path / "o.mp4", "--audio", str(mp3)) == 2
    assert "is longer than 40 s (found while decoding" in one_error_line(capsys)
    seconds = decoded["bytes"] / 4 / load.SAMPLE_RATE
    assert seconds < 100, f"decoded {seconds:.0f} s of 202 s before refusing"


# --- silent wrong output ----------------------------------------------------------------------

@pytest.mark.parametrize("drop", ["all", "renderer.safetensors", "target.mp4"])
def test_case10_missing_hashes_are_refused_not_trusted(models, person, tmp_path, capsys, drop):
    info = json.loads((person / "person.json").read_text())
    if drop == "all":
        del info["files"]
    else:
        del info["files"][drop]
    (person / "person.json").write_text(json.dumps(info))
    assert say(models, person, tmp_path / "o.mp4", "--audio", str(wav(tmp_path / "s.wav"))) == 2
    line = one_error_line(capsys)
    assert "records no file hashes" in line if drop == "all" else f"no sha256 for {drop}" in line


def test_case11_a_text_that_names_a_file_is_not_spoken(models, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("Good morning everyone.")
    assert say(models, models[0], tmp_path / "o.mp4", "notes.txt") == 2
    assert "--text-file notes.txt" in one_error_line(capsys) and not (tmp_path / "o.mp4").exists()
    assert say(models, models[0], tmp_path / "o.mp4", "--text-file", "notes.txt") == 0
    sidecar = json.loads((tmp_path / "o.json").read_text())
    assert sidecar["input"]["text"] == "Good morning everyone."


# --- leftovers and side effects ---------------------------------------------------------------

def test_case12_a_killed_say_leaves_temp_files_the_next_run_removes(models, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    long_audio = wav(tmp_path / "long.wav", seconds=60)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "say", "--person",
                             str(models[0]), "--audio2expr", str(models[1]), "--audio",
                             str(long_audio), "-o", str(out_dir / "a.mp4"), "--quiet"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(p.name.endswith(".tmp.mp4")
                                                 for p in out_dir.iterdir()):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(0.5)
    left = [p.name for p in out_dir.iterdir()]
    assert any(n.endswith(".tmp.mp4") for n in left), left    # the kill did leave them
    assert say(models, models[0], out_dir / "b.mp4", "--audio", str(wav(tmp_path / "s.wav"))) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["b.json", "b.mp4"]


def test_case15_batch_ids_differing_only_in_case_collide(named, tmp_path, capsys):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "text": "Hi"}\n{"id": "A", "text": "Ho"}\n')
    code = cli.main(["batch", str(jobs), "--out", str(tmp_path / "out"), "--person", named,
                     "--check"])
    assert code == 2
    assert "line 2: duplicate id 'A'" in capsys.readouterr().err


def test_case16_batch_check_refuses_a_target_video_that_is_not_a_video(named, tmp_path, capsys):
    jobs = tmp_path / "jobs.jsonl"
    (tmp_path / "notes.mp4").write_text("root:x:0:0:root:/root:/bin/bash\n")
    jobs.write_text('{"id": "a", "text": "Hi", "target_video": "notes.mp4"}\n')
    code = cli.main(["batch", str(jobs), "--out", str(tmp_path / "out"), "--person", named,
                     "--check"])
    assert code == 2
    assert "line 1: target video notes.mp4" in capsys.readouterr().err


def test_case17_user_persons_live_in_avatar_home(tmp_path, face_video, monkeypatch, models):
    import avatar.io.person as person_io
    shipped = tmp_path / "ckpt" / "persons"
    shutil.copytree(models[0], shipped / "demo")
    monkeypatch.setattr(person_io, "PERSONS_ROOT", shipped)
    monkeypatch.setattr("pipelines.train_person.PERSONS_ROOT", shipped, raising=False)
    monkeypatch.setenv("AVATAR_HOME", str(tmp_path / "home"))
    assert cli.main(["train-person", "--video", str(face_video), "--name", "astro",
                     "--no-render", "--consent", CONSENT]) == 0
    assert (tmp_path / "home" / "persons" / "astro" / "person.json").is_file()
    assert not (shipped / "astro").exists()
    assert person_io.person_dir("astro") == tmp_path / "home" / "persons" / "astro"
    assert person_io.person_dir("demo") == shipped / "demo"       # shipped persons still found


def test_case11_batch_text_naming_a_file_is_refused_text_file_read(named, tmp_path, capsys):
    from pipelines.runner import JobsFileError, parse_jobs
    (tmp_path / "notes.txt").write_text("Good morning everyone.")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "text": "notes.txt"}\n{"id": "b", "text_file": "notes.txt"}\n')
    with pytest.raises(JobsFileError) as e:
        parse_jobs(jobs, default_person=named)
    assert e.value.lines == ["line 1: the text 'notes.txt' is the name of an existing file; to "
                             "speak what it says use \"text_file\" instead of \"text\""]
    jobs.write_text('{"id": "b", "text_file": "notes.txt"}\n')
    assert parse_jobs(jobs, default_person=named)[0].text == "Good morning everyone."
