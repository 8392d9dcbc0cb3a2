"""Language identification, offline: py3langid (the maintained fork of langid.py).

Its n-gram model ships inside the wheel, so nothing is downloaded. Two choices make it
dependable on short chat replies: text is lower-cased (a reply in ALL CAPS is still Spanish),
and the candidates are the LANGUAGES a chat model plausibly answers in, not all 97 of the
model (which calls "La capital de Francia es París." Occitan).
"""

from __future__ import annotations

import functools

LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "nl", "ru", "pl", "tr", "sv", "zh", "ja", "ko", "ar", "hi")


@functools.lru_cache(maxsize=1)
def _identifier():
    from py3langid import langid  # late: loading the model takes a fraction of a second

    identifier = langid.LanguageIdentifier.from_model_file(langid.MODEL_DIR / langid.MODEL_FILE)
    identifier.set_languages(list(LANGUAGES))
    return identifier


def language(text: str) -> str:
    """The ISO 639-1 code of the text's language, one of LANGUAGES ("" for text without letters)."""
    if not any(c.isalpha() for c in text):
        return ""
    return _identifier().classify(text.lower())[0]


def is_spanish(text: str) -> bool:
    """Whether the text is Spanish; empty text is not."""
    return language(text) == "es"
