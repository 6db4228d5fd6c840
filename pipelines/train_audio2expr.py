"""Train the shared audio-to-expression network on a folder of talking-face videos.

    python cli.py train-audio2expr --corpus ../shared/data/speakers --corpus ../shared/data/person \
        --holdout aoc vr_man --minutes 20

Every video with an audio track under the corpus folders is a training clip; its speaker is the
name of the folder it sits in. Targets are the tracked blendshapes (tracking is cached). Whole
speakers given with --holdout are kept out of training and used for evaluation: Pearson r of
predicted vs tracked jawOpen and mouth blendshapes, MAE, best audio/video offset, mouth at rest in
silence, and the loudness baseline, written with curve plots to $AVATAR_HOME/runs/<id>/. The
checkpoint goes to --out (default $AVATAR_HOME/audio2expr; `say --audio2expr DIR` uses it).

Before training, the phonetic prior (phones PocketSphinx hears, textbook jaw/lip positions) finds
each clip's audio/video offset, which is removed, and leaves out clips whose lips follow their
audio at no offset (--min-sync). An articulation net is trained on piper speech (--tts-sentences);
the network's mouth is blended with the prior (--prior-weight). See docs/BENCHMARKS.md, "Audio".
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from avatar.config import avatar_home
from avatar.errors import AvatarError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = [REPO.parent / "shared" / "data" / "speakers", REPO.parent / "shared" / "data" / "person"]
DEFAULT_AUDIO_CHECK = REPO.parent / "shared" / "data" / "audio"
AUGMENTATIONS = ["clean", "noise", "pitch_up", "pitch_down", "slow", "fast"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", action="append", type=Path, metavar="DIR",
                   help="folder of talking-face videos (repeatable); default: ../shared/data/{speakers,person}")
    p.add_argument("--holdout", nargs="*", default=["aoc", "vr_man"], metavar="SPEAKER",
                   help="speakers (folder names) kept out of training for evaluation (default: aoc vr_man)")
    p.add_argument("--minutes", type=float, default=20.0,
                   help="time budget; the networks stop early when it runs out (default 20)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps at most (default 1000)")
    p.add_argument("--features", choices=["whisper3_hama", "whisper_hama", "whisper_tiny", "hama",
                                          "whisper_phones", "logmel80"],
                   default="whisper_tiny",
                   help="speech features: Whisper tiny encoder (default), the third block of the "
                        "Whisper encoder + hama phoneme log-posteriors (the shipped network), "
                        "Whisper + hama, hama alone, Whisper plus the articulation curves of the "
                        "recognized phones, or log-mel")
    p.add_argument("--out", type=Path, default=avatar_home() / "audio2expr",
                   help="checkpoint folder to write (default $AVATAR_HOME/audio2expr; say and "
                   "batch use it with --audio2expr; to replace the shipped network in a source "
                   "checkout give --out checkpoints/audio2expr)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="run folder (default $AVATAR_HOME/runs/audio2expr-<time>)")
    p.add_argument("--audio-check", type=Path, default=DEFAULT_AUDIO_CHECK,
                   help="folder of audio-only clips to check (jawOpen r vs loudness, plots)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evaluate-only", action="store_true",
                   help="do not train: evaluate the checkpoint in --out on the held-out speakers")
    p.add_argument("--ensemble", type=int, default=3, choices=range(1, 9), metavar="N",
                   help="networks trained with different seeds and averaged (1-8, default 3)")
    p.add_argument("--tts-sentences", type=int, default=350, metavar="N",
                   help="sentences piper speaks to train the articulation net of the phonetic prior "
                        "(0: phones only; default 350, about 25 min of speech, 2 min to make)")
    p.add_argument("--articulation-steps", type=int, default=1500, help=argparse.SUPPRESS)
    p.add_argument("--articulation-from", type=Path, default=None, metavar="DIR",
                   help="reuse the TTS-trained articulation net of this checkpoint folder instead of "
                        "training one (it never sees video, so it does not depend on the corpus)")
    p.add_argument("--prior-weight", type=float, default=0.5,
                   help="share of the phonetic prior in jawOpen and the lip blendshapes it drives "
                        "(0: network only; default 0.5)")
    p.add_argument("--min-sync", type=float, default=0.25,
                   help="leave out training clips whose lips match the phonetic prior worse than this "
                        "correlation at every offset (dubbed or unrelated audio; default 0.25)")
    p.add_argument("--feature-norm", choices=["utterance", "none"], default="utterance",
                   help="utterance (default): the network sees each recording's Whisper features "
                        "centred and scaled by that recording's own speech statistics (removes voice "
                        "and microphone; see docs/BENCHMARKS.md); none: raw features (log-mel needs "
                        "none)")
    p.add_argument("--output-gain", type=float, default=1.0,
                   help="scale of the network's output (z units) so the mouth opens as wide as real "
                        "speech; measured as tracked / predicted spread in speaker-grouped "
                        "cross-validation (default 1)")
    p.add_argument("--closure-lead-s", type=float, default=0.02,
                   help="close the lips on p/b/m phones (piper's timings for text, hama's phones for "
                        "recordings), read this long ahead (default 0.02 s; negative: no closure)")
    p.add_argument("--silence-gate-db", type=float, default=30.0,
                   help="close the mouth where the audio is this many dB below the speech level "
                        "(default 30; negative disables)")
    add_training_options(p)


def add_training_options(p: argparse.ArgumentParser) -> None:
    """Loss, network and output options (all off by default; docs/BENCHMARKS.md, Audio, session 7)."""
    p.add_argument("--corr-weight", type=float, default=0.0,
                   help="add (1 - Pearson r) of jawOpen per training sequence to the loss, with this "
                        "weight (default 0: MSE only)")
    p.add_argument("--temporal-layers", type=int, default=0, choices=range(0, 7), metavar="N",
                   help="residual dilated convolutions over frames after the temporal filter (default 0)")
    p.add_argument("--target-smooth", type=float, default=0.0, metavar="FRAMES",
                   help="Gaussian sigma (frames) the tracked targets are smoothed with (default 0)")
    p.add_argument("--output-smooth-s", type=float, default=0.0, metavar="S",
                   help="Gaussian sigma (seconds) of the output's temporal smoothing (default 0: none)")
    p.add_argument("--output-delay-s", type=float, default=0.04, metavar="S",
                   help="show the output this much later, 0-0.5 s (before the silence gate and the p/b/m "
                        "closure; default 0.04, the best of 0 / 1 / 2 frames in speaker-grouped CV)")


def check_options(args: argparse.Namespace) -> None:
    if not 0.0 <= args.output_delay_s <= 0.5:
        raise AvatarError(f"--output-delay-s must be 0-0.5 s (got {args.output_delay_s})")
    if not 0.0 <= args.output_smooth_s <= 1.0:
        raise AvatarError(f"--output-smooth-s must be 0-1 s (got {args.output_smooth_s})")


def run(args: argparse.Namespace) -> int:
    import torch
    from avatar.expression.checkpoint import load_audio2expr
    from avatar.expression.data import build_variants
    from avatar.io.person import runs_root

    check_options(args)
    torch.set_num_threads(1)
    started = time.monotonic()
    run_dir = args.run_dir or runs_root() / f"audio2expr-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    train, test, holdout = corpus_split(args)
    if args.evaluate_only:
        model = load_audio2expr(args.out)
        for c in test:
            build_variants(c, ["clean"], model.feature_kind, seed=0)
        metrics = evaluate_clips(model, test, run_dir / "heldout_curves.png", "held-out speakers")
        return finish(args, model, metrics, run_dir, started)
    if args.tts_sentences > 0 and args.features in ("hama", "logmel80"):
        raise AvatarError(f"--tts-sentences needs Whisper features; use --features whisper_hama or "
                          f"whisper_tiny, or --tts-sentences 0 with --features {args.features}")
    train, sync = screened_clips(args, train)
    for i, c in enumerate(train):
        build_variants(c, AUGMENTATIONS, args.features, seed=args.seed + i)
    for c in test:
        build_variants(c, ["clean"], args.features, seed=0)
    net, losses = train_and_save(args, train, started, {
        "clips": [c.name for c in train], "speakers": sorted({c.speaker for c in train}),
        "holdout_speakers": sorted(holdout),
        "clip_sync": {k: {"offset_frames": v.lag, "prior_r": v.r, "used": v.used} for k, v in sync.items()}})
    model = load_audio2expr(args.out)
    metrics = evaluate_clips(model, test, run_dir / "heldout_curves.png", "held-out speakers")
    metrics["training_clips_in_sample"] = evaluate_clips(model, train, run_dir / "train_curves.png",
                                                         "training clips (in-sample)")
    metrics["loss_curve"] = [float(np.mean(losses[i:i + 50])) for i in range(0, len(losses), 50)]
    return finish(args, model, metrics, run_dir, started)


def corpus_split(args) -> tuple[list, list, set]:
    """(training clips, held-out clips, held-out speakers) of the corpus folders."""
    from avatar.expression.data import find_clips
    skipped: list = []
    found = find_clips(args.corpus or DEFAULT_CORPUS, skipped)
    for path, reason in skipped:
        print(f"skipping {path}: {reason}")
    clips = load_corpus(found, skipped)
    args.skipped = [[str(p), r] for p, r in skipped]
    holdout = set(args.holdout or [])
    unknown = holdout - {c.speaker for c in clips}
    if unknown:
        raise AvatarError(f"--holdout speaker(s) {', '.join(sorted(unknown))} not in the corpus; "
                          f"speakers are: {', '.join(sorted({c.speaker for c in clips}))}")
    train = [c for c in clips if c.speaker not in holdout]
    test = [c for c in clips if c.speaker in holdout]
    if not train:
        raise AvatarError("no training clips left after --holdout; hold out fewer speakers")
    print(f"{len(train)} training clips ({sum(len(c.targets) for c in train)} frames), "
          f"{len(test)} held-out clips; building features ({args.features}) ...")
    return train, test, holdout


def screened_clips(args, train: list) -> tuple[list, dict]:
    """The training clips whose lips follow their audio (prior match >= --min-sync), and the
    offset and match found for every clip."""
    from avatar.expression.prior import PriorConfig
    from avatar.expression.train import screen_clips
    sync = screen_clips(train, PriorConfig(), min_r=args.min_sync)
    for name, s in sync.items():
        print(f"  {name}: offset {s.lag:+d} frames, prior match r {s.r:.2f}"
              f"{'' if s.used else '  -> left out (lips do not follow this audio)'}")
    train = [c for c in train if sync[c.name].used]
    if not train:
        raise AvatarError(f"no training clip matches its audio (every prior match < --min-sync {args.min_sync})")
    return train, sync


def articulation_net(args, feature_dim: int):
    """The articulation net: taken from --articulation-from, trained on piper speech, or None."""
    if args.articulation_from is None:
        return train_tts_articulation(args, feature_dim) if args.tts_sentences > 0 else None
    from avatar.expression.checkpoint import load_articulation
    from avatar.io.files import read_json
    articulation = load_articulation(args.articulation_from,
                                     read_json(args.articulation_from / "config.json", "audio2expr config"))
    if articulation is None:
        raise AvatarError(f"{args.articulation_from} has no articulation net; drop --articulation-from")
    return articulation


def train_and_save(args, train: list, started: float, training: dict):
    """Train the ensemble (within the time budget) and its phonetic prior, write --out."""
    from avatar.audio.features import NETWORK_DIMS
    from avatar.expression.checkpoint import closed_pose_z, save_audio2expr
    from avatar.expression.data import silence_features
    from avatar.expression.model import NetConfig
    from avatar.expression.prior import PriorConfig, combined_curves
    from avatar.expression.train import TrainConfig, fit_normalizer, fit_prior
    from avatar.types import MOUTH_BLENDSHAPES

    net_cfg = NetConfig(feature_dim=NETWORK_DIMS[args.features], temporal_layers=args.temporal_layers,
                        window=32 if args.features == "logmel80" else 16, n_out=len(MOUTH_BLENDSHAPES))
    feature_norm, normalizer = fit_feature_norm(args, train), fit_normalizer(train)
    cfg = TrainConfig(steps=args.steps, seed=args.seed, corr_weight=args.corr_weight,
                      target_smooth=args.target_smooth)
    if args.silence_gate_db is not None and args.silence_gate_db < 0:
        args.silence_gate_db = None
    articulation = articulation_net(args, net_cfg.feature_dim)
    budget = args.minutes * 60 - (time.monotonic() - started) - 60
    net, losses = train_ensemble(train, net_cfg, cfg, silence_features(args.features), normalizer,
                                 args.ensemble, max(budget, 30.0), feature_norm)
    curves = [combined_curves(c.phones, whisper_part(c.variants[0].features), articulation, c.fps,
                              len(c.targets), PriorConfig.lead_s, PriorConfig.smooth_s) for c in train]
    prior = fit_prior([network_z(net, c, net_cfg.window, feature_norm) for c in train], curves,
                      args.prior_weight)
    extra = {"training": {**training, "steps_per_network": len(losses), "ensemble": args.ensemble,
                          "final_loss": float(np.mean(losses[-50:])), "augmentations": AUGMENTATIONS,
                          "train_config": cfg.__dict__, "tts_sentences": args.tts_sentences,
                          "skipped_files": getattr(args, "skipped", [])}}
    closure = {"lead_s": args.closure_lead_s} if args.closure_lead_s >= 0 else None
    save_audio2expr(args.out, net, args.features, normalizer.mean, normalizer.std, extra,
                    rest_z=normalizer.rest, silence_gate_db=args.silence_gate_db, prior=prior,
                    articulation=articulation, feature_norm=feature_norm, output_gain=args.output_gain,
                    closure=closure, output_smooth_s=args.output_smooth_s or None,
                    output_delay_s=args.output_delay_s or None,
                    closed_z=closed_pose_z(normalizer.mean, normalizer.std, normalizer.rest) if closure else None)
    return net, losses


def train_tts_articulation(args, feature_dim: int):
    """The TTS-trained articulation net (avatar.expression.articulation): --tts-sentences sentences
    from the standard library's docstrings, spoken by piper, then 1500 steps."""
    from tqdm import tqdm
    from avatar.expression.articulation import (ArticulationConfig, stdlib_sentences, train_articulation,
                                                tts_example)
    from avatar.audio.features import FEATURE_DIMS
    rng = np.random.default_rng(args.seed)
    sentences = stdlib_sentences()
    if not sentences:
        raise AvatarError("found no sentences in the Python standard library's docstrings; use "
                          "--tts-sentences 0")
    chosen = rng.choice(sentences, min(args.tts_sentences, len(sentences)), replace=False)
    examples = [tts_example(str(s), "whisper_tiny", rng)
                for s in tqdm(chosen, desc="TTS articulation data", mininterval=5)]
    net, losses = train_articulation(examples, ArticulationConfig(feature_dim=FEATURE_DIMS["whisper_tiny"]),
                                     steps=args.articulation_steps, seed=args.seed)
    print(f"articulation net: {sum(len(f) for f, _ in examples) / 50:.0f} s of TTS speech, "
          f"final loss {np.mean(losses[-50:]):.4f}")
    return net


