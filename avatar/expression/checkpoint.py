"""Loading and saving the audio2expr checkpoint (config.json + model.safetensors), and inference.

`load_audio2expr()` returns an `Audio2Expression` whose `predict(speech, fps)` gives
`n_video_frames(duration, fps) = ceil(duration * fps)` frames of 52 blendshapes. Only the mouth
and jaw blendshapes (MOUTH_BLENDSHAPES) come from the network; the others (eyes, brows, cheeks,
nose) are set to the training corpus' average, a neutral pose for the person map.

Silence gate: where the audio around a frame is more than `silence_gate_db` (config) below the
speech level, the mouth is blended to the closed pose, ramped over the speech frame beside the pause
(every frame `silent_frames` calls silent is fully closed). The
network alone learns silence only roughly from ~80 s of data; the gate makes pauses reliable.

Phonetic prior (config "prior", see `avatar.expression.prior`): jawOpen and five lip blendshapes
are the network's blended with the articulation implied by the phones PocketSphinx hears and, when
the checkpoint has articulation.safetensors, by the TTS-trained articulation net. `predict` takes
the phones from the Speech (piper's exact timings for text) or recognizes them; `predict_features`
uses the prior only when it is given the phones.

Bilabial closure (config "closure"): the lips close on p, b and m. Where a frame falls inside a
bilabial phone (piper's exact timings for text; for recorded speech the phones hama hears, see
`avatar.audio.phones.hama_phones`), the mouth is blended to the closed pose (`closed_z`, default the
rest pose). Amplitude (config "output_gain"): the network's z output is scaled by this factor, measured
in speaker-grouped cross-validation as the ratio of the tracked to the predicted spread on held-out
speakers, so the mouth opens as wide as real speech instead of regressing to a half-open mean.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avatar.audio.features import (FEATURE_KINDS, UtteranceNorm, frame_windows, loudness_db,
                                   n_video_frames, network_features, speech_features)
from avatar.config import FPS_MAX, checkpoints_dir
from avatar.errors import AvatarError
from avatar.audio.phones import recognize_phones
from avatar.expression.model import Audio2ExpressionEnsemble, Audio2ExpressionNet, NetConfig
from avatar.expression.articulation import ArticulationConfig, ArticulationNet
from avatar.expression.prior import PriorConfig, blend_prior, combined_curves
from avatar.io.files import load_arrays, read_json, save_arrays, sha256_file, write_json
from avatar.types import (BLENDSHAPE_NAMES, MOUTH_BLENDSHAPES, Expressions, PhonemeTiming,
                          Speech, SpeechFeatures)

FORMAT_VERSION = 1
SILENCE_FLOOR_DB = -60.0     # audio below this (dBFS, after loudness normalization) is never speech
CHUNK_FRAMES = 1500          # inference in chunks of this many frames (constant memory)
DEFAULT_DIR = checkpoints_dir() / "audio2expr"


class Audio2Expression:
    """Inference wrapper: speech -> Expressions at a video frame rate."""

    def __init__(self, net: Audio2ExpressionNet | Audio2ExpressionEnsemble, config: dict, device: str = "cpu",
                 articulation: ArticulationNet | None = None):
        self.net = net.to(device).eval()
        self.device = device
        self.config = config
        self.feature_kind = config["feature_kind"]
        self.window = int(config["net"]["window"])
        self.mean = np.asarray(config["output_mean"], np.float32)
        self.std = np.asarray(config["output_std"], np.float32)
        self.outputs = list(config["output_indices"])
        self.rest_z = np.asarray(config.get("rest_z") or np.zeros(len(self.outputs)), np.float32)
        self.gate_db = config.get("silence_gate_db")
        self.output_gain = float(config.get("output_gain") or 1.0)
        self.closure = config.get("closure")
        self.smooth_s = float(config.get("output_smooth_s") or 0.0)
        self.delay_s = float(config.get("output_delay_s") or 0.0)
        self.closed_z = np.asarray(config.get("closed_z") or self.rest_z, np.float32)
        self.prior = PriorConfig(**config["prior"]) if config.get("prior") else None
        self.articulation = articulation.eval() if articulation is not None else None
        norm = config.get("feature_norm")
        self.feature_norm = UtteranceNorm.from_dict(norm, int(config["net"]["feature_dim"])) \
            if norm else None

    def predict(self, speech: Speech, fps: float) -> Expressions:
        """ceil(duration * fps) frames; frame t is driven by the audio around time t / fps."""
        if not fps or fps <= 0 or fps > FPS_MAX:
            raise AvatarError(f"frame rate {fps} is not usable; give fps between 1 and {FPS_MAX:g}")
        feats = speech_features(speech, self.feature_kind)
        phones = self.phones_for(speech)
        return self.predict_features(feats, fps, n_video_frames(speech.duration_s, fps), phones,
                                     self.closure_phones_for(speech))

    def closure_phones_for(self, speech: Speech) -> tuple[PhonemeTiming, ...] | None:
        """The phones whose p/b/m close the lips: piper's timings for TTS speech, else the phones hama
        hears; None when the checkpoint has no closure."""
        if not self.closure:
            return None
        if speech.phonemes:
            return speech.phonemes
        from avatar.audio.phones import hama_phones
        return hama_phones(speech)

    def phones_for(self, speech: Speech) -> tuple[PhonemeTiming, ...] | None:
        """The phones the prior reads: piper's own timings for TTS speech, else the phones heard in
        it; None when the checkpoint has no prior."""
        if self.prior is None:
            return None
        return speech.phonemes or recognize_phones(speech)

    def predict_features(self, feats: SpeechFeatures, fps: float, n_frames: int,
                         phones: tuple[PhonemeTiming, ...] | None = None,
                         closure_phones: tuple[PhonemeTiming, ...] | None = None) -> Expressions:
        """Expressions from the speech's raw features (the network's input normalization, the
        prior, the output gain, the silence gate and the bilabial closure are applied here)."""
        z = self.predict_z(network_features(feats, self.feature_norm), fps, n_frames)
        if self.prior is not None and phones is not None:
            z = blend_prior(z, self.prior_curves(feats, fps, n_frames, phones), self.prior, self.outputs)
        z = delay_frames(smooth_in_time(z, self.smooth_s * fps), int(round(self.delay_s * fps))) * self.output_gain
        if self.gate_db is not None:
            gate = speech_gate(feats, fps, n_frames, float(self.gate_db))[:, None]
            z = gate * z + (1.0 - gate) * (self.closed_z if self.closure else self.rest_z)[None]
        if self.closure and closure_phones:
            m = closure_mask(closure_phones, fps, n_frames, float(self.closure.get("lead_s", 0.0)))
            m = hold_for(m, int(round(self.delay_s * fps)))[:, None]
            z = (1.0 - m) * z + m * self.closed_z[None]
        weights = np.repeat(self.mean[None], n_frames, 0)
        weights[:, self.outputs] = self.mean[self.outputs] + self.std[self.outputs] * z
        return Expressions(np.clip(weights, 0.0, 1.0).astype(np.float32), float(fps))

    def prior_curves(self, feats: SpeechFeatures, fps: float, n_frames: int,
                     phones: tuple[PhonemeTiming, ...]) -> np.ndarray:
        """[n_frames, 3] the phonetic prior's articulation curves for these frames."""
        return combined_curves(phones, whisper_part(feats), self.articulation, fps, n_frames,
                               self.prior.lead_s, self.prior.smooth_s)

    def predict_z(self, feats: SpeechFeatures, fps: float, n_frames: int) -> np.ndarray:
        """Network output (z units, [n_frames, n_out]), in overlapping chunks (windows are cut per
        chunk, so memory does not grow with the length of the speech)."""
        k = NetConfig(**self.config["net"]).reach
        out = np.zeros((n_frames, len(self.outputs)), np.float32)
        with torch.inference_mode():
            for start in range(0, n_frames, CHUNK_FRAMES):
                lo, hi = max(start - k, 0), min(start + CHUNK_FRAMES + k, n_frames)
                windows = frame_windows(feats, fps, hi - lo, self.window, first=lo)
                x = torch.from_numpy(windows[None]).to(self.device)
                z = self.net(x)[0].cpu().numpy()
                end = min(start + CHUNK_FRAMES, n_frames)
                out[start:end] = z[start - lo: start - lo + end - start]
        return out


