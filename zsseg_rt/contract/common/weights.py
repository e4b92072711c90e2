"""Safe weight loading: OpenAI CLIP JIT archives, open_clip state dicts, safetensors (a family maps the CLIP keys
onto its own towers: ``zsseg_rt.models.zegclip.weights``).

Nothing here unpickles arbitrary objects: ``.pt``/``.bin``/``.pth`` go through ``torch.load(weights_only=True)``
and ``.safetensors`` through safetensors. TorchScript archives (the format of OpenAI's CLIP releases) need
``torch.jit.load``, which deserialises and compiles code from the file, so they are loaded only when the file is
one of OpenAI's published CLIP releases (its sha256 is in open_clip's download URLs) or when the caller trusts it
explicitly (``trust_torchscript=True`` or ``ZSSEG_TRUST_TORCHSCRIPT=1``).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "WeightsError",
    "checkpoint_file_problem",
    "read_state_dict",
    "check_finite",
    "describe_keys",
    "fit_problems",
    "require_fit",
    "load_finite",
    "shape_mismatches",
    "HOW_TO_GET_WEIGHTS",
]

HOW_TO_GET_WEIGHTS = (
    "Give a local file instead: --clip-weights /path/to/ViT-B-16.pt (the pretrained argument in Python): OpenAI's "
    "ViT-B-16.pt archive (its download address is in docs/setup.md), an open_clip state dict or .safetensors; or "
    "run once on a machine with network access to fill the Hugging Face cache. Official checkpoints of "
    "the trained families go through zsseg export --official."
)

# Keys found in CLIP checkpoints that the prompted CLIP towers do not use.
CLIP_UNUSED = ("logit_scale", "logit_bias", "input_resolution", "context_length", "vocab_size", "attn_mask")


class WeightsError(ValueError):
    """A checkpoint is unreadable, incomplete, mismatched or holds non-finite values."""


def describe_keys(label: str, keys: Iterable[str], first: int = 5) -> str:
    keys = sorted(keys)
    if not keys:
        return ""
    shown = ", ".join(keys[:first])
    more = f", ... (+{len(keys) - first} more)" if len(keys) > first else ""
    return f"{len(keys)} {label} key(s): {shown}{more}"


def shape_mismatches(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> List[str]:
    """``"key: file (shape) vs model (shape)"`` for each tensor of ``state`` whose shape is not ``target``'s (keys
    ``target`` lacks are left to the caller's ``unexpected`` list)."""
    return [
        f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]