def fit_feature_norm(args, train):
    """The corpus statistics utterance normalization falls back on (None for --feature-norm none)."""
    from avatar.audio.features import UtteranceNorm, network_features
    if args.feature_norm == "none":
        return None
    if args.features == "logmel80":
        raise AvatarError("--feature-norm utterance needs Whisper features; add --feature-norm none "
                          "for log-mel")
    return UtteranceNorm.fit([network_features(c.variants[0].features) for c in train])


def train_ensemble(train, net_cfg, cfg, silence, normalizer, members: int, budget_s: float,
                   feature_norm=None):
    """`members` networks with seeds cfg.seed, cfg.seed + 1, ...; returns the ensemble and the
    first network's losses."""
    from dataclasses import replace
    from avatar.expression.model import Audio2ExpressionEnsemble
    from avatar.expression.train import train_network
    ensemble = Audio2ExpressionEnsemble(net_cfg, members)
    first_losses = None
    for k, member in enumerate(ensemble.members):
        net, losses = train_network(train, net_cfg, replace(cfg, seed=cfg.seed + k), silence, normalizer,
                                    deadline_s=budget_s / members, feature_norm=feature_norm)
        member.load_state_dict(net.state_dict())
        first_losses = first_losses if first_losses is not None else losses
    return ensemble.eval(), first_losses


