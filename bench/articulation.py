"""Articulation a viewer reads, measured on the RENDERED and re-tracked output (JSON out).

    python bench/articulation.py --heldout aoc vr_man hdtf_markey vox_nph grid_swwp2s \
        [--corpus ../shared/data/speakers ...] [--person demo] [--audio2expr DIR] \
        [--out bench/results/articulation.json]

Held-out speakers (folder names in the corpus): each clip's own audio drives the person (the same
path as `say --audio`, no watermark), MediaPipe re-tracks our video and the real clip, and per clip:
- r of jawOpen and of the inner-lip gap, ours vs the real speaker (ours resampled to the real clip's
  frame times), and the best A/V offset (lag of best jawOpen match, in the real clip's frames;
  > 0: our mouth is late);
- amplitude ratio: 95th percentile of our lip gap / the real speaker's (lip gap in units of the
  outer-eye-corner distance, so faces of any size compare);
- bilabial closure rate: share of the p/b/m phones (heard by hama in the audio) at which our lip
  gap falls below the person's closed-lip gap + a margin (avatar.expression.evaluate); the real
  speaker's rate at the same phones is reported next to it (how often the recognizer's p/b/m are
  real closures);
- rest in silence: share of silent frames (30 dB under the speech level) with the lips at rest;
  each silent frame that is not ("open_in_silence": frame, lip gap, the jawOpen we asked for) is
  listed, so a low rate can be traced to the expressions or to the renderer.
Text input (--sentences, default README's sentence and two 20-word sentences with many p/b/m):
closure at piper's exact p/b/m timings and rest in silence, on the rendered video.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_CORPUS = [REPO.parent / "shared" / "data" / d for d in ("speakers", "person", "corpus")]
SENTENCES = [
    "Hello. This is a synthetic video made offline on a laptop.",
    "Peter bought a big blue map, and Bob put the paper bag by the maple tree behind my old pub.",
    "Mom baked plum pie, but maybe Pam prefers pumpkin bread with butter, apples and a small bit of plum jam.",
]


def frames_at(values: np.ndarray, fps_from: float, fps_to: float, n_to: int) -> np.ndarray:
    """Resample a per-frame curve from one frame rate onto another's frame times (linear)."""
    t_from = np.arange(len(values)) / fps_from
    return np.interp(np.arange(n_to) / fps_to, t_from, values).astype(np.float32)


def render(person, speech, out: Path, audio2expr: str | None, record: dict):
    """Render `speech` on the person; ({"render_s"}, the expressions at the person's fps)."""
    from avatar.config import SaySettings
    from pipelines.say_pipeline import SayPipeline, audio2expr_folder, audio2expr_model
    t = time.perf_counter()
    model = audio2expr_model(str(audio2expr_folder(audio2expr)), "cpu")
    pipe = SayPipeline.of(person, model, device="cpu")
    expressions = model.predict(speech, float(person.target.track.fps))
    pipe.render(speech, expressions, out, SaySettings(watermark=False), record)
    return {"render_s": time.perf_counter() - t}, expressions


def open_in_silence(gap: np.ndarray, silent: np.ndarray, threshold: float, expressions) -> list[dict]:
    """The silent frames whose lips are not at rest: frame, lip gap, the jawOpen we asked for."""
    from avatar.types import JAW_OPEN
    jaw = expressions.weights[:, JAW_OPEN]
    frames = np.flatnonzero(np.asarray(silent, bool)[: len(gap)] & (np.asarray(gap) >= threshold))
    return [{"frame": int(t), "lip_gap": round(float(gap[t]), 4),
             "jaw_open_asked": round(float(jaw[t]), 4) if t < len(jaw) else None} for t in frames]


def tracked(path: Path):
    from avatar.expression.evaluate import lip_gap
    from avatar.face.tracker import track_video
    from avatar.types import JAW_OPEN
    tr = track_video(path, progress=False, cache=False)
    return tr.blendshapes[:, JAW_OPEN].astype(np.float32), lip_gap(tr.landmarks), float(tr.fps), tr