def read_official_state(
    path: Union[str, os.PathLike],
    family: str,
    releases: str,
    container: str,
    keys: Sequence[str],
    refused: str,
) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """The tensors of an official checkpoint file, read with ``weights_only=True``, and the whole checkpoint dict.

    The tensors are ``ck[keys[0]]``, else ``ck[keys[1]]``..., else the dict itself, a ``module.`` prefix stripped;
    a ``.safetensors`` file holds the official-layout state dict itself (the dict is then ``{}``). ``family`` and
    ``releases`` (where its checkpoints are linked) name a missing file, ``container`` the expected kind of dict
    (``"an mmcv"``), ``refused`` says what to do with a file ``weights_only`` refuses."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"official {family} checkpoint {str(path)!r} not found (the releases are linked from the README of "
            f"{releases})"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return {str(k): v for k, v in load_file(str(path)).items()}, {}
    problem = checkpoint_file_problem(path)
    if problem is not None:  # torch.load's own error would advise weights_only=False for a photo
        raise WeightsError(
            f"{path} is not a PyTorch checkpoint: it is {problem}. Expected an official {family} checkpoint: a .pth "
            f"file written by torch.save (the releases are linked from the README of {releases}), or .safetensors"
        )
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path}: refused to load ({_load_refusal(e)}). {refused}") from e
    if not isinstance(ck, dict):
        raise WeightsError(f"{path}: expected {container} checkpoint dict, got {type(ck).__name__}")
    sd: Any = ck
    for key in reversed(keys):
        sd = ck.get(key, sd)
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: {keys[0]!r} is a {type(sd).__name__}, expected a dict of tensors")
    sd = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    if not sd:
        raise WeightsError(f"{path}: no tensors in the checkpoint")
    return sd, ck


def map_keys(
    state: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    to_native_key: Callable[[str], Optional[str]],
) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """Rename a foreign (official) state dict through ``to_native_key`` (its key -> the model's, or None for a tensor
    the model never uses): ``(mapped, unused, unexpected)``, the last the keys that map to no key of ``target``."""
    mapped: Dict[str, torch.Tensor] = {}
    unused: List[str] = []
    unexpected: List[str] = []
    for k, v in state.items():
        nk = to_native_key(k)
        if nk is None:
            unused.append(k)
        elif nk in target:
            mapped[nk] = v
        else:
            unexpected.append(k)
    return mapped, unused, unexpected


def fit_problems(missing: Iterable[str], unexpected: Iterable[str], mismatched: Iterable[str]) -> str:
    """Why a state dict does not fit a model, as one clause (missing, unexpected and shape-mismatched keys, the
    first few of each, joined by ``"; "``); ``""`` when it fits."""
    parts = [
        describe_keys("missing", missing),
        describe_keys("unexpected", unexpected),
        describe_keys("shape-mismatched", mismatched, first=3),
    ]
    return "; ".join(p for p in parts if p)


def require_fit(
    state: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    missing: Iterable[str],
    unexpected: Iterable[str],
    what: str,
    advice: str = "",
) -> None:
    """WeightsError ``"<what>: <fit_problems>. <advice>"`` unless ``state`` fits ``target`` (nothing ``missing`` or
    ``unexpected``, every shape ``target``'s)."""
    problems = fit_problems(missing, unexpected, shape_mismatches(state, target))
    if problems:
        raise WeightsError(f"{what}: {problems}" + (f". {advice}" if advice else ""))


def check_finite(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    bad = [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise WeightsError(f"{source}: weights contain NaN or inf in {describe_keys('tensor', bad)}")


def load_finite(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], source: str
) -> Dict[str, torch.Tensor]:
    """Load ``state``, already found to fit (``require_fit``), into ``model`` (whose ``state_dict()`` is ``target``)
    once ``check_finite`` (``source``) passes: each tensor in its target's dtype, ``load_state_dict(strict=False)``
    (a tensor the caller lets the state lack, e.g. CLIP weights a file does not hold, stays as built). Returns the
    tensors loaded. Shared by the families' official, native and CLIP loaders."""
    check_finite(state, source)
    loaded = {k: v.to(target[k].dtype) for k, v in state.items()}
    result = model.load_state_dict(loaded, strict=False)
    if result.unexpected_keys:  # pragma: no cover - require_fit refuses them first
        raise WeightsError(f"{source}: unexpected keys after mapping: {result.unexpected_keys[:5]}")
    return loaded


# What a file that is no checkpoint is, from its first bytes (the formats a user is likely to pass by mistake)
_NOT_CHECKPOINTS = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x08\x01\x12", "an ONNX model"),
)


def _load_refusal(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice to load it with
    ``weights_only=False`` (arbitrary code execution) or its terminal colour codes: the object it does not load."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds a pickled {found.group(1)}, which a tensors-only load does not run"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:300]}"


