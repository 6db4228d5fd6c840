"""say benchmark: real-time factor per stage for ~10 s of speech, peak RSS for 10 min of audio.

    python bench/say.py --person demo [--audio2expr DIR] [--json bench/results/say.json]
                        [--long-minutes 10] [--skip-long] [--skip-startup] [--size N] [--stream]

Part 1 (in this process; models loaded first, each load step timed, and warmed up on a short
clip, not counted): SayPipeline on the text, with its own stage times: TTS -> speech features ->
audio2expr network -> plan -> target frame decode -> render (rasterize + network) -> composite
(crop band + paste back) -> watermark + encode (time the pipeline waits on ffmpeg, plus its
finish); time to first frame (from the call to the first frame handed to ffmpeg); the output's
sound (rate, bit rate, length against the video's). RTF = stage time / speech duration; total
RTF = wall time from text to finished mp4.
Part 1b (a child process `cli.py say TEXT`): when its first output came, and the models / first
frame times it prints.
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
        "learn to speak with a face, offline, in a few minutes, without sending anything away. "
        "Everything stays here.")                # 10.3 s of speech with seed 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--person", default="demo")
    p.add_argument("--audio2expr", default=None)
    p.add_argument("--text", default=TEXT)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--long-audio", type=Path, default=SHARED_AUDIO)
    p.add_argument("--long-rate", type=int, default=48000, help="sample rate of the long wav")
    p.add_argument("--long-max-s", type=float, default=None,
                   help="stop the long run after this many seconds (its peak is before rendering)")
    p.add_argument("--skip-long", action="store_true")
    p.add_argument("--skip-rtf", action="store_true")
    p.add_argument("--skip-startup", action="store_true")
    p.add_argument("--stream", action="store_true", help="part 1 writes a fragmented mp4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    result = {"machine": machine()}
    if not args.skip_rtf:
        result["rtf"] = bench_rtf(args)
        print(json.dumps(result["rtf"], indent=2), flush=True)
    if not args.skip_startup:
        result["startup"] = bench_startup(args)
        print(json.dumps(result["startup"], indent=2), flush=True)
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
    """Models loaded (each load step timed) and warmed up on a short clip, then the text through
    SayPipeline itself: each stage's time and share, time to first frame, the output's sound."""
    import avatar.render.renderer as renderer_module
    from avatar.config import SaySettings
    from pipelines.say_pipeline import SayPipeline

    steps = Steps()
    pipe = SayPipeline.from_person(args.person, device="cpu", audio2expr=args.audio2expr,
                                   load_voice=True, progress=steps)
    load = steps.seconds("load", ["voice", "person", "audio2expr"])
    out = Path(tempfile.mkdtemp(prefix="bench-say-")) / "say.mp4"
    settings = SaySettings(size=args.size, batch_size=args.batch_size, seed=args.seed)
    t = time.perf_counter()
    pipe("Warm up.", output=out.with_name("warm.mp4"), settings=settings)
    warm_up_s = time.perf_counter() - t

    composite = Timer()                                # crop band + paste band inside render()
    renderer_module.crop_band = composite.wrap(renderer_module.crop_band)
    renderer_module.paste_band = composite.wrap(renderer_module.paste_band)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    result = pipe(args.text, output=out, settings=settings, stream=args.stream)
    total = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    return {"speech_s": round(result.duration_s, 3), "frames": result.n_frames, "fps": result.fps,
            "size": [result.width, result.height], "load_s": load,
            "warm_up_clip_s": round(warm_up_s, 2), "stream": args.stream,
            "feature_kind": getattr(pipe.audio2expr, "feature_kind", None),
            "runtime": pipe.runtime_record(),
            **stage_report(result.seconds, composite.total, total, result.duration_s),
            "first_frame_s": round(result.seconds.get("first_frame", float("nan")), 3),
            "cpu_s": round(cpu, 2), "cpu_s_per_speech_s": round(cpu / result.duration_s, 3),
            "cpu_s_per_speech_s_per_core": round(cpu / result.duration_s / (os.cpu_count() or 1), 3),
            "output": output_report(out, result),
            "audio_fidelity": audio_fidelity(out, *pipe.tts.speak(args.text, args.seed).for_playback()),
            "load_avg_after": os.getloadavg()}


class Steps:
    """A progress callback that notes when each event came."""

    def __init__(self):
        self.events: list[tuple[str, int, int, float]] = []

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.events.append((stage, done, total, time.perf_counter()))

    def seconds(self, stage: str, names: list[str]) -> dict:
        """Time from each step's start (done = i) to its end (done = i + 1), named in order."""
        first: dict[int, float] = {}
        for s, done, _, t in self.events:
            if s == stage:
                first.setdefault(done, t)
        return {name: round(first[i + 1] - first[i], 2) for i, name in enumerate(names)
                if i in first and i + 1 in first}


def stage_report(seconds: dict, composite_s: float, total: float, speech_s: float) -> dict:
    """Each stage's seconds, RTF and share of the wall time (from SayPipeline's own timing)."""
    stages = {"tts": seconds.get("tts", 0.0), "features": seconds.get("features", 0.0),
              "expressions": seconds.get("expressions", 0.0), "plan": seconds.get("plan", 0.0),
              "target_decode": seconds["frames"], "render": seconds["render"] - composite_s,
              "composite": composite_s, "encode": seconds["encode"]}
    stages["other"] = total - sum(stages.values())
    return {"stages_s": {k: round(v, 3) for k, v in stages.items()},
            "stages_rtf": {k: round(v / speech_s, 3) for k, v in stages.items()},
            "stages_share": {k: round(v / total, 3) for k, v in stages.items()},
            "total_s": round(total, 2), "rtf": round(total / speech_s, 3)}