def heldout_clip(person, clip: Path, work: Path, audio2expr, threshold: float) -> dict:
    from avatar.audio import load_speech
    from avatar.audio.phones import hama_phones
    from avatar.expression.data import silent_frames
    from avatar.expression.evaluate import (amplitude_ratio, best_offset, bilabial_events, closed_gap,
                                            closure_rate, pearson, rest_rate)
    from avatar.face.tracker import track_video
    from avatar.expression.evaluate import lip_gap
    from avatar.types import JAW_OPEN
    speech = load_speech(clip)
    real = track_video(clip, progress=False)
    real_jaw, real_gap, real_fps = real.blendshapes[:, JAW_OPEN], lip_gap(real.landmarks), float(real.fps)
    out = work / f"{clip.parent.name}_{clip.stem}.mp4"
    info, expressions = render(person, speech, out, audio2expr, {"audio": str(clip)})
    jaw, gap, fps, _ = tracked(out)
    n = len(real_jaw)
    jaw_r, gap_r = frames_at(jaw, fps, real_fps, n), frames_at(gap, fps, real_fps, n)
    lag, lag_r = best_offset(jaw_r, real_jaw)
    phones = hama_phones(speech)
    ev_ours = bilabial_events(phones, fps, len(gap))
    ev_real = bilabial_events(phones, real_fps, n)
    real_threshold = closed_gap(real_gap) + (threshold - person_closed_gap(person))
    silent = silent_frames(speech, fps, len(gap))
    return {
        "clip": f"{clip.parent.name}/{clip.name}", "seconds": speech.duration_s, "fps_real": real_fps,
        "fps_ours": fps, **info,
        "jaw_r": pearson(jaw_r, real_jaw), "lip_gap_r": pearson(gap_r, real_gap),
        "best_offset_frames": int(lag), "best_offset_r": float(lag_r),
        "amplitude_ratio": amplitude_ratio(gap, real_gap),
        "jaw_p95_ours": float(np.percentile(jaw, 95)), "jaw_p95_real": float(np.percentile(real_jaw, 95)),
        "bilabial_phones": len(ev_ours),
        "closure_rate": closure_rate(gap, ev_ours, threshold),
        "closure_rate_real_speaker": closure_rate(real_gap, ev_real, real_threshold),
        "rest_in_silence": rest_rate(gap, silent, threshold),
        "rest_in_silence_real_speaker": rest_rate(real_gap, silent_frames(speech, real_fps, n), real_threshold),
        "silent_frames": int(silent.sum()),
        "open_in_silence": open_in_silence(gap, silent, threshold, expressions),
    }


def text_case(person, sentence: str, work: Path, audio2expr, threshold: float, k: int) -> dict:
    from avatar.expression.data import silent_frames
    from avatar.expression.evaluate import bilabial_events, closure_rate, rest_rate
    from avatar.audio.speech import speech_from_text
    speech = speech_from_text(sentence)
    out = work / f"text{k}.mp4"
    info, expressions = render(person, speech, out, audio2expr, {"text": sentence})
    jaw, gap, fps, _ = tracked(out)
    events = bilabial_events(speech.phonemes, fps, len(gap))
    silent = silent_frames(speech, fps, len(gap))
    return {"text": sentence, "seconds": speech.duration_s, **info, "bilabial_phones": len(events),
            "closure_rate": closure_rate(gap, events, threshold),
            "closed_at": [bool(gap[lo:hi].min() < threshold) for lo, hi in events],
            "rest_in_silence": rest_rate(gap, silent, threshold), "silent_frames": int(silent.sum()),
            "open_in_silence": open_in_silence(gap, silent, threshold, expressions),
            "lip_gap_p95": float(np.percentile(gap, 95)), "jaw_p95": float(np.percentile(jaw, 95))}


_CLOSED: dict = {}


def person_closed_gap(person) -> float:
    from avatar.expression.evaluate import closed_gap, lip_gap
    key = id(person)
    if key not in _CLOSED:
        _CLOSED[key] = closed_gap(lip_gap(person.target.track.landmarks))
    return _CLOSED[key]


