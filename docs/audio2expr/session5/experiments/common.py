import numpy as np, glob, json
from pathlib import Path
from avatar.types import PhonemeTiming, SpeechFeatures, JAW_OPEN
from avatar.expression.data import ClipData, Variant
from avatar.audio.features import hama_tokens, hama_blank_index
from avatar.audio.phones import phones_from_posteriors
from avatar.types import Speech

def speaker_group(spk):
    return "obama" if spk in ("obama", "obama_other") else spk

def load_all():
    out = []
    toks, blank = hama_tokens(), hama_blank_index()
    for f in sorted(glob.glob("runs/feats/*.npz")):
        d = np.load(f)
        name = Path(f).stem
        ps = tuple(PhonemeTiming(str(l), float(a), float(b)) for l, a, b in zip(d["ph_label"], d["ph_start"], d["ph_end"]))
        hm = d["hama"].astype(np.float32)
        hph = phones_from_posteriors(hm * 4.0, toks, blank, 50.0, d["vad"] > 0.5, 0.06)
        c = ClipData(name=name, speaker=speaker_group(str(d["speaker"])), fps=float(d["fps"]),
                     targets=d["targets"], speech=Speech(d["samples"], 16000), phones=ps)
        c.hama_phones = hph
        c.raw = {"whisper": d["whisper"].astype(np.float32), "hama": hm, "loud": d["loud"], "vad": d["vad"][:, None],
                 "lipgap": d["lipgap"]}
        out.append(c)
    return out

def feats(c, kind):
    r = c.raw
    cols = {"whisper": [r["whisper"]], "hama": [r["hama"]], "both": [r["whisper"], r["hama"]]}[kind.replace("+vad", "")]
    if kind.endswith("+vad"):
        cols = cols + [r["vad"] * 2 - 1]
    kk = "whisper_tiny" if kind == "whisper" else "hama"
    return SpeechFeatures(np.concatenate(cols + [r["loud"]], 1).astype(np.float32), 50.0, kk)
