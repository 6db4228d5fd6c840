"""Training data for audio2expr: clips of talking faces -> speech features + blendshape targets.

A clip's features are kept at their native rate; `ClipData.windows(frames)` cuts the per-frame
windows on demand, so augmented variants cost one feature matrix each. Audio augmentations
(noise, pitch shift, tempo change) are applied to the waveform before feature extraction; a
tempo change also resamples the targets in time so audio and face stay in sync.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatar.audio.features import speech_features
from avatar.audio.load import frame_rms_db, normalize_loudness
from avatar.errors import AvatarError
from avatar.types import Speech, SpeechFeatures

NOT_VIDEO_SUFFIXES = (".txt", ".md", ".json", ".jsonl", ".tsv", ".csv", ".png", ".jpg", ".jpeg", ".wav",
                      ".mp3", ".flac", ".ogg", ".m4a", ".npz", ".safetensors", ".py", ".pdf")


@dataclass(frozen=True)
class Variant:
    """One (possibly augmented) rendition of a clip's audio, with targets on its own timeline."""
    features: SpeechFeatures
    targets: np.ndarray          # [T, 52] raw blendshapes (tempo-resampled for tempo variants)
    name: str


@dataclass
class ClipData:
    name: str
    speaker: str
    fps: float
    targets: np.ndarray                       # [T, 52] tracked blendshapes
    speech: Speech
    variants: list[Variant] = field(default_factory=list)
    offset_frames: float = 0.0                # audio shift removed before training (screen_clips)
    phones: tuple = ()                        # recognized phones of the clean audio (PhonemeTiming)

    def windows(self, variant: int, frames: np.ndarray, size: int,
                features: SpeechFeatures | None = None) -> np.ndarray:
        """[len(frames), size, D] windows of variant `variant` (or of `features` on its timeline,
        e.g. the variant's normalized features) for the given frame indices."""
        feats = features if features is not None else self.variants[variant].features
        centres = (frames + self.offset_frames) / self.fps
        rate = feats.rate_hz
        idx = np.round(centres * rate).astype(np.int64)[:, None] + (np.arange(size) - size // 2)
        idx = np.clip(idx, 0, len(feats.values) - 1)
        return feats.values[idx]


def find_clips(corpus_dirs: list[Path], skipped: list[tuple[Path, str]] | None = None) -> list[tuple[Path, str]]:
    """(video path, speaker) for every video under the corpus folders; speaker = parent folder.

    Videos are picked by what ffmpeg finds in a file (a video stream), not by its suffix, so MPEG
    program streams (.mpg) and friends are found too. Files that are not videos are appended to
    `skipped` as (path, reason) when a list is given; obvious non-media (text, images, audio-only
    suffixes) are skipped without running ffmpeg."""
    from avatar.video.probe import probe_video
    found = []
    for root in corpus_dirs:
        root = Path(root)
        if not root.is_dir():
            raise AvatarError(f"corpus folder {root} does not exist; give a folder of talking-face videos")
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() in NOT_VIDEO_SUFFIXES:
                reason = "not a video (suffix)"
            else:
                try:
                    probe_video(path)
                    found.append((path, path.parent.name))
                    continue
                except AvatarError as exc:
                    reason = f"ffmpeg finds no video: {str(exc)[:120]}"
            if skipped is not None:
                skipped.append((path, reason))
    return found


def augment(samples: np.ndarray, sr: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Return (augmented samples, tempo rate). kinds: clean, noise, pitch_up, pitch_down, slow, fast."""
    import librosa
    x = samples
    if kind == "noise":
        level = np.sqrt(np.mean(x ** 2)) + 1e-6
        snr_db = rng.uniform(12, 25)
        colour = np.cumsum(rng.standard_normal(len(x))) if rng.random() < 0.5 else rng.standard_normal(len(x))
        colour = colour - np.convolve(colour, np.ones(400) / 400, "same")
        colour /= np.sqrt(np.mean(colour ** 2)) + 1e-9
        x = x + colour.astype(np.float32) * level * 10 ** (-snr_db / 20)
    elif kind in ("pitch_up", "pitch_down"):
        steps = rng.uniform(1.0, 3.0) * (1 if kind == "pitch_up" else -1)
        x = librosa.effects.pitch_shift(x, sr=sr, n_steps=steps)
    elif kind in ("slow", "fast"):
        rate = rng.uniform(0.85, 0.93) if kind == "slow" else rng.uniform(1.07, 1.15)
        return normalize_loudness(librosa.effects.time_stretch(x, rate=rate).astype(np.float32), sr), rate
    return normalize_loudness(np.asarray(x, np.float32), sr), 1.0


def resample_targets(targets: np.ndarray, fps: float, rate: float, n_audio_s: float) -> np.ndarray:
    """Targets on the timeline of audio played `rate` times faster (frame t <- old time t*rate/fps)."""
    n = max(int(round(n_audio_s * fps)), 1)
    old_t = np.arange(len(targets)) / fps
    new_t = np.clip(np.arange(n) * rate / fps, 0, old_t[-1])
    return np.stack([np.interp(new_t, old_t, targets[:, k]) for k in range(targets.shape[1])], 1).astype(np.float32)


def build_variants(clip: ClipData, kinds: list[str], feature_kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for kind in kinds:
        samples, rate = augment(clip.speech.samples, clip.speech.sample_rate, kind, rng)
        feats = speech_features(Speech(samples, clip.speech.sample_rate), feature_kind)
        targets = clip.targets if rate == 1.0 else resample_targets(
            clip.targets, clip.fps, rate, len(samples) / clip.speech.sample_rate)
        clip.variants.append(Variant(feats, targets, kind))


def silence_features(feature_kind: str, seconds: float = 3.0, seed: int = 0) -> SpeechFeatures:
    """Features of near-silence (room noise at -70 dBFS), the input that must give the rest pose."""
    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal(int(seconds * 16000)) * 10 ** (-70 / 20)).astype(np.float32)
    return speech_features(Speech(noise, 16000), feature_kind)


def frame_loudness_db(speech: Speech, fps: float, n_frames: int) -> np.ndarray:
    """Log RMS (dBFS) of the 40 ms of audio around each video frame: the trivial baseline input."""
    sr = speech.sample_rate
    half = int(0.02 * sr)
    out = np.empty(n_frames, np.float32)
    for t in range(n_frames):
        c = int(round(t * sr / fps))
        seg = speech.samples[max(c - half, 0): c + half]
        out[t] = 10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-10) if len(seg) else -100.0
    return out


def silent_frames(speech: Speech, fps: float, n_frames: int, below_db: float = 30.0) -> np.ndarray:
    """Frames whose surrounding 100 ms is more than `below_db` under the speech level: [T] bool."""
    db = frame_rms_db(speech.samples, speech.sample_rate, 0.02)          # 50 per second
    level = np.percentile(db, 90)
    quiet = db < level - below_db
    idx = np.round(np.arange(n_frames) * 50 / fps).astype(int)
    out = np.zeros(n_frames, bool)
    for t, i in enumerate(idx):
        seg = quiet[max(i - 2, 0): i + 3]
        out[t] = len(seg) > 0 and bool(seg.all())
    return out