def whisper_part(features):
    from avatar.expression.checkpoint import whisper_part as part
    return part(features)


def network_z(net, clip, window: int, feature_norm=None) -> np.ndarray:
    """The freshly trained network's output (z units, [T, n_mouth]) on a clip's clean audio."""
    import torch
    from avatar.audio.features import frame_windows, network_features
    feats = network_features(clip.variants[0].features, feature_norm)
    windows = frame_windows(feats, clip.fps, len(clip.targets), window)
    with torch.inference_mode():
        return net(torch.from_numpy(windows[None]))[0].numpy()


def finish(args, model, metrics: dict, run_dir: Path, started: float) -> int:
    from avatar.io.files import write_json
    if args.audio_check and Path(args.audio_check).is_dir():
        metrics["audio_only_clips"] = check_audio_only(model, Path(args.audio_check), run_dir / "audio_only_curves.png")
    metrics["minutes"] = (time.monotonic() - started) / 60
    metrics["feature_kind"] = model.feature_kind
    metrics["checkpoint"] = str(args.out)
    write_json(run_dir / "metrics.json", metrics)
    summary = metrics.get("summary", {})
    print(f"held-out: jawOpen r {summary.get('mean_jaw_r', float('nan')):.3f} "
          f"(loudness baseline {summary.get('mean_baseline_loudness_jaw_r', float('nan')):.3f}), "
          f"mouth r {summary.get('mean_mouth_mean_r', float('nan')):.3f}; "
          f"checkpoint {args.out}; run folder {run_dir}")
    return 0