def smooth_in_time(z: np.ndarray, sigma_frames: float) -> np.ndarray:
    """z [T, n] low-passed along time (Gaussian, sigma in frames; below 0.1 frame: unchanged). Applied
    before the silence gate and the p/b/m closure, which stay sharp."""
    if sigma_frames < 0.1:
        return z
    from scipy.ndimage import gaussian_filter1d
    return gaussian_filter1d(z, sigma_frames, axis=0, mode="nearest").astype(np.float32)


def delay_frames(z: np.ndarray, frames: int) -> np.ndarray:
    """z [T, n] shown `frames` frames later (the first frame repeated at the start; same length).
    Speaker-grouped cross-validation found the network + prior about a frame early at 25 fps."""
    if frames <= 0 or len(z) == 0:
        return z
    return np.concatenate([np.repeat(z[:1], min(frames, len(z)), 0), z[:max(len(z) - frames, 0)]])


def hold_for(mask: np.ndarray, frames: int) -> np.ndarray:
    """[T] mask held `frames` frames longer at the end of each run (the p/b/m closure lasts as long
    past the phone as the delayed output lags it)."""
    out = mask.copy()
    for k in range(1, frames + 1):
        out[k:] = np.maximum(out[k:], mask[:-k])
    return out


def whisper_part(feats: SpeechFeatures) -> SpeechFeatures:
    """The Whisper encoder columns + loudness of features that hold more (the articulation net
    reads only those)."""
    if feats.kind in ("whisper_hama", "whisper3_hama"):
        v = feats.values
        return SpeechFeatures(np.concatenate([v[:, :384], v[:, -1:]], 1), feats.rate_hz, "whisper_tiny")
    return feats