def checkpoint_file_problem(path: Union[str, os.PathLike]) -> Optional[str]:
    """What ``path`` is when its first bytes show that ``torch.save`` did not write it ("a PNG image", "an empty
    file", "a zip archive without data.pkl", ...); None when it may be a checkpoint (a zip archive holding
    ``data.pkl``, or a pickle: the two formats ``torch.save`` writes; or a damaged zip archive, which torch.load
    describes)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        return "an empty file (0 bytes)"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return None  # a damaged or cut checkpoint: torch.load says what is wrong with it
        if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return None
        return "a zip archive that torch.save did not write (no data.pkl in it)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return None  # a pickle: torch.save's legacy format
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    for magic, what in _NOT_CHECKPOINTS:
        if head.startswith(magic):
            return what
    if len(head) >= 9 and int.from_bytes(head[:8], "little") < (1 << 27) and head[8:9] == b"{":
        return "a safetensors file (give it the .safetensors extension)"
    try:
        head.decode("utf-8")
        text = b"\x00" not in head
    except UnicodeDecodeError:
        text = False
    return "a text file" if text else "neither a zip archive (what torch.save writes) nor a pickle"


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    # TorchScript archives carry serialized code (``<name>/code/...``); torch.save archives never do.
    return any("/code/" in n for n in names)


def _unwrap(obj, source: str) -> Dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        out = {}
        for k, v in obj.items():
            if isinstance(v, torch.Tensor):
                out[str(k)] = v
        if not out:
            raise WeightsError(f"{source}: no tensors found (top-level keys: {sorted(map(str, obj))[:8]})")
        if all(k.startswith("module.") for k in out):
            out = {k[len("module.") :]: v for k, v in out.items()}
        return out
    raise WeightsError(f"{source}: expected a state dict, got {type(obj).__name__}")


def _official_openai_archive_hashes() -> set:
    """sha256 of OpenAI's CLIP release archives, taken from open_clip's pretrained registry URLs."""
    import re

    try:
        from open_clip import pretrained as registry
    except ImportError:  # pragma: no cover - open_clip is a dependency of the torch side
        return set()
    hashes = set()
    for tags in getattr(registry, "_PRETRAINED", {}).values():
        for cfg in tags.values():
            url = cfg.get("url", "") if isinstance(cfg, dict) else ""
            match = re.search(r"/clip/models/([0-9a-f]{64})/", url or "")
            if match:
                hashes.add(match.group(1))
    return hashes


def _check_torchscript_trusted(path: Path, trust: Optional[bool]) -> None:
    if trust is None:
        trust = os.environ.get("ZSSEG_TRUST_TORCHSCRIPT", "") == "1"
    if trust:
        return
    from zsseg_rt.bundle import sha256_file

    digest = sha256_file(str(path))
    if digest not in _official_openai_archive_hashes():
        raise WeightsError(
            f"{path}: a TorchScript archive that is not one of OpenAI's published CLIP releases (sha256 {digest}). "
            "Loading TorchScript deserialises and compiles code from the file, so zsseg_rt only does it for the "
            "official archives. If you trust this file, pass trust_torchscript=True (or set "
            "ZSSEG_TRUST_TORCHSCRIPT=1); better, convert it once to .safetensors."
        )


def read_state_dict(path: Union[str, os.PathLike], trust_torchscript: Optional[bool] = None) -> Dict[str, torch.Tensor]:
    """Read tensors from a local weight file of any supported format (float tensors as stored).

    ``trust_torchscript``: load a TorchScript archive that is not an official OpenAI CLIP release (default: the
    ``ZSSEG_TRUST_TORCHSCRIPT`` environment variable, else no).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {str(path)!r} does not exist. {HOW_TO_GET_WEIGHTS}")
    src = str(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(src, device="cpu"))
    if _is_torchscript_archive(path):
        _check_torchscript_trusted(path, trust_torchscript)
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
                module = torch.jit.load(src, map_location="cpu")
        except Exception as e:  # pragma: no cover - corrupt archive
            raise WeightsError(f"{src}: could not read the TorchScript archive ({e})") from e
        return {k: v for k, v in module.state_dict().items()}
    problem = checkpoint_file_problem(path)
    if problem is not None:
        raise WeightsError(
            f"{src} is not a weight file: it is {problem}. Expected CLIP weights: a .pt/.pth/.bin state dict written "
            "by torch.save, OpenAI's ViT-B-16.pt archive, or .safetensors"
        )
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(
            f"{src}: torch.load(weights_only=True) refused or failed ({type(e).__name__}: {str(e)[:300]}). "
            "Only plain tensor state dicts are accepted (no pickled Python objects); re-save the weights as "
            "a state dict of tensors or as .safetensors."
        ) from e
    return _unwrap(obj, src)