def find_speaker_clips(corpus: list[Path], speakers: list[str], max_seconds: float) -> dict[str, list[Path]]:
    from avatar.expression.data import find_clips
    from avatar.video.probe import has_audio_stream, probe_video
    found: dict[str, list[Path]] = {s: [] for s in speakers}
    for path, speaker in find_clips(corpus):
        if speaker in found and has_audio_stream(path):
            total = sum(probe_video(p).duration_s for p in found[speaker])
            if total < max_seconds:
                found[speaker].append(path)
    return found


def mean_of(rows: list[dict], key: str) -> float:
    vals = np.array([r[key] for r in rows if r.get(key) is not None], float)
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if len(vals) else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heldout", nargs="*", default=[], metavar="SPEAKER")
    p.add_argument("--corpus", action="append", type=Path)
    p.add_argument("--person", default="demo")
    p.add_argument("--audio2expr", default=None, help="checkpoint folder (default: the shipped one)")
    p.add_argument("--sentences", nargs="*", default=SENTENCES)
    p.add_argument("--max-seconds", type=float, default=12.0,
                   help="per held-out speaker, clips up to about this much speech (default 12)")
    p.add_argument("--margin", type=float, default=None,
                   help="lip gap above the person's closed gap that still counts as closed "
                        "(inter-ocular units; default avatar.expression.evaluate.CLOSED_MARGIN)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "articulation.json")
    p.add_argument("--keep", type=Path, default=None, help="keep the rendered videos in this folder")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from avatar.expression.evaluate import CLOSED_MARGIN
    from avatar.render.person import load_person
    person = load_person(args.person, device="cpu")
    threshold = person_closed_gap(person) + (CLOSED_MARGIN if args.margin is None else args.margin)
    result = {"machine": platform.processor() or platform.machine(), "person": args.person,
              "audio2expr": args.audio2expr or "checkpoints/audio2expr",
              "closed_gap_person": person_closed_gap(person), "closed_threshold": threshold,
              "heldout": [], "text": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        clips = find_speaker_clips(args.corpus or DEFAULT_CORPUS, args.heldout, args.max_seconds)
        for speaker, paths in clips.items():
            if not paths:
                raise SystemExit(f"no clip with audio for held-out speaker {speaker}")
            for path in paths:
                row = {"speaker": speaker, **heldout_clip(person, path, work, args.audio2expr, threshold)}
                print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                                  if k != "open_in_silence"}), flush=True)
                result["heldout"].append(row)
        for k, sentence in enumerate(args.sentences):
            row = text_case(person, sentence, work, args.audio2expr, threshold, k)
            print(json.dumps({k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in row.items()
                              if k2 not in ("closed_at", "open_in_silence")}), flush=True)
            result["text"].append(row)
    rows = result["heldout"]
    by_speaker: dict[str, list[dict]] = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], []).append(r)
    keys = ["jaw_r", "lip_gap_r", "amplitude_ratio", "best_offset_frames", "closure_rate",
            "closure_rate_real_speaker", "rest_in_silence", "rest_in_silence_real_speaker"]
    result["per_speaker"] = {s: {k: mean_of(v, k) for k in keys} for s, v in by_speaker.items()}
    result["summary"] = {
        "heldout_speakers": {k: mean_of(list(result["per_speaker"].values()), k) for k in keys},
        "heldout_bilabial_phones": int(sum(r["bilabial_phones"] for r in rows)),
        "heldout_closure_pooled": (float(sum(r["closure_rate"] * r["bilabial_phones"] for r in rows
                                             if r["bilabial_phones"]) /
                                         max(sum(r["bilabial_phones"] for r in rows), 1)) if rows else None),
        "text_closure_pooled": (float(sum(sum(r["closed_at"]) for r in result["text"]) /
                                      max(sum(len(r["closed_at"]) for r in result["text"]), 1))
                                if result["text"] else None),
        "text_rest_in_silence": mean_of(result["text"], "rest_in_silence"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