BILABIAL_LABELS = frozenset({"P", "B", "M", "p", "b", "m"})
# blendshapes that part the lips: zero in the closed pose (p/b/m, silence)
OPENING_SHAPES = ("jawOpen", "mouthFunnel", "mouthPucker", "mouthLowerDownLeft", "mouthLowerDownRight",
                  "mouthUpperUpLeft", "mouthUpperUpRight", "mouthStretchLeft", "mouthStretchRight")
# the closed lips turn in a little (weight added to these), so they cover the renderer's mouth
# interior: with the plain rest pose the demo person showed a thin seam with teeth in 7 % of silent
# frames (docs/BENCHMARKS.md, audio session 9)
ROLL_IN_SHAPES = ("mouthRollLower", "mouthRollUpper")
ROLL_IN = 0.1


def closed_pose_z(mean: np.ndarray, std: np.ndarray, rest_z: np.ndarray, roll_in: float = ROLL_IN) -> np.ndarray:
    """The rest pose (z units over MOUTH_BLENDSHAPES) with every lip-parting blendshape at weight 0
    and the lips rolled in by `roll_in` (weight added to ROLL_IN_SHAPES)."""
    z = np.asarray(rest_z, np.float32).copy()
    for k, i in enumerate(MOUTH_BLENDSHAPES):
        scale = max(float(std[i]), 1e-6)
        if BLENDSHAPE_NAMES[i] in OPENING_SHAPES:
            z[k] = -mean[i] / scale
        elif BLENDSHAPE_NAMES[i] in ROLL_IN_SHAPES:
            z[k] += roll_in / scale
    return z


def closure_mask(phones, fps: float, n_frames: int, lead_s: float = 0.0) -> np.ndarray:
    """[n_frames] 1 at frames whose time (+ lead_s) falls inside a p/b/m phone and at the frame
    before it (the lips close before the release), 0.5 at the frame after, else 0; a phone shorter
    than a frame closes its nearest frame and the one before."""
    mask = np.zeros(n_frames, np.float32)
    for p in phones:
        if p.phoneme not in BILABIAL_LABELS:
            continue
        lo = int(np.ceil((p.start_s - lead_s) * fps - 1e-9))
        hi = int(np.floor((p.end_s - lead_s) * fps + 1e-9))
        if hi < lo:                                     # shorter than a frame: its nearest frame
            lo = hi = int(round(((p.start_s + p.end_s) / 2 - lead_s) * fps))
        if 0 <= hi + 1 < n_frames:
            mask[hi + 1] = max(mask[hi + 1], 0.5)
        mask[max(lo - 1, 0):min(hi + 1, n_frames)] = 1.0
    return mask


