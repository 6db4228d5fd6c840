"""Cache per clip: targets, lip gap, 16 kHz audio, whisper, hama, loudness, vad, pocketsphinx phones."""
import os, sys, time, json
import numpy as np
from pathlib import Path
import torch; torch.set_num_threads(1)
from avatar.video.probe import probe_video, has_audio_stream
from avatar.face.tracker import track_video
from avatar.audio import load_speech
from avatar.audio.features import whisper_encoder_features, hama_features, loudness_column, vad_probabilities
from avatar.audio.phones import recognize_phones
OUT = Path("runs/feats"); OUT.mkdir(parents=True, exist_ok=True)
roots = [Path("/work/shared/data/speakers"), Path("/work/shared/data/person"), Path("/work/shared/data/corpus")]
report = {"skipped": [], "clips": []}
def lipgap(lm):
    eye = np.linalg.norm(lm[:, 33, :2] - lm[:, 263, :2], axis=1)
    return (np.linalg.norm(lm[:, 13, :2] - lm[:, 14, :2], axis=1) / np.maximum(eye, 1e-6)).astype(np.float32)
for root in roots:
    for p in sorted(root.rglob("*")):
        if not p.is_file(): continue
        try:
            probe_video(p)
        except Exception as e:
            report["skipped"].append([str(p), "not a video ffmpeg can read: " + str(e)[:100]]); continue
        if not has_audio_stream(p):
            report["skipped"].append([str(p), "no audio track"]); continue
        spk = p.parent.name
        name = f"{spk}__{p.stem}"
        out = OUT / f"{name}.npz"
        if out.exists():
            report["clips"].append(name); continue
        t = time.time()
        tr = track_video(p, progress=False)
        sp = load_speech(p)
        n = max(int(np.ceil(len(sp.samples) / 320)), 1)
        wh = whisper_encoder_features(sp.samples)[:n]
        hm = hama_features(sp.samples, n)
        ld = loudness_column(sp.samples, n)
        vad = vad_probabilities(sp.samples, n)
        ph = recognize_phones(sp)
        np.savez_compressed(out, speaker=spk, path=str(p), fps=float(tr.fps), targets=tr.blendshapes.astype(np.float32),
                 found=tr.found, lipgap=lipgap(tr.landmarks), samples=sp.samples.astype(np.float32),
                 whisper=wh.astype(np.float16), hama=hm.astype(np.float16), loud=ld, vad=vad,
                 ph_label=np.array([q.phoneme for q in ph]), ph_start=np.array([q.start_s for q in ph]),
                 ph_end=np.array([q.end_s for q in ph]))
        report["clips"].append(name)
        print(name, len(tr), tr.fps, f"{len(sp.samples)/16000:.1f}s audio", f"{time.time()-t:.1f}s", flush=True)
json.dump(report, open(OUT / "report.json", "w"), indent=1)
print("skipped:", report["skipped"])