def normalise_clip_keys(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """open_clip 'custom text' layout (``text.*``) -> OpenAI layout; strip a ``clip.``/``model.`` prefix."""
    for prefix in ("clip.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    if any(k.startswith("text.") for k in sd):
        sd = {(k[len("text.") :] if k.startswith("text.") else k): v for k, v in sd.items()}
    return sd


def hub_endpoint() -> str:
    """The Hugging Face hub endpoint open_clip downloads from (``HF_ENDPOINT`` overrides it)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 1.5) -> bool:
    """One TCP connection attempt to the hub endpoint, name lookup included, given at most ``timeout`` seconds
    (a daemon thread, so a hanging lookup cannot hold the caller). False when ``HF_HUB_OFFLINE`` is set."""
    import socket
    import threading
    from urllib.parse import urlparse

    if hub_offline_requested():
        return False
    url = urlparse(hub_endpoint())
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    result = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def go_offline() -> None:
    """Make huggingface_hub (and so open_clip) use the local cache only: no download retries."""
    import sys

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants: Any = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: it read the variable at import time
        constants.HF_HUB_OFFLINE = True


def cache_only_when_offline(pretrained: Optional[str], say=print, timeout: float = 1.5) -> bool:
    """The rule for an open_clip tag (``openai``) when the network may be absent: one connection attempt to the hub
    of at most ``timeout`` seconds; when it fails, say so in one line and use the local cache only (no download
    retries). A local file, or None, needs no network. Returns True when it switched to the cache."""
    if not pretrained or os.path.exists(os.path.expanduser(pretrained)):
        return False
    if hub_reachable(timeout=timeout):
        return False
    say(
        f"no network: {hub_endpoint()} did not answer within {timeout:g} s; looking for the CLIP weights "
        f"{pretrained!r} in the local cache only"
    )
    go_offline()
    return True


def resolve_pretrained(pretrained: str, clip_model: str) -> Tuple[Path, Optional[dict]]:
    """A local path, or an open_clip pretrained tag resolved (and downloaded) through open_clip."""
    p = Path(os.path.expanduser(pretrained))
    if p.is_file():
        return p, None
    if p.is_dir():
        for pat in ("*.safetensors", "open_clip_pytorch_model.bin", "*.bin", "*.pt", "*.pth"):
            found = sorted(p.glob(pat))
            if found:
                return found[0], None
        raise FileNotFoundError(f"no weight file (*.safetensors, *.bin, *.pt, *.pth) in directory {str(p)!r}")
    import open_clip
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    cfg = get_pretrained_cfg(clip_model, pretrained)
    if not cfg:
        looks_like_path = any(s in pretrained for s in ("/", "\\", "."))
        if looks_like_path:
            raise FileNotFoundError(f"pretrained weight file {pretrained!r} does not exist. {HOW_TO_GET_WEIGHTS}")
        tags = open_clip.list_pretrained_tags_by_model(clip_model)
        raise ValueError(
            f"{pretrained!r} is neither a local file nor an open_clip pretrained tag of {clip_model!r} "
            f"(known tags: {tags}). {HOW_TO_GET_WEIGHTS}"
        )
    try:
        local = download_pretrained(cfg)
    except Exception as e:
        if hub_offline_requested():
            why = (
                "they are not in the local Hugging Face cache and downloading is off (no network, or "
                "HF_HUB_OFFLINE is set)"
            )
        else:
            why = (
                f"the download failed ({str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__})"
            )
        raise WeightsError(
            f"could not get the CLIP weights {pretrained!r} of {clip_model}: {why}. {HOW_TO_GET_WEIGHTS}"
        ) from e
    if not local:
        raise RuntimeError(f"open_clip returned no file for {clip_model}/{pretrained}. {HOW_TO_GET_WEIGHTS}")
    return Path(local), cfg