def output_report(path: Path, result) -> dict:
    """The clip as decoded: frames, the sound's rate, bit rate and length against the video's."""
    import re
    from avatar.video.check import check_media
    from avatar.video.probe import ffmpeg_header
    line = next((l for l in ffmpeg_header(path).splitlines() if "Audio:" in l), "")
    rate = int(re.search(r"(\d+) Hz", line).group(1)) if line else 16000
    kbps = re.search(r"(\d+) kb/s", line)
    check = check_media(path, rate)
    return {"ok": check.errors == "" and check.n_frames == result.n_frames,
            "audio_rate_hz": rate, "audio_kbps": int(kbps.group(1)) if kbps else None,
            "audio_s": round(check.audio_s, 4), "video_s": round(check.n_frames / result.fps, 4)}


def audio_fidelity(path: Path, samples: np.ndarray, rate: int) -> dict:
    """The output's sound decoded against the speech it was made from: SNR (dB) after the best
    alignment (within 50 ms) and the share of the energy above a quarter of the rate kept."""
    from avatar.video.probe import ffmpeg_exe
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
                          "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"], capture_output=True).stdout
    got, want = np.frombuffer(raw, np.float32), np.asarray(samples, np.float32)
    n, pad = min(len(got), len(want)), int(0.05 * rate)
    if n <= 4 * pad:
        return {"snr_db": None, "high_band_kept": None}
    lags = range(-pad, pad + 1)
    lag = max(lags, key=lambda k: float(np.dot(want[pad:n - pad], got[pad + k:n - pad + k])))
    a, b = want[pad:n - pad], got[pad + lag:n - pad + lag]
    spec_a, spec_b = np.abs(np.fft.rfft(a)) ** 2, np.abs(np.fft.rfft(b)) ** 2
    high = np.fft.rfftfreq(len(a), 1.0 / rate) > rate / 4
    return {"snr_db": round(float(10 * np.log10(np.sum(a ** 2) / max(np.sum((a - b) ** 2), 1e-20))), 1),
            "high_band_kept": round(float(spec_b[high].sum() / max(spec_a[high].sum(), 1e-20)), 3),
            "lag_samples": int(lag)}


def bench_startup(args) -> dict:
    """`cli.py say` in a fresh process: when its first output (the load bar) came, and the
    models / first-frame times it prints."""
    import re
    import selectors
    folder = Path(tempfile.mkdtemp(prefix="bench-say-start-"))
    cmd = [sys.executable, str(REPO / "cli.py"), "say", args.text, "--person", args.person,
           "-o", str(folder / "start.mp4"), "--device", "cpu"]
    if args.audio2expr:
        cmd += ["--audio2expr", args.audio2expr]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first, text = None, b""
    sel = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        sel.register(stream, selectors.EVENT_READ)
    while sel.get_map():
        for key, _ in sel.select():
            data = os.read(key.fileobj.fileno(), 1 << 16)
            if not data:
                sel.unregister(key.fileobj)
                continue
            first = first if first is not None else time.perf_counter() - t0
            text += data
    proc.wait()
    found = re.search(rb"models ([\d.]+) s, first frame after ([\d.]+) s more", text)
    return {"exit_code": proc.returncode, "first_output_s": round(first or -1.0, 2),
            "wall_s": round(time.perf_counter() - t0, 2),
            "models_s": float(found.group(1)) if found else None,
            "first_frame_after_models_s": float(found.group(2)) if found else None}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (ffmpeg)."""
    import resource
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def long_audio(minutes: float, source: Path, folder: Path, rate: int = 16000) -> Path:
    """`minutes` of the source repeated, written at `rate` (48 kHz: say keeps a 48 kHz playback
    copy of it, the most memory a recording can take)."""
    import soundfile as sf
    import soxr
    from avatar.audio import load_speech
    speech = load_speech(source)
    samples = speech.samples if rate == speech.sample_rate else \
        soxr.resample(speech.samples, speech.sample_rate, rate).astype(np.float32)
    n = int(minutes * 60 * rate)
    reps = int(np.ceil(n / len(samples)))
    path = folder / "long.wav"
    sf.write(str(path), np.tile(samples, reps)[:n], rate, subtype="PCM_16")
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
    wav = long_audio(args.long_minutes, args.long_audio, folder, args.long_rate)
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
    stopped = False
    while proc.poll() is None:
        main_rss, total = tree_rss(proc.pid)
        peak_main, peak_tree = max(peak_main, main_rss), max(peak_tree, total)
        samples.append((round(time.perf_counter() - t0, 1), round(total / 2 ** 20)))
        if args.long_max_s and time.perf_counter() - t0 > args.long_max_s:
            proc.terminate()                   # peak memory comes before rendering; stop early
            stopped = True
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.communicate()
    check = check_media(out, 16000) if out.exists() else None
    minutes = args.long_minutes
    return {"audio_min": minutes, "audio_rate_hz": args.long_rate, "exit_code": proc.returncode,
            "stopped_after_s": args.long_max_s if stopped else None, "wall_s": round(wall, 1),
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
