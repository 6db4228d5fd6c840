"""Benchmark of the speech stages on this machine's CPU (JSON out).

    python bench/audio.py [--out runs/bench-audio.json] [--repeats 3] [--audio2expr DIR ...]

Measures, after one warm-up call (voice and models loaded once, as in a long-running `say`):
TTS seconds per second of speech; speech features + audio2expr network seconds per second of
speech (at 25 fps); the whole "20-word sentence -> expressions" latency; loading a 60 s file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SENTENCE_20 = ("The quick brown fox jumps over the lazy dog while seven happy children "
               "watch from the old wooden bridge nearby.")
PARAGRAPH = ("Good morning. Today we will talk about the weather, the news and a few things that "
             "happened in town this week. The market opens at nine, and the library has new books. "
             "Please remember to bring an umbrella, because it may rain in the afternoon.")


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-audio.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--audio2expr", action="append", metavar="DIR",
                        help="checkpoint folder (repeatable: each measured in turn, in one run; "
                             "default: the shipped one)")
    args = parser.parse_args(argv)

    import torch
    from avatar.audio import synthesize
    from avatar.expression import load_audio2expr
    from avatar.io.files import write_json

    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    results: dict = {"machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                                 "python": platform.python_version(), "torch_threads": torch.get_num_threads()}}
    t0 = time.perf_counter()
    synthesize("Warm up.")
    results["tts_first_call_s"] = time.perf_counter() - t0
    runs = {}
    for folder in args.audio2expr or [None]:
        runs[folder or "shipped"] = measure(load_audio2expr, folder, args)
    if len(runs) == 1:
        results.update(next(iter(runs.values())))
    else:
        results["checkpoints"] = runs
        first, *rest = runs
        base = runs[first]["sentence_20_words"]["tts_plus_expressions_s"]
        results["sentence_20_words_ratio_to_first"] = {
            k: runs[k]["sentence_20_words"]["tts_plus_expressions_s"] / base for k in rest}
    results["load_average"] = os.getloadavg()
    write_json(args.out, results)
    print(json.dumps(results, indent=2))
    return 0


def measure(load_audio2expr, folder, args) -> dict:
    """The speech stages with one audio2expr checkpoint (None: the shipped one)."""
    from avatar.audio import load_speech, speech_features, synthesize
    from avatar.audio import features as feature_module
    from avatar.audio.phones import recognize_phones
    forget = feature_module._HAMA_LAST.clear      # hama keeps its last answer: time it afresh each call
    results: dict = {"checkpoint": folder or "shipped"}
    t0 = time.perf_counter()
    model = load_audio2expr(folder)
    results["audio2expr_load_s"] = time.perf_counter() - t0
    results["feature_kind"] = model.feature_kind
    model.predict(synthesize("Warm up again."), args.fps)

    tts_s, speech = best_of(lambda: synthesize(PARAGRAPH), args.repeats)
    results["tts_paragraph"] = {"speech_s": speech.duration_s, "seconds": tts_s,
                                "seconds_per_speech_second": tts_s / speech.duration_s}
    feat_s, feats = best_of(lambda: forget() or speech_features(speech, model.feature_kind), args.repeats)
    from avatar.audio import n_video_frames
    n = n_video_frames(speech.duration_s, args.fps)
    phones_s, phones = best_of(lambda: recognize_phones(speech), args.repeats)
    net_s, _ = best_of(lambda: model.predict_features(feats, args.fps, n, phones), args.repeats)
    results["features_paragraph"] = {"seconds": feat_s, "seconds_per_speech_second": feat_s / speech.duration_s}
    results["phones_paragraph"] = {"seconds": phones_s, "seconds_per_speech_second": phones_s / speech.duration_s}
    results["network_paragraph"] = {"seconds": net_s, "frames": n, "seconds_per_speech_second": net_s / speech.duration_s}
    results["features_plus_network_seconds_per_speech_second"] = (feat_s + phones_s + net_s) / speech.duration_s

    def sentence_to_expressions():
        forget()
        s = synthesize(SENTENCE_20)
        return s, model.predict(s, args.fps)
    total_s, (s20, expr) = best_of(sentence_to_expressions, args.repeats)
    results["sentence_20_words"] = {"words": len(SENTENCE_20.split()), "speech_s": s20.duration_s,
                                    "tts_plus_expressions_s": total_s, "frames": len(expr)}
    long_audio = REPO.parent / "shared" / "data" / "audio" / "eng_60s.wav"
    if long_audio.is_file():
        load_s, sp = best_of(lambda: load_speech(long_audio), 1)
        pred_s, _ = best_of(lambda: forget() or model.predict(sp, args.fps), 1)
        results["long_audio_60s"] = {"load_s": load_s, "features_plus_network_s": pred_s,
                                     "speech_s": sp.duration_s}
    return results


if __name__ == "__main__":
    sys.exit(main())
