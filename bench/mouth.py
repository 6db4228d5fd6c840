"""Mouth detail of `say` outputs against the target frames they were rendered into.

    python bench/mouth.py [--person demo] [--json bench/results/mouth.json] [--label NAME] [--keep DIR]
                          [--say-args "--lips-source matched"]

Makes two clips with `cli.py say` (README's sentence, and the first 10 s of a recorded English
speech from ../shared/data/audio), then compares each output frame with the target frame it was
rendered into (say's frame mapping: ping-pong from frame 0) inside the mouth box (MediaPipe lips
of the output frame, grown 35 %): detail ratio (variance of the Laplacian, ours / target's),
high-frequency ratio (energy above 1/4 Nyquist), mouth PSNR and flicker ratio (frame-to-frame
change, ours / target's). A user's clip has no ground truth, so PSNR here only says how far the
new mouth is from the target's own; detail and flicker say whether it looks like the real frames.
The load average is recorded (the cores are shared). Results are added under --label.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar.render.metrics import LipLandmarks, MouthScores, mouth_box  # noqa: E402
from avatar.video.frames import pingpong_indices  # noqa: E402
from avatar.video.reader import VideoReader  # noqa: E402

SENTENCE = "Hello. This is a synthetic video made offline on a laptop."
SPEECH = ROOT.parent / "shared" / "data" / "audio" / "eng_60s.wav"


def make_clips(person: str, folder: Path, say_args: list[str] = ()) -> dict[str, Path]:
    import soundfile as sf
    audio, sr = sf.read(str(SPEECH), dtype="float32", frames=10 * 16000 * 3)
    wav = folder / "speech10.wav"
    sf.write(str(wav), audio[:int(10 * sr)], sr)
    clips = {"readme_sentence": folder / "sentence.mp4", "speech_10s": folder / "speech.mp4"}
    base = [sys.executable, str(ROOT / "cli.py"), "say", "--person", person, "--quiet", *say_args]
    runs = {"readme_sentence": [SENTENCE], "speech_10s": ["--audio", str(wav)]}
    for name, extra in runs.items():
        t = time.perf_counter()
        subprocess.run([*base, *extra, "-o", str(clips[name])], check=True)
        print(f"{name}: made in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return clips


def measure(clip: Path, target: Path) -> dict:
    out_frames = list(VideoReader(clip))
    target_frames = list(VideoReader(target, max_side=max(out_frames[0].shape[:2])))
    mapping = pingpong_indices(0, len(out_frames), len(target_frames))
    lips = LipLandmarks()
    scores = MouthScores()
    try:
        for frame, t in zip(out_frames, mapping):
            pts = lips(frame)
            if pts is None:
                continue
            scores.add(frame, target_frames[int(t)], mouth_box(pts, frame.shape))
    finally:
        lips.close()
    return {**scores.summary(), "frames": len(out_frames)}


def independent_check(clip: Path, target: Path) -> dict | None:
    tool = ROOT.parent / "shared" / "tools" / "mouth_detail.py"
    if not tool.is_file():
        return None
    res = subprocess.run([sys.executable, str(tool), str(clip), str(target), "--json"],
                         capture_output=True, text=True)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if res.returncode == 0 and lines else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--person", default="demo")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "mouth.json")
    ap.add_argument("--label", default="shipped")
    ap.add_argument("--keep", type=Path, help="copy the two clips into this folder (to look at them)")
    ap.add_argument("--say-args", default="", help="more options for `cli.py say`, in one string")
    args = ap.parse_args()
    from avatar.io.person import person_dir
    target = person_dir(args.person) / "target.mp4"
    import shlex
    say_args = shlex.split(args.say_args)
    result = {"person": args.person, "say_args": say_args, "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, clip in make_clips(args.person, Path(tmp), say_args).items():
            result[name] = measure(clip, target)
            result[name]["independent_mouth_detail_py"] = independent_check(clip, target)
            print(name, json.dumps(result[name]), file=sys.stderr)
            if args.keep:
                import shutil
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(clip, args.keep / f"{name}.mp4")
    result["load_average_end"] = os.getloadavg()
    old = json.loads(args.json.read_text()) if args.json.is_file() else {}
    old[args.label] = result
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(old, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
