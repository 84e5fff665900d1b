"""The words of a product description, as the retrieval feature, the signals' product matching and
the trend report all read them: one definition, in the data layer every one of them may import."""

from __future__ import annotations

import re

TOKEN = re.compile(r"[a-z][a-z'-]+", re.IGNORECASE)


def tokens(description: str) -> list[re.Match]:
    """The description's words (letters, inner ' and -, at least 3 characters), as matches."""
    return [m for m in TOKEN.finditer(description) if len(m.group()) > 2]


def words(description: str) -> set[str]:
    return {m.group().lower() for m in tokens(description)}


def remove_word(description: str, word: str) -> str:
    """The description without every occurrence of ``word`` (case-insensitive, whole words only)."""
    kept, last = [], 0
    for m in tokens(description):
        if m.group().lower() == word:
            kept.append(description[last:m.start()])
            last = m.end()
    kept.append(description[last:])
    return " ".join("".join(kept).split())
