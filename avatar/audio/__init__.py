"""Speech in: load audio files, text to speech (piper), speech features aligned to video frames."""
from avatar.audio.features import frame_windows, n_video_frames, speech_features
from avatar.audio.load import SAMPLE_RATE, load_speech
from avatar.audio.tts import synthesize

__all__ = ["SAMPLE_RATE", "load_speech", "synthesize", "speech_features", "frame_windows",
           "n_video_frames"]
