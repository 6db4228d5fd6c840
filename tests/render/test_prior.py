"""Renderer prior: its folder format, refusals of bad files, a 2-step fit from a tiny prior,
early stopping on the held-out PSNR, and train-prior from a fitted person."""
import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import cli
from avatar.errors import AvatarError
from avatar.io.files import read_json
from avatar.render.model import DeferredRenderer, RendererConfig
from avatar.render.prior import CONFIG, WEIGHTS, load_prior, save_prior, start_from_prior
from avatar.render.train import HeldOutWatch, evaluate_holdout, train_renderer
from tests.synthetic import make_synthetic_person

CROP = 128
SMALL = RendererConfig(crop_size=CROP, texture_size=64, texture_levels=2, channels=(8, 12, 16, 16))


def _random_model(config: RendererConfig = SMALL, seed: int = 3) -> DeferredRenderer:
    torch.manual_seed(seed)
    model = DeferredRenderer(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory) -> Path:
    return save_prior(tmp_path_factory.mktemp("prior") / "p", _random_model(), {"people": ["x"]})


@pytest.fixture(scope="module")
def person(tmp_path_factory) -> Path:
    return make_synthetic_person(tmp_path_factory.mktemp("prior-person") / "synth", n_frames=20,
                                 size=160)


def test_a_prior_round_trips_and_starts_a_model(prior_dir):
    prior, info = load_prior(prior_dir)
    assert info["people"] == ["x"] and info["renderer"]["texture_size"] == 64
    fresh = DeferredRenderer(SMALL)
    start_from_prior(fresh, prior)
    want = _random_model().state_dict()
    assert all(torch.equal(v, want[k]) for k, v in fresh.state_dict().items())