def load_corpus(found: list[tuple[Path, str]], skipped: list | None = None):
    """Track (cached) and load the audio of every clip that has an audio track."""
    from avatar.audio import load_speech
    from avatar.audio.phones import recognize_phones
    from avatar.expression.data import ClipData
    from avatar.face.tracker import track_video
    from avatar.video.probe import has_audio_stream

    clips = []
    for path, speaker in found:
        if not has_audio_stream(path):
            print(f"skipping {path}: no audio track")
            if skipped is not None:
                skipped.append((path, "no audio track"))
            continue
        track = track_video(path, progress=False)
        speech = load_speech(path)
        clips.append(ClipData(name=f"{speaker}/{path.stem}", speaker=speaker, fps=float(track.fps),
                              targets=track.blendshapes.astype(np.float32), speech=speech,
                              phones=recognize_phones(speech)))
        print(f"  {speaker}/{path.name}: {len(track)} frames at {track.fps:.2f} fps, "
              f"{speech.duration_s:.2f} s audio, face found in {track.found.mean():.0%}")
    if not clips:
        raise AvatarError("the corpus holds no video with an audio track; give talking-face videos with sound")
    return clips


def evaluate_clips(model, clips, plot_path: Path, title: str) -> dict:
    from avatar.expression.data import frame_loudness_db, silent_frames
    from avatar.expression.evaluate import clip_metrics, pearson, plot_curves, summarize
    from avatar.types import JAW_OPEN

    per_clip, items = {}, []
    for c in clips:
        n = len(c.targets)
        feats = c.variants[0].features
        pred = model.predict_features(feats, c.fps, n, c.phones).weights
        loud = frame_loudness_db(c.speech, c.fps, n)
        m = per_clip[c.name] = clip_metrics(pred, c.targets, loud, silent_frames(c.speech, c.fps, n))
        tracked = c.targets[:, JAW_OPEN]
        m["network_only_jaw_r"] = pearson(model.predict_features(feats, c.fps, n).weights[:, JAW_OPEN], tracked)
        if model.prior is not None:
            m["prior_only_jaw_r"] = pearson(model.prior_curves(feats, c.fps, n, c.phones)[:, 0], tracked)
        items.append({"name": c.name, "fps": c.fps, "pred_jaw": pred[:, JAW_OPEN],
                      "tracked_jaw": tracked, "loudness": loud,
                      "text": f"r={m['jaw_r']:.2f} (network alone {m['network_only_jaw_r']:.2f}, "
                              f"prior alone {m.get('prior_only_jaw_r', float('nan')):.2f})  "
                              f"loudness r={m['baseline_loudness_jaw_r']:.2f}  "
                              f"best offset {m['best_offset_frames']:+d}"})
    if items:
        plot_curves(plot_path, items, title)
    return {"per_clip": per_clip, "summary": summarize(per_clip) if per_clip else {}, "plot": str(plot_path)}


