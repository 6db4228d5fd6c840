"""What a voice can speak: the text of a say job cleaned and checked before any model loads."""
from __future__ import annotations

import unicodedata

from tqdm import tqdm

from avatar.config import MAX_TEXT_CHARS
from avatar.errors import AvatarError

_UNSPOKEN = {"So", "Sk", "Cf", "Co", "Cs", "Cn", "Mn", "Me"}


def speakable_text(text: str, english: bool = True) -> str:
    """The text the voice will speak: emoji and other pictographs removed (with a warning);
    AvatarError for empty or too long text, or (for the bundled English voice) letters of
    scripts it cannot speak."""
    if not isinstance(text, str) or not text.strip():
        raise AvatarError("the text to speak is empty; give at least one word")
    if len(text) > MAX_TEXT_CHARS:
        raise AvatarError(f"the text is {len(text)} characters long, at most {MAX_TEXT_CHARS} fit "
                          "one clip (about 5 min); split it into several clips, e.g. batch jobs")
    text = unicodedata.normalize("NFKC", text)
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in _UNSPOKEN)
    removed = len(text) - len(kept)
    foreign = list(dict.fromkeys(ch for ch in kept if ch.isalpha() and not _latin(ch)))
    if foreign and english:
        raise AvatarError(f"the text holds letters the English voice cannot speak "
                          f"({''.join(foreign[:5])}); give English text, a piper voice of that "
                          "language with --voice, or a recording with --audio")
    if not any(ch.isalnum() for ch in kept):
        raise AvatarError("the text holds no words to speak (only symbols or emoji); "
                          "give at least one word")
    if removed:
        tqdm.write(f"note: left out {removed} emoji/symbol characters the voice cannot speak")
    return kept


def _latin(ch: str) -> bool:
    return "LATIN" in unicodedata.name(ch, "")