def test_a_changed_or_foreign_prior_is_refused(prior_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(prior_dir, bad)
    data = bytearray((bad / WEIGHTS).read_bytes())
    data[-3] ^= 0xFF
    (bad / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(AvatarError, match="changed since it was made"):
        load_prior(bad)
    info = read_json(prior_dir / CONFIG)
    (bad / CONFIG).write_text(json.dumps({**info, "format": "something-else"}))
    with pytest.raises(AvatarError, match="format"):
        load_prior(bad)
    with pytest.raises(AvatarError, match="has no config.json"):
        load_prior(tmp_path / "missing")


def test_a_prior_of_other_sizes_is_refused_with_the_difference(prior_dir):
    prior, _ = load_prior(prior_dir)
    other = DeferredRenderer(replace(SMALL, texture_size=32))
    with pytest.raises(AvatarError, match="texture_size=64.*uses 32"):
        start_from_prior(other, prior, "p")


def test_two_steps_from_a_tiny_prior_start_at_the_prior(person, prior_dir, tmp_path):
    def fit(name, prior):
        folder = tmp_path / name
        shutil.copytree(person, folder)
        train_renderer(folder, minutes=0, steps=2, device="cpu", run_dir=tmp_path / f"run-{name}",
                       crop_size=CROP, batch_size=2, progress=False, model_config=SMALL,
                       mouth_stage_steps=0, write_person=False, prior=prior)
        from avatar.render.store import load_weights
        return load_weights(tmp_path / f"run-{name}" / "renderer.safetensors").state_dict()
    start = load_prior(prior_dir)[0].state_dict()
    tuned, scratch = fit("tuned", prior_dir), fit("scratch", None)
    key = "unet.head.weight"
    assert (tuned[key].float() - start[key]).abs().mean() < 0.2 * (scratch[key].float() - start[key]).abs().mean()
    run = read_json(tmp_path / "run-tuned" / "config.json")
    assert run["prior"]["people"] == ["x"] and read_json(tmp_path / "run-scratch" / "config.json")["prior"] is None


def test_early_stopping_waits_for_patience_measurements_without_gain(person):
    from avatar.render.data import person_samples
    samples = person_samples(person, CROP, SMALL.band_top, progress=False)
    watch = HeldOutWatch(samples, every=10, patience=2, min_gain=0.05)
    assert watch.due(20) and not watch.due(25)
    state = lambda psnrs: {"heldout": [[i, 0.0, p, 0.0] for i, p in enumerate(psnrs)]}  # noqa: E731
    assert not watch.stopped(state([20.0, 21.0]))                  # too few measurements
    assert not watch.stopped(state([20.0, 21.0, 21.2, 21.0]))      # +0.2 dB within the last 2
    assert watch.stopped(state([20.0, 21.0, 21.03, 20.9]))         # < +0.05 dB for 2 in a row
    assert not HeldOutWatch(samples, every=10, patience=0).stopped(state([30, 20, 10, 5]))


def test_the_watch_measures_a_few_evenly_spaced_held_out_frames(person):
    from avatar.render.data import person_samples
    samples = person_samples(person, CROP, SMALL.band_top, progress=False)
    model, cpu = _random_model().eval(), torch.device("cpu")
    n = len(samples) - samples.holdout_start
    assert n > 2
    assert evaluate_holdout(model, samples, cpu)["holdout_frames"] == n
    few = evaluate_holdout(model, samples, cpu, max_frames=2)
    assert few["holdout_frames"] == 2
    ends = replace(samples, crops=samples.crops.copy())
    ends.crops[samples.holdout_start + 1:-1] = 0                  # frames between the ends: black
    assert evaluate_holdout(model, ends, cpu, max_frames=2)["psnr"] == pytest.approx(few["psnr"])
    state = {"step": 10, "heldout": []}
    psnr = HeldOutWatch(samples, every=10, patience=0, max_frames=2).record(model, state, cpu, 60.0)
    assert psnr == pytest.approx(few["psnr"]) and state["heldout"][0][:2] == [10, 1.0]


def test_a_fit_with_patience_stops_once_the_held_out_psnr_stalls(person, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(person, folder)
    metrics = train_renderer(folder, minutes=0, steps=60, device="cpu", run_dir=tmp_path / "run",
                             crop_size=CROP, batch_size=2, progress=False, model_config=SMALL,
                             mouth_stage_steps=0, write_person=False, eval_every=2, patience=1,
                             )
    held = read_json(tmp_path / "run" / "config.json")
    assert held["patience"] == 1 and metrics["step"] < 60   # a 2-frame hold-out stalls soon
    assert metrics["step"] % 2 == 0 and metrics["step"] >= 4


def test_train_prior_from_a_fitted_person_and_its_refusals(tmp_path, capsys):
    from tests.pipelines.tiny_person import make_tiny_person
    fitted = make_tiny_person(tmp_path / "tiny")
    before = {p.name: p.read_bytes() for p in fitted.iterdir() if p.is_file()}
    out = tmp_path / "prior"
    assert cli.main(["train-prior", "--from-person", str(fitted), "-o", str(out)]) == 0
    prior, info = load_prior(out)
    assert info["people"] == ["tiny"] and not prior.config.has_mouth_stage
    assert {p.name: p.read_bytes() for p in fitted.iterdir() if p.is_file()} == before  # only read
    assert cli.main(["train-prior", "--from-person", str(fitted), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert cli.main(["train-prior", "--from-person", str(fitted), "-o", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    from avatar.config import checkpoints_dir
    inside = checkpoints_dir() / "another_prior"                  # the shipped models are read-only
    assert cli.main(["train-prior", "--from-person", str(fitted), "-o", str(inside)]) == 2
    assert not inside.exists() and "person/checkpoint folder" in capsys.readouterr().err
    assert cli.main(["train-prior", "--from-person", str(fitted), "-o", str(fitted / "p")]) == 2
    assert not (fitted / "p").exists()


def test_train_person_prior_options():
    from pipelines.train_person import renderer_start
    ns = lambda **kw: argparse.Namespace(**{"prior": None, "from_scratch": False, "patience": None, **kw})  # noqa: E731
    assert renderer_start(ns(from_scratch=True)) == (None, 0)
    from avatar.render.prior import shipped_prior
    shipped = shipped_prior()                           # the demo's first stage ships as the prior
    assert shipped is not None and load_prior(shipped)[1]["people"] == ["demo"]
    assert renderer_start(ns()) == (shipped, 5) and renderer_start(ns(patience=0)) == (shipped, 0)
    with pytest.raises(AvatarError, match="not both"):
        renderer_start(ns(prior=Path("x"), from_scratch=True))
    with pytest.raises(AvatarError, match="not a folder"):
        renderer_start(ns(prior=Path("/nonexistent/prior")))
    with pytest.raises(AvatarError, match="must be 0"):
        renderer_start(ns(from_scratch=True, patience=-1))


def test_a_prior_trained_on_two_people_resumes_and_holds_their_mean_texture(tmp_path):
    from avatar.render.store import load_weights
    from avatar.render.train_prior import train_prior
    a = make_synthetic_person(tmp_path / "a", n_frames=12, size=160)
    b = make_synthetic_person(tmp_path / "b", n_frames=14, size=192)
    kw = dict(device="cpu", crop_size=CROP, batch_size=2, model_config=SMALL, checkpoint_every=2,
              progress=False)
    metrics = train_prior([a, b], tmp_path / "prior", tmp_path / "run", steps=4, **kw)
    assert set(metrics) == {"a", "b"} and all(5 < m["psnr"] < 60 for m in metrics.values())
    assert read_json(tmp_path / "run" / "state.json")["step"] == 4
    people = [load_weights(tmp_path / "run" / "people" / f"{n}.safetensors") for n in "ab"]
    assert torch.equal(people[0].unet.head.weight, people[1].unet.head.weight)   # one U-Net
    prior, info = load_prior(tmp_path / "prior")
    assert info["people"] == ["a", "b"] and info["steps"] == 4
    mean = (people[0].texture.levels[0] + people[1].texture.levels[0]) / 2
    assert torch.allclose(prior.texture.levels[0], mean, atol=1e-6)
    train_prior([a, b], tmp_path / "prior2", tmp_path / "run", steps=6, **kw)      # resumes at 4
    assert read_json(tmp_path / "run" / "state.json")["step"] == 6
    with pytest.raises(AvatarError, match="other people"):
        train_prior([b, a], tmp_path / "prior3", tmp_path / "run", steps=8, **kw)


def test_train_prior_refuses_before_any_work(tmp_path, capsys):
    assert cli.main(["train-prior", "--person", "nobody-here", "-o", str(tmp_path / "p")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["train-prior", "--person", "x", "--steps", "0", "-o", str(tmp_path / "p")]) == 2
    assert "--steps 0" in capsys.readouterr().err