def speech_gate(feats: SpeechFeatures, fps: float, n_frames: int, below_db: float,
                hold_s: float = 0.03) -> np.ndarray:
    """[n_frames] in [0, 1]: 0 at every frame with no speech within +-hold_s (the frames that
    `avatar.expression.data.silent_frames` calls silent), 1 in speech, and a one-frame ramp on the
    speech side of each pause edge, so a pause is closed from its first frame to its last.
    Speech = louder than `below_db` under the 90th-percentile level and than SILENCE_FLOOR_DB."""
    db = loudness_db(feats)
    if len(db) == 0:
        return np.ones(n_frames, np.float32)
    level = float(np.percentile(db, 90))
    active = ((db > level - below_db) & (db > SILENCE_FLOOR_DB)).astype(np.float32)
    half = max(int(round(hold_s * feats.rate_hz)), 1)
    kernel = np.ones(2 * half + 1, np.float32)
    near = np.convolve(active, kernel, "same") > 0
    idx = np.clip(np.round(np.arange(n_frames) / fps * feats.rate_hz).astype(int), 0, len(db) - 1)
    gate = near[idx].astype(np.float32)
    return np.minimum(gate, soft_edges(gate))


def soft_edges(gate: np.ndarray) -> np.ndarray:
    """A 0/1 curve averaged over three frames (the ends repeated): 1/3 and 2/3 beside each edge."""
    ramp = np.ones(3, np.float32) / 3
    return np.clip(np.convolve(np.pad(gate, 1, mode="edge"), ramp, "valid"), 0.0, 1.0)


def save_audio2expr(directory: str | Path, net: Audio2ExpressionNet | Audio2ExpressionEnsemble, feature_kind: str,
                    mean: np.ndarray, std: np.ndarray, extra: dict | None = None,
                    rest_z: np.ndarray | None = None, silence_gate_db: float | None = None,
                    prior: PriorConfig | None = None, articulation: ArticulationNet | None = None,
                    feature_norm: UtteranceNorm | None = None, output_gain: float = 1.0,
                    closure: dict | None = None, closed_z: np.ndarray | None = None,
                    output_smooth_s: float | None = None, output_delay_s: float | None = None) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_module(directory / "model.safetensors", net, "audio2expr")
    learned = None
    if articulation is not None:
        save_module(directory / "articulation.safetensors", articulation, "audio2expr-articulation")
        learned = {"config": articulation.cfg.to_dict(),
                   "sha256": sha256_file(directory / "articulation.safetensors")}
    elif (directory / "articulation.safetensors").exists():
        (directory / "articulation.safetensors").unlink()
    config = {
        "format": "audio2expr", "version": FORMAT_VERSION, "feature_kind": feature_kind,
        "net": net.cfg.to_dict(), "output_indices": list(MOUTH_BLENDSHAPES),
        "ensemble": len(net.members) if isinstance(net, Audio2ExpressionEnsemble) else None,
        "output_names": [BLENDSHAPE_NAMES[i] for i in MOUTH_BLENDSHAPES],
        "output_mean": [float(x) for x in mean], "output_std": [float(x) for x in std],
        "rest_z": [float(x) for x in rest_z] if rest_z is not None else None,
        "silence_gate_db": silence_gate_db,
        "output_gain": float(output_gain),
        "closure": closure,
        "output_smooth_s": output_smooth_s,
        "output_delay_s": output_delay_s,
        "closed_z": [float(x) for x in closed_z] if closed_z is not None else None,
        "prior": prior.to_dict() if prior is not None else None,
        "feature_norm": feature_norm.to_dict() if feature_norm is not None else None,
        "articulation": learned,
        "frames": "ceil(duration * fps); frame t uses audio centred at t / fps",
        "non_mouth_blendshapes": "set to the training corpus average (not predicted)",
        "model_sha256": sha256_file(directory / "model.safetensors"),
        **(extra or {}),
    }
    write_json(directory / "config.json", config)


