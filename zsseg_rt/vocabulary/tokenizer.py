"""CLIP BPE tokenisation without torch, token-for-token equal to open_clip's ``SimpleTokenizer``.

The exporter writes the vocabulary and merges of open_clip's tokenizer into a HF ``tokenizers`` JSON file;
the runtime loads it with the ``tokenizers`` library (Rust, no torch) and adds open_clip's cleaning,
start/end tokens, truncation and padding.

Known difference (tested): for *unassigned* Unicode code points (category Cn) next to punctuation, the Rust
regex engine groups characters differently from Python's ``regex``, so the ids can differ. Assigned characters
of every script, punctuation, digits and emoji give identical ids. "Unassigned" depends on the Unicode version of
each table, and it is the cleaned text that is split: ftfy's cleaning can turn assigned characters into one that is
newly assigned (``":Õ\x98"`` becomes ``":\u0558"``, which ``regex`` 2026.11.19 classes as a letter and the Rust
engine does not), and that text's ids can differ too.
"""

from __future__ import annotations

import hashlib
import html
import threading
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import numpy as np

# open_clip's word pattern (SimpleTokenizer.pat, IGNORECASE; the text is lower-cased first anyway).
_CLIP_PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"


def _tokenizers():
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the runtime tokenizer needs the `tokenizers` package: pip install tokenizers") from exc
    return tokenizers


def build_tokenizer_json(encoder: Dict[str, int], bpe_ranks: Dict[Tuple[str, str], int], path: str) -> None:
    """Write a HF ``tokenizers`` file equivalent to an open_clip ``SimpleTokenizer``.

    Args:
        encoder: ``SimpleTokenizer.encoder`` (token string -> id, incl. the special tokens).
        bpe_ranks: ``SimpleTokenizer.bpe_ranks`` ((left, right) -> merge rank).
        path: output ``tokenizer.json``.
    """
    tk = _tokenizers()
    merges = [pair for pair, _ in sorted(bpe_ranks.items(), key=lambda item: item[1])]
    model = tk.models.BPE(vocab=dict(encoder), merges=merges, end_of_word_suffix="</w>", fuse_unk=False)
    tokenizer = tk.Tokenizer(model)
    tokenizer.pre_tokenizer = tk.pre_tokenizers.Sequence(
        [
            tk.pre_tokenizers.Split(tk.Regex(_CLIP_PATTERN), behavior="removed", invert=True),
            tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.add_special_tokens([SOT_TOKEN, EOT_TOKEN])
    tokenizer.save(path)


def clean_text(text: str) -> str:
    """open_clip's default cleaning: ftfy fix, double HTML unescape, whitespace collapse, lower case."""
    import re

    import ftfy  # pure Python; a dependency of the runtime

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    # U+0345 (combining ypogegrammeni) case-folds to a letter, so open_clip's IGNORECASE pattern neither matches it
    # as a letter run nor as "other": it is dropped and splits the text there. A space does exactly that here.
    text = text.replace("\u0345", " ")
    return re.sub(r"\s+", " ", text).strip().lower()


# Parsed tokenizer files of this process by their content's sha256, the most recent last: building the BPE model
# from a CLIP tokenizer.json takes ~0.16 CPU-s, and every Engine, export check and accuracy gate of a bundle (or of
# a copy of it) reads the same file. A parsed tokenizer is only read (encode, token_to_id), never changed, so the
# ClipTokenizers of one content share it.
_PARSED: "OrderedDict[str, object]" = OrderedDict()
_PARSED_MOST = 4
_PARSED_LOCK = threading.Lock()


def _parsed_tokenizer(tk, tokenizer_json: str):
    """``tokenizers.Tokenizer`` of ``tokenizer_json``, parsed once per content in this process; an unreadable file
    is left to ``Tokenizer.from_file`` (its error, as before)."""
    try:
        with open(tokenizer_json, "rb") as handle:
            data = handle.read()
    except OSError:
        return tk.Tokenizer.from_file(tokenizer_json)
    key = hashlib.sha256(data).hexdigest()
    with _PARSED_LOCK:
        tok = _PARSED.get(key)
        if tok is not None:
            _PARSED.move_to_end(key)
            return tok
    tok = tk.Tokenizer.from_buffer(data)
    with _PARSED_LOCK:
        _PARSED[key] = tok
        while len(_PARSED) > _PARSED_MOST:
            _PARSED.popitem(last=False)
    return tok


class ClipTokenizer:
    """Tokenises prompts into ``[P, context_length]`` int32 ids exactly like open_clip's ``tokenize``."""

    def __init__(self, tokenizer_json: str, context_length: int = 77):
        tk = _tokenizers()
        try:
            self._tok = _parsed_tokenizer(tk, tokenizer_json)
        except Exception as exc:  # noqa: BLE001 - the tokenizers library raises its own untyped Exception
            from zsseg_rt.errors import BundleError

            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise BundleError(
                f"{tokenizer_json!r} is not a valid tokenizer file ({reason}); re-export the bundle"
            ) from None
        self.context_length = int(context_length)
        self.sot_id = self._tok.token_to_id(SOT_TOKEN)
        self.eot_id = self._tok.token_to_id(EOT_TOKEN)
        if self.sot_id is None or self.eot_id is None:
            raise ValueError(f"{tokenizer_json!r} is not a CLIP tokenizer (no {SOT_TOKEN}/{EOT_TOKEN} tokens)")

    def encode(self, text: str) -> List[int]:
        """BPE ids of one cleaned string, without start/end tokens."""
        return self._tok.encode(clean_text(text), add_special_tokens=False).ids

    def __call__(self, texts: Sequence[str] | str) -> np.ndarray:
        """Returns ``[P, context_length]`` int32 (start token, BPE ids, end token, zero padding; truncated)."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.context_length), dtype=np.int32)
        for row, text in enumerate(texts):
            ids = [self.sot_id] + self.encode(text) + [self.eot_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot_id
            out[row, : len(ids)] = ids
        return out
