"""say benchmark: real-time factor per stage for ~10 s of speech, peak RSS for 10 min of audio.

    python bench/say.py --person demo [--audio2expr DIR] [--json bench/results/say.json]
                        [--long-minutes 10] [--skip-long] [--size N]

Part 1 (in this process, models loaded first and not counted): TTS -> speech features ->
audio2expr network -> target frame decode -> render (rasterize + network) -> composite (crop band
+ paste back) -> watermark + encode (time the pipeline waits on ffmpeg, plus its finish).
RTF = stage time / speech duration; total RTF = wall time from text to finished mp4.
Part 2 (a child process `cli.py say --audio long.wav`): peak RSS of the say process and of its
whole process tree (ffmpeg decoder/encoder included), sampled every 0.2 s, for `--long-minutes`
of audio made by repeating ../shared/data/audio/eng_60s.wav.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED_AUDIO = REPO.parent / "shared" / "data" / "audio" / "eng_60s.wav"
TEXT = ("Good evening. Today I want to talk about something simple: how a small computer can "
        "learn to speak with a face, offline, in a few minutes, without sending anything away.")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--person", default="demo")
    p.add_argument("--audio2expr", default=None)
    p.add_argument("--text", default=TEXT)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--long-audio", type=Path, default=SHARED_AUDIO)
    p.add_argument("--skip-long", action="store_true")
    p.add_argument("--skip-rtf", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    result = {"machine": machine()}
    if not args.skip_rtf:
        result["rtf"] = bench_rtf(args)
        print(json.dumps(result["rtf"], indent=2), flush=True)
    if not args.skip_long:
        result["long"] = bench_long(args)
        print(json.dumps(result["long"], indent=2), flush=True)
    if args.json:
        from avatar.io.files import write_json
        write_json(args.json, result)
    return 0


def machine() -> dict:
    import torch
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "load_avg_at_start": os.getloadavg()}


class Timer:
    """Wraps module functions to add up their wall time."""

    def __init__(self):
        self.total = 0.0

    def wrap(self, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.total += time.perf_counter() - t
        return timed


def bench_rtf(args) -> dict:
    import avatar.render.renderer as renderer_module
    from avatar.audio.features import speech_features
    from avatar.audio.features import n_video_frames
    from avatar.io.provenance import text_record
    from avatar.audio.speech import speech_from_text
    from avatar.config import SaySettings
    from pipelines.say_pipeline import SayPipeline

    t = time.perf_counter()
    pipe = SayPipeline.from_person(args.person, device="cpu", audio2expr=args.audio2expr)
    model = pipe.audio2expr
    speech_from_text("Warm up.")                       # loads the piper voice
    load_s = time.perf_counter() - t

    composite = Timer()                                # crop band + paste band inside render()
    renderer_module.crop_band = composite.wrap(renderer_module.crop_band)
    renderer_module.paste_band = composite.wrap(renderer_module.paste_band)
    settings = SaySettings(size=args.size, batch_size=args.batch_size)
    fps = float(pipe.target.track.fps)
    out = Path(tempfile.mkdtemp(prefix="bench-say-")) / "say.mp4"

    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    speech = speech_from_text(args.text)
    t1 = time.perf_counter()
    feats = speech_features(speech, model.feature_kind)
    t2 = time.perf_counter()
    expressions = model.predict_features(feats, fps, n_video_frames(speech.duration_s, fps),
                                         model.phones_for(speech))
    t3 = time.perf_counter()
    result = pipe.render(speech, expressions, out, settings, text_record(args.text))
    t4 = time.perf_counter()
    cpu = cpu_seconds() - cpu0

    dur = speech.duration_s
    s = result.seconds
    stages = {"tts": t1 - t0, "features": t2 - t1, "expressions": t3 - t2,
              "target_decode": s["frames"], "render": s["render"] - composite.total,
              "composite": composite.total, "encode": s["encode"]}
    total = t4 - t0
    stages["other"] = total - sum(stages.values())
    from avatar.video.check import check_media
    check = check_media(out, 16000)
    return {"speech_s": round(dur, 3), "frames": result.n_frames, "fps": fps,
            "size": [result.width, result.height], "load_s": round(load_s, 2),
            "feature_kind": model.feature_kind,
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "stages_rtf": {k: round(v / dur, 3) for k, v in stages.items()},
            "stages_share": {k: round(v / total, 3) for k, v in stages.items()},
            "total_s": round(total, 2), "rtf": round(total / dur, 3),
            "cpu_s": round(cpu, 2), "cpu_s_per_speech_s": round(cpu / dur, 3),
            "cpu_s_per_speech_s_per_core": round(cpu / dur / (os.cpu_count() or 1), 3),
            "output_ok": check.errors == "" and check.n_frames == result.n_frames,
            "load_avg_after": os.getloadavg()}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (ffmpeg)."""
    import resource
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def long_audio(minutes: float, source: Path, folder: Path) -> Path:
    import soundfile as sf
    from avatar.audio import load_speech
    speech = load_speech(source)
    n = int(minutes * 60 * speech.sample_rate)
    reps = int(np.ceil(n / len(speech.samples)))
    path = folder / "long.wav"
    sf.write(str(path), np.tile(speech.samples, reps)[:n], speech.sample_rate, subtype="PCM_16")
    return path


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of pid, RSS of pid and all its descendants) in bytes, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return rss.get(pid, 0), total


def bench_long(args) -> dict:
    from avatar.video.check import check_media
    folder = Path(tempfile.mkdtemp(prefix="bench-say-long-"))
    wav = long_audio(args.long_minutes, args.long_audio, folder)
    out = folder / "long.mp4"
    cmd = [sys.executable, str(REPO / "cli.py"), "say", "--audio", str(wav), "--person",
           args.person, "-o", str(out), "--quiet", "--device", "cpu"]
    if args.audio2expr:
        cmd += ["--audio2expr", args.audio2expr]
    if args.size:
        cmd += ["--size", str(args.size)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_main = peak_tree = 0
    samples = []
    while proc.poll() is None:
        main_rss, total = tree_rss(proc.pid)
        peak_main, peak_tree = max(peak_main, main_rss), max(peak_tree, total)
        samples.append((round(time.perf_counter() - t0, 1), round(total / 2 ** 20)))
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.communicate()
    check = check_media(out, 16000) if out.exists() else None
    minutes = args.long_minutes
    return {"audio_min": minutes, "exit_code": proc.returncode, "wall_s": round(wall, 1),
            "rtf": round(wall / (minutes * 60), 3),
            "peak_rss_say_gib": round(peak_main / 2 ** 30, 3),
            "peak_rss_tree_gib": round(peak_tree / 2 ** 30, 3),
            "rss_mib_every_10pct": samples[:: max(1, len(samples) // 10)],
            "frames": check.n_frames if check else None,
            "audio_s": round(check.audio_s, 3) if check else None,
            "decode_errors": check.errors if check else None,
            "stdout": stdout.strip()[-300:], "stderr": stderr.strip()[-300:]}


if __name__ == "__main__":
    sys.exit(main())