def load_audio2expr(checkpoint_dir: str | Path | None = None, device: str = "cpu") -> Audio2Expression:
    """Load the generalized network; AvatarError if the folder is missing, incomplete or tampered."""
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else DEFAULT_DIR
    if not directory.is_dir():
        raise AvatarError(f"audio2expr checkpoint folder {directory} does not exist; train one with "
                          "`train-audio2expr` or restore checkpoints/audio2expr from the repository")
    config = read_json(directory / "config.json", "audio2expr config")
    if config.get("format") != "audio2expr" or config.get("version") != FORMAT_VERSION:
        raise AvatarError(f"{directory}/config.json is not an audio2expr checkpoint of version "
                          f"{FORMAT_VERSION}; re-train it with `train-audio2expr`")
    weights_path = directory / "model.safetensors"
    if weights_path.is_file() and sha256_file(weights_path) != config.get("model_sha256"):
        raise AvatarError(f"{weights_path} does not match the hash in its config.json (changed or "
                          "damaged); restore both files together or re-train")
    try:
        net_cfg = NetConfig(**config["net"])
        n_out = len(config["output_indices"])
        assert config["feature_kind"] in FEATURE_KINDS and net_cfg.n_out == n_out
        assert len(config["output_mean"]) == len(config["output_std"]) == len(BLENDSHAPE_NAMES)
        assert 0.0 <= float(config.get("output_smooth_s") or 0.0) <= 1.0
        assert 0.0 <= float(config.get("output_delay_s") or 0.0) <= 0.5
        if config.get("prior") is not None:
            PriorConfig(**config["prior"])
        if config.get("feature_norm") is not None:
            UtteranceNorm.from_dict(config["feature_norm"], net_cfg.feature_dim)
    except ValueError as exc:
        raise AvatarError(f"{directory}/config.json: bad prior or feature_norm entry ({exc}); re-train with "
                          "`train-audio2expr`") from None
    except (TypeError, KeyError, AssertionError):
        raise AvatarError(f"{directory}/config.json is incomplete or inconsistent; re-train with "
                          "`train-audio2expr`") from None
    members = config.get("ensemble")
    if members is not None and (not isinstance(members, int) or not 1 <= members <= 32):
        raise AvatarError(f"{directory}/config.json: ensemble must be 1-32 networks (got {members!r}); "
                          "re-train with `train-audio2expr`")
    net = Audio2ExpressionEnsemble(net_cfg, members) if members else Audio2ExpressionNet(net_cfg)
    load_module(weights_path, net, "audio2expr weights")
    return Audio2Expression(net, config, device, load_articulation(directory, config))


def load_articulation(directory: Path, config: dict) -> ArticulationNet | None:
    """The TTS-trained articulation net of the checkpoint, or None if it has none."""
    info = config.get("articulation")
    if info is None:
        return None
    path = directory / "articulation.safetensors"
    if not path.is_file() or sha256_file(path) != info.get("sha256"):
        raise AvatarError(f"{path} is missing or does not match the hash in config.json; restore the "
                          "checkpoint folder or re-train with `train-audio2expr`")
    try:
        cfg = ArticulationConfig(**{**info["config"], "dilations": tuple(info["config"]["dilations"])})
        assert cfg.feature_dim == (385 if config["feature_kind"] in ("whisper_hama", "whisper3_hama")
                                   else int(config["net"]["feature_dim"]))
    except (TypeError, KeyError, AssertionError):
        raise AvatarError(f"{directory}/config.json: articulation entry is incomplete or does not fit "
                          "the features; re-train with `train-audio2expr`") from None
    net = ArticulationNet(cfg)
    load_module(path, net, "articulation weights")
    return net


def save_module(path: Path, module: torch.nn.Module, fmt: str) -> None:
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in module.state_dict().items()}
    save_arrays(path, arrays, {"format": fmt, "version": str(FORMAT_VERSION)})


def load_module(path: Path, module: torch.nn.Module, what: str) -> None:
    """Fill the module's weights from a safetensors file, checking names and shapes."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    arrays = load_arrays(path, expected, what)
    module.load_state_dict({k: torch.from_numpy(arrays[k]) for k in expected})
