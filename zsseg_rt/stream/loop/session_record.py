"""What a :class:`~zsseg_rt.stream.loop.session.Session` ran with, as ``--stats-json`` records it under
``"options"`` (:func:`record_options`: ``Session.resolved_options()``), and a Session's arguments made of it again
(:func:`replay_arguments`): the same sources, bundle, vocabulary, run options and Engine options. Every path in it
is absolute (the sources that are files or folders, the bundle, the file and folder outputs, the class file, the
Engine's ``cache_dir``), so a replay from another folder reads and writes the same files."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from zsseg_rt.errors import OptionError

__all__ = ["APP_ENGINE", "record_options", "replay_arguments"]

APP_ENGINE = "the Engine"  # the recorded model of a run given an Engine of the app's (no bundle path to open again)


def record_options(session: Any) -> Dict[str, Any]:
    """``session``'s resolved options as JSON types (see ``Session.resolved_options``), its paths absolute."""
    engine = session.engine
    engine_values = getattr(engine, "options", None)
    classes = session.classes
    run = session.options.as_dict()
    run["outputs"] = [_absolute_output(spec) for spec in run["outputs"]]
    for name in ("labels_out", "save_json", "tracks_out", "stats_json", "class_file"):  # the rows' paths
        run[name] = _absolute(run[name])
    values = {name: _plain(value) for name, value in dict(engine_values or session.engine_options).items()}
    if values.get("cache_dir") is not None:
        values["cache_dir"] = _absolute(values["cache_dir"])
    recorded = {
        "sources": [_absolute_source(source) for source in session.sources],
        "model": model_name(session.model, absolute=True),
        "classes": classes if classes is None or isinstance(classes, str) else list(classes),
        "class_names": list(engine.class_names) if engine is not None else None,
        "run": run,
        "engine": values,
        "max_pixels": session._max_pixels,
    }
    bundle = getattr(getattr(engine, "meta", None), "path", None)
    if recorded["model"] == APP_ENGINE and bundle:
        recorded["bundle"] = _absolute(os.fspath(bundle))  # the app's Engine's bundle: said, not opened by a replay
    return recorded


def replay_arguments(recorded: Dict[str, Any], model: Any = None) -> Dict[str, Any]:
    """A Session's keywords from a run's ``"options"`` (``--stats-json``; ``Session.resolved_options()``):
    ``Session(**replay_arguments(stats["options"]))`` runs it again, the same sources, bundle, vocabulary, run options
    and Engine options (its ``max_pixels`` the frames' limit), from any folder (the paths are absolute). ``model``:
    the Engine to run instead of the recorded bundle; a run given an Engine of the app's needs one (a record holds no
    Engine).

    Raises:
        OptionError: the run was given an Engine of the app's and ``model`` is None.
    """
    engine = dict(recorded.get("engine") or {})
    engine.pop("max_pixels", None)  # the frames' limit: the Session's own max_pixels (below)
    if model is None and recorded["model"] == APP_ENGINE:
        bundle = recorded.get("bundle")
        raise OptionError(
            f"this run was given an Engine of the app's (model {APP_ENGINE!r}): a record holds no Engine, and its "
            "bundle opened again would lose the app's own settings: pass one, replay_arguments(stats['options'], "
            "model=Engine(...))" + (f" (its bundle: {bundle})" if bundle else ""),
            "model",
        )
    if model is not None and not isinstance(model, (str, bytes)) and not hasattr(model, "__fspath__"):
        engine = {}  # an Engine of the app's: its own options
    return {
        "sources": list(recorded["sources"]),
        "model": recorded["model"] if model is None else model,
        "classes": recorded.get("classes"),
        "options": _session_options(dict(recorded["run"])),
        "engine_options": engine,
        "max_pixels": recorded.get("max_pixels"),
    }


def model_name(model: Any, absolute: bool = False) -> str:
    """The bundle's path (``absolute``: made absolute), or :data:`APP_ENGINE` for an Engine of the app's."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        text = os.fsdecode(model) if isinstance(model, bytes) else os.fspath(model)
        return str(_absolute(text)) if absolute else text
    return APP_ENGINE


def _session_options(values: Dict[str, Any]) -> Any:
    from zsseg_rt.stream.loop.session_options import SessionOptions

    return SessionOptions.from_dict(values)


def _plain(value: Any) -> Any:
    """``value`` as a JSON type (a path as its text; a tuple as a list; anything else as its repr)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return repr(value)


def _absolute(path: Optional[str]) -> Optional[str]:
    """``path`` absolute, its trailing separator kept (``frames/``: a folder); None stays None."""
    if path is None:
        return None
    text = os.fspath(path)
    absolute = os.path.abspath(text)
    return absolute + os.sep if text.endswith(("/", os.sep)) and not absolute.endswith(os.sep) else absolute


def _absolute_output(spec: str) -> str:
    """An ``-o`` spec: a file or folder output (its kind declares a path in the output plan) made absolute; a window,
    a URL, ``null`` as given."""
    from zsseg_rt.outputs.kinds import output_kind

    kind = output_kind(spec)
    return str(_absolute(spec)) if kind is not None and kind.plan is not None else spec


def _absolute_source(text: Any) -> str:
    """A source that is a file or folder made absolute (``NAME=`` kept); a camera, a URL as given; a ``FrameSource``
    given as an object: its ``name`` (a record holds text only)."""
    from zsseg_rt.stream.sources import FrameSource, split_source_name

    if isinstance(text, FrameSource):
        return str(text.name)
    name, source = split_source_name(text)
    if not os.path.exists(source):
        return text
    return f"{name}={os.path.abspath(source)}" if name else os.path.abspath(source)
