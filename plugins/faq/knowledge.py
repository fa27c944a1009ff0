"""Retrieval over the admins' own files in `data/knowledge/`: what an AI answer may draw on, and nothing else.

Files (`.md`, `.txt`) are cut into chunks at blank lines and headings, long paragraphs at sentence ends
(at most `CHUNK_CHARS` characters), each chunk remembering its file. Chunks are ranked with BM25 (Okapi, the
classic search-engine formula from `rank_bm25`) over jieba words: a chunk scores when it shares the
question's rarer words, more the more often, less the longer it is. A question whose best chunk scores
below `min_score`, or that shares fewer than `min_shared` content words with it, finds nothing — and then
the bot says it does not know instead of asking the AI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rank_bm25 import BM25Okapi

from .matching import normalize, words

CHUNK_CHARS = 400
MAX_FILE_BYTES = 2_000_000
_SENTENCE = re.compile(r"(?<=[。！？!?；;\n])")


@dataclass(frozen=True, slots=True)
class Chunk:
    source: str
    """The file, relative to data/knowledge/ (named in the answer)."""
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    score: float
    shared: tuple[str, ...]
    """The question's content words found in the chunk: why it ranked."""


def chunk_text(source: str, text: str) -> list[Chunk]:
    """Paragraphs (blank lines, Markdown headings) of at most CHUNK_CHARS, split at sentence ends."""
    chunks: list[Chunk] = []
    heading = ""
    for block in re.split(r"\n\s*\n|\n(?=#)", text):
        block = block.strip()
        if not block:
            continue
        if block.startswith("#"):
            first, _, rest = block.partition("\n")
            heading, block = first.lstrip("# ").strip(), rest.strip()
            if not block:
                continue
        piece = ""
        for sentence in _SENTENCE.split(block):
            if piece and len(piece) + len(sentence) > CHUNK_CHARS:
                chunks.append(Chunk(source, f"{heading}：{piece}" if heading else piece))
                piece = ""
            piece += sentence
        if piece.strip():
            chunks.append(Chunk(source, f"{heading}：{piece.strip()}" if heading else piece.strip()))
    return chunks


class Knowledge:
    """The chunks of every file under a folder, with a BM25 index over their words."""

    def __init__(self, folder: Path) -> None:
        self.chunks: list[Chunk] = []
        if folder.is_dir():
            root = folder.resolve()
            for path in sorted(folder.rglob("*")):
                real = path.resolve()
                if path.suffix.lower() not in (".md", ".txt") or not real.is_file() \
                        or not real.is_relative_to(root) or real.stat().st_size > MAX_FILE_BYTES:
                    continue
                text = real.read_text(encoding="utf-8", errors="replace")
                self.chunks.extend(chunk_text(path.relative_to(folder).as_posix(), text))
        self._words = [words(normalize(c.text)) for c in self.chunks]
        self._bm25 = BM25Okapi(self._words) if self.chunks else None

    def search(self, question: str, *, limit: int = 3, min_score: float = 1.0, min_shared: int = 1) -> list[Hit]:
        """The best chunks for a question, best first; empty when nothing is relevant enough."""
        if self._bm25 is None:
            return []
        query = list(dict.fromkeys(words(normalize(question))))
        if not query:
            return []
        scores = self._bm25.get_scores(query)
        ranked = sorted(range(len(self.chunks)), key=lambda i: -scores[i])[:limit]
        hits = []
        for i in ranked:
            shared = tuple(w for w in query if w in self._words[i])
            if scores[i] >= min_score and len(shared) >= min_shared:
                hits.append(Hit(self.chunks[i], float(scores[i]), shared))
        return hits