def check_audio_only(model, folder: Path, plot_path: Path) -> dict:
    """For speech without video: does the predicted jawOpen follow the speech? r vs loudness."""
    from avatar.audio import load_speech
    from avatar.expression.data import frame_loudness_db, silent_frames
    from avatar.expression.evaluate import pearson, plot_curves
    from avatar.types import JAW_OPEN

    out, items, fps = {}, [], 25.0
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".wav", ".mp3", ".m4a", ".flac", ".ogg"):
            continue
        speech = load_speech(path)
        expr = model.predict(speech, fps)
        n = len(expr)
        loud = frame_loudness_db(speech, fps, n)
        silent = silent_frames(speech, fps, n)
        jaw = expr.weights[:, JAW_OPEN]
        out[path.name] = {"seconds": speech.duration_s, "jaw_vs_loudness_r": pearson(jaw, loud),
                          "jaw_std": float(jaw.std()), "silent_frames": int(silent.sum()),
                          "silent_rest_fraction": float((jaw[silent] < np.median(jaw)).mean()) if silent.any() else None}
        items.append({"name": path.name, "fps": fps, "pred_jaw": jaw[: int(10 * fps)], "loudness": loud[: int(10 * fps)],
                      "text": f"r(jaw, loudness)={out[path.name]['jaw_vs_loudness_r']:.2f} (first 10 s)"})
    if items:
        plot_curves(plot_path, items, "audio-only clips: predicted jawOpen vs loudness")
    return out
