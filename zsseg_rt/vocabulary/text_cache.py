"""Text embeddings of a vocabulary: the prompts of each class through a text encoder, and the per-name cache.

A class's embedding is the official ZegCLIP/CLIP one: every prompt (template filled with the name) through the
text encoder, each prompt embedding L2-normalised, averaged over the class's prompts, normalised again. It
depends only on the name and the templates, so it is cached per ``(name, templates)``: editing a vocabulary
encodes only the names that are new.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .names import split_synonyms
from .templates import expand_templates
from .tokenizer import ClipTokenizer

__all__ = [
    "TOKEN_BUCKET",
    "TextEmbeddingCache",
    "token_batches",
    "embed_prompt_groups",
    "embed_names",
    "check_distinct_prompts",
]

TOKEN_BUCKET = 8  # text sequence lengths are rounded up to a multiple of this (few distinct shapes for TensorRT)

EncodeTokens = Callable[[np.ndarray], np.ndarray]  # [P, L] int32 -> [P, D] float32 (one text-graph call)


def token_batches(
    tokens: np.ndarray, trim: bool, max_prompts: int = 256, bucket: int = TOKEN_BUCKET
) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield ``(row indices, tokens[rows, :L])`` chunks of at most ``max_prompts`` prompts of ``[P, L]`` tokens.

    With ``trim`` (a text graph with a dynamic sequence axis) prompts are grouped by ``L`` = their own length (start
    token .. end token) rounded up to a multiple of ``bucket``, so a prompt's embedding does not depend on the other
    prompts; otherwise every chunk keeps the full context length.
    """
    lengths = np.count_nonzero(tokens, axis=1)  # ids after the end token are 0 (padding)
    if trim:
        buckets = np.minimum(-(-lengths // bucket) * bucket, tokens.shape[1])
    else:
        buckets = np.full(len(tokens), tokens.shape[1])
    for length in np.unique(buckets):
        rows = np.flatnonzero(buckets == length)
        for start in range(0, len(rows), max_prompts):
            part = rows[start : start + max_prompts]
            yield part, np.ascontiguousarray(tokens[part, : int(length)])


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return x


def embed_prompt_groups(
    groups: Sequence[Sequence[str]], tokenizer: ClipTokenizer, encode: EncodeTokens, dim: int, trim: bool
) -> np.ndarray:
    """``[len(groups), D]`` float32: per group (a class), its prompts encoded, normalised, averaged, normalised.

    Groups of equal size (one name per class, the same templates) are averaged as one ``[C, T, D]`` array.
    """
    prompts = [prompt for group in groups for prompt in group]
    tokens = tokenizer(prompts)  # [P, L]
    per_prompt: np.ndarray = np.empty((len(tokens), dim), dtype=np.float32)
    for rows, trimmed in token_batches(tokens, trim):
        per_prompt[rows] = encode(trimmed)
    sizes = [len(group) for group in groups]
    if len(set(sizes)) == 1:
        mean = _normalise(per_prompt.reshape(len(groups), sizes[0], -1)).mean(axis=1)
    else:
        per_prompt = _normalise(per_prompt)
        bounds = np.cumsum([0] + sizes)
        mean = np.stack([per_prompt[bounds[i] : bounds[i + 1]].mean(axis=0) for i in range(len(groups))])
    return np.ascontiguousarray(_normalise(mean), dtype=np.float32)


def embed_names(
    names: Sequence[str],
    templates: Sequence[str],
    tokenizer: ClipTokenizer,
    encode: EncodeTokens,
    dim: int,
    trim: bool,
) -> np.ndarray:
    """``[len(names), D]`` float32 class embeddings: every template filled with each name (:func:`embed_prompt_groups`).
    A class text holding synonyms (``"person; man"``) is one group of every template x every name: the prompt
    ensemble over names (the ``"mean"`` synonym rule)."""
    groups = [expand_templates(list(split_synonyms(name)), templates) for name in names]
    return embed_prompt_groups(groups, tokenizer, encode, dim, trim)


def check_distinct_prompts(names: Sequence[str], templates: Sequence[str], tokenizer: ClipTokenizer) -> None:
    """Refuse two names whose prompts tokenise identically (e.g. ``"t-shirt"`` and ``"t - shirt"``, or long names
    that differ only past the context length): their embeddings would be equal, so the later class could never win.

    Raises:
        ValueError naming both names and their positions.
    """
    seen: dict = {}
    limit = tokenizer.context_length - 2  # minus the start and end tokens
    for i, name in enumerate(names):
        ids = tuple(tokenizer.encode(name))
        if len(ids) >= limit // 2:  # a prompt may be truncated: compare the prompts as the encoder gets them
            key: tuple = ("prompts", tokenizer(expand_templates([name], templates)).tobytes())
        else:
            key = ("name", ids)
        if key in seen:
            raise ValueError(
                f"class names {names[seen[key]]!r} (position {seen[key] + 1}) and {name!r} (position {i + 1}) give "
                "identical prompts once tokenised (CLIP ignores case, spacing around punctuation and text past "
                f"{tokenizer.context_length} tokens), so {name!r} could never win: rename or drop one"
            )
        seen[key] = i


class TextEmbeddingCache:
    """The per-name text-embedding cache: ``(name, templates) -> [D]`` float32, least recently used out first.

    ``embed(names, templates)`` returns ``[C, D]``, calling ``encode(missing_names, templates) -> [n, D]`` only for
    the names not cached for these templates. Thread-safe: the encoder runs outside the lock, and a name evicted by
    a concurrent call between the two locked sections is encoded again.

    Args:
        encode: the class-embedding function (e.g. :func:`embed_names` bound to a tokenizer and a text graph).
        maxsize: names kept per cache (across templates).
    """

    def __init__(self, encode: Callable[[Sequence[str], Tuple[str, ...]], np.ndarray], maxsize: int = 4096):
        self.encode = encode
        self.maxsize = int(maxsize)
        self._rows: "collections.OrderedDict[Tuple[str, Tuple[str, ...]], np.ndarray]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: Tuple[str, Tuple[str, ...]]) -> bool:
        return key in self._rows

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def discard(self, name: str, templates: Sequence[str]) -> None:
        """Forget one name's embedding for ``templates`` (it is encoded again on next use)."""
        with self._lock:
            self._rows.pop((name, tuple(templates)), None)

    def embed(self, names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """``[C, D]`` float32 embeddings of ``names`` for ``templates``; only names not cached are encoded."""
        templates = tuple(templates)
        with self._lock:
            missing: List[str] = [name for name in dict.fromkeys(names) if (name, templates) not in self._rows]
        if missing:
            fresh = self.encode(missing, templates)
            with self._lock:
                for name, row in zip(missing, fresh):
                    self._rows[(name, templates)] = row
        with self._lock:
            rows: List[np.ndarray] = []
            for name in names:
                cached: Optional[np.ndarray] = self._rows.get((name, templates))
                if cached is None:  # evicted by a concurrent call between the two locked sections
                    cached = self.encode([name], templates)[0]
                else:
                    self._rows.move_to_end((name, templates))
                rows.append(cached)
            while len(self._rows) > self.maxsize:
                self._rows.popitem(last=False)
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32)
