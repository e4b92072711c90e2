"""Text side of ZegCLIP: the frozen CLIP text tower, prompt templates, vocabulary cache, official .npy files.

Class names -> one prompt per template -> CLIP text tower -> L2-normalise each prompt embedding -> average over
templates -> L2-normalise again (the official ``get_embedding.ipynb``; with one template this is plain
normalisation). Output ``[C, D]`` float32.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from zsseg_rt.assets import TEXT_EMBEDDINGS_DIR
from zsseg_rt.vocabulary import (
    split_synonyms,
    validate_class_names,  # re-exported: the one vocabulary check
    validate_templates,
)

__all__ = [
    "TextEncoder",
    "VocabularyCache",
    "load_text_embeddings",
    "validate_class_names",
    "OFFICIAL_EMBEDDINGS_DIR",
]

# The official precomputed embeddings shipped with the package (zsseg_rt/assets/text_embeddings).
OFFICIAL_EMBEDDINGS_DIR = TEXT_EMBEDDINGS_DIR


class VocabularyCache:
    """LRU cache of text embeddings keyed by ``(tuple(names), tuple(templates))``."""

    def __init__(self, maxsize: int = 32):
        self.maxsize = int(maxsize)
        self._data: "OrderedDict[Tuple[Tuple[str, ...], Tuple[str, ...]], torch.Tensor]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(names: Sequence[str], templates: Sequence[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        return tuple(names), tuple(templates)

    def get(
        self,
        names: Sequence[str],
        templates: Sequence[str],
        compute: Optional[Callable[[Sequence[str], Sequence[str]], torch.Tensor]] = None,
    ) -> Optional[torch.Tensor]:
        k = self.key(names, templates)
        if k in self._data:
            self.hits += 1
            self._data.move_to_end(k)
            return self._data[k].clone()
        if compute is None:
            return None
        self.misses += 1
        value = compute(names, templates).detach()
        self.put(names, templates, value)
        return value.clone()

    def put(self, names: Sequence[str], templates: Sequence[str], value: torch.Tensor) -> None:
        self._data[self.key(names, templates)] = value.detach()
        self._data.move_to_end(self.key(names, templates))
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, item) -> bool:
        names, templates = item
        return self.key(names, templates) in self._data


class TextEncoder(nn.Module):
    """Frozen CLIP text tower (parameter names match OpenAI CLIP / the official ``text_encoder.*`` keys)."""

    def __init__(self, clip_model: nn.Module, tokenizer, cache_size: int = 32):
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.register_buffer("attn_mask", cast(torch.Tensor, clip_model.attn_mask), persistent=False)
        self.pool_type = getattr(clip_model, "text_pool_type", "argmax")
        self.eos_id = getattr(clip_model, "text_eos_id", None)
        self.context_length = int(self.positional_embedding.shape[0])
        self.tokenizer = tokenizer
        self.cache = VocabularyCache(cache_size)
        self.register_load_state_dict_post_hook(lambda module, incompatible: module.cache.clear())

    @property
    def embed_dim(self) -> int:
        tp = self.text_projection
        return int(tp.out_features if isinstance(tp, nn.Linear) else tp.shape[1])

    def encode_tokens(self, tokens: torch.Tensor, attn_mask=None, pool=None) -> torch.Tensor:
        """``tokens [P, L]`` (``1 <= L <= context_length``) -> L2-normalised embeddings ``[P, D]``.

        ``L`` may be shorter than the context length when every row's end token lies within the first ``L``
        positions: CLIP's causal mask makes a position's output depend only on the positions before it, so the
        end token's output (the pooled embedding) does not change when the padding after it is cut off. The
        runtime uses that to run the text encoder on ~10 tokens instead of 77.

        Args:
            attn_mask: ``[context_length, context_length]`` additive causal mask (default: open_clip's, ``-inf``
                above the diagonal); the exported graph passes a finite one (``export.text_graph``).
            pool: ``(x [P, L, W], tokens [P, L]) -> [P, W]`` end-token pooling (default: open_clip's
                ``text_global_pool``).
        """
        from open_clip.transformer import text_global_pool

        if tokens.dim() != 2 or not 1 <= tokens.shape[1] <= self.context_length:
            raise ValueError(
                f"tokens must be [P, L] with 1 <= L <= {self.context_length}, got shape {tuple(tokens.shape)}"
            )
        length = tokens.shape[1]
        x = self.token_embedding(tokens)
        x = x + self.positional_embedding[:length].to(x.dtype)
        mask = (self.attn_mask if attn_mask is None else attn_mask)[:length, :length]
        if getattr(self.transformer, "batch_first", True):
            x = self.transformer(x, attn_mask=mask)
        else:
            x = self.transformer(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
        x = self.ln_final(x)
        if pool is None:
            x = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)
        else:
            x = pool(x, tokens)
        tp = self.text_projection
        if tp is not None:
            x = tp(x) if isinstance(tp, nn.Linear) else x @ tp
        return F.normalize(x, dim=-1)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(torch.long)

    @torch.no_grad()
    def _encode_uncached(self, names: Sequence[str], templates: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        device = cast(torch.Tensor, self.positional_embedding).device
        groups = [split_synonyms(n) for n in names]  # "person; man": every template x every name (mean rule)
        prompts = [t.format(n) for group in groups for n in group for t in templates]  # class-major
        outs = []
        for s in range(0, len(prompts), batch_size):
            tok = self.tokenize(prompts[s : s + batch_size]).to(device)
            outs.append(self.encode_tokens(tok).float())
        flat = torch.cat(outs, 0)
        if all(len(group) == 1 for group in groups):
            emb = flat.reshape(len(names), len(templates), -1).mean(dim=1)
        else:
            sizes = [len(group) * len(templates) for group in groups]
            emb = torch.stack([part.mean(dim=0) for part in torch.split(flat, sizes)])
        return F.normalize(emb, dim=-1)

    def encode(
        self, names: Sequence[str], templates: Sequence[str] = ("a photo of a {}",), use_cache: bool = True
    ) -> torch.Tensor:
        """Class names -> ``[C, D]`` float32 (normalise / average over templates / renormalise)."""
        names = tuple(validate_class_names(names))
        templates = validate_templates(templates)
        if not use_cache:
            return self._encode_uncached(names, templates)
        embeddings = self.cache.get(names, templates, self._encode_uncached)
        assert embeddings is not None  # get() computes on a miss when given compute
        return embeddings


def load_text_embeddings(
    path: Union[str, Path],
    num_classes: Optional[int] = None,
    embed_dim: Optional[int] = None,
) -> torch.Tensor:
    """Load precomputed text embeddings (the official fp16 ``.npy`` files, or ``.pt``/``.safetensors``).

    Returns float32 ``[C, D]`` (values unchanged apart from the cast; the model re-normalises them).
    """
    path = Path(path)
    if not path.is_file():
        candidate = OFFICIAL_EMBEDDINGS_DIR / path.name
        if candidate.is_file():
            path = candidate
        else:
            raise FileNotFoundError(f"text-embedding file {str(path)!r} not found")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:  # e.g. an object array (pickled): refused, never loaded
            raise ValueError(
                f"{str(path)!r} is not a plain numeric .npy array of text embeddings ({exc}); save a [C, D] float "
                "array with numpy.save"
            ) from None
        if arr.dtype.kind not in "iuf":
            raise ValueError(f"{str(path)!r}: text embeddings must be numbers, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32))
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        d = load_file(str(path))
        if len(d) != 1:
            raise ValueError(f"{path}: expected one tensor, found keys {sorted(d)}")
        t = next(iter(d.values())).float()
    else:
        import pickle

        try:  # weights_only: tensors and plain containers only; anything else is refused, never executed
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            first = " ".join(str(exc).split())[:160]
            raise ValueError(
                f"{str(path)!r} is not a file of text embeddings this loader accepts: it is not a plain tensor saved "
                f"with torch.save, or it holds Python objects other than tensors, which are refused unexecuted "
                f"({type(exc).__name__}: {first}); save a [C, D] tensor (torch.save) or use .npy / .safetensors"
            ) from None
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"{path}: expected a tensor, got {type(obj).__name__}")
        t = obj.float()
    if t.dim() != 2:
        raise ValueError(f"{path}: text embeddings must be [C, D], got shape {tuple(t.shape)}")
    if num_classes is not None and t.shape[0] != num_classes:
        raise ValueError(f"{path}: {t.shape[0]} rows but the vocabulary has {num_classes} classes")
    if embed_dim is not None and t.shape[1] != embed_dim:
        raise ValueError(f"{path}: embedding width {t.shape[1]} != model embed_dim {embed_dim}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{path}: text embeddings contain NaN or inf")
    return t.contiguous()
