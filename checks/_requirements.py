"""What the machine's Python has and what to install, read without installing anything: requirements.txt's pins,
pyproject.toml's arrays, ``packaging`` (installed or pip's vendored copy) and the wheels of a folder this interpreter
can install. Standard library only (a bare machine runs it before anything is installed). Shared by the prerequisites
and the carried wheels (``gpu_check_support``) and the test tools' harness (``_harness``)."""

from __future__ import annotations

import ast
import email.parser
import re
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements.txt"  # the pinned development set


def _packaging():
    """``packaging`` (requirements, markers, wheel tags): the installed one, else pip's vendored copy (pip is on
    every machine that can run the build)."""
    try:
        import packaging.requirements
        import packaging.tags
        import packaging.utils
        import packaging.version

        return packaging
    except ImportError:
        from pip._vendor import packaging  # type: ignore[no-redef]
        from pip._vendor.packaging import requirements, tags, utils, version  # noqa: F401

        return packaging


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _toml_arrays(text: str) -> Dict[str, Dict[str, List[str]]]:
    """The string arrays of a pyproject.toml by table and key: tomllib (Python >= 3.11) or tomli, else a reader
    for the ``key = ["...", ...]`` arrays this project's pyproject.toml uses (Python 3.10 without tomli)."""
    try:
        try:
            import tomllib  # type: ignore[import-not-found]
        except ImportError:
            import tomli as tomllib  # type: ignore[no-redef]
        data = tomllib.loads(text)
        out: Dict[str, Dict[str, List[str]]] = {}

        def walk(prefix: str, table: dict) -> None:
            for key, value in table.items():
                if isinstance(value, dict):
                    walk(f"{prefix}.{key}" if prefix else key, value)
                elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                    out.setdefault(prefix, {})[key] = list(value)

        walk("", data)
        return out
    except ImportError:
        pass
    out = {}
    table = ""
    pending: Optional[Tuple[str, str]] = None
    for raw in text.splitlines():
        line = _strip_comment(raw).strip()
        if pending is not None:
            pending = (pending[0], pending[1] + " " + line)
            if line.endswith("]"):
                out.setdefault(table, {})[pending[0]] = list(ast.literal_eval(pending[1]))
                pending = None
            continue
        header = re.match(r"^\[([^\[\]]+)\]$", line)
        if header:
            table = header.group(1).strip()
            continue
        entry = re.match(r"^([A-Za-z0-9_.\-\"]+)\s*=\s*(\[.*)$", line)
        if entry:
            key, value = entry.group(1).strip('"'), entry.group(2)
            if value.endswith("]"):
                out.setdefault(table, {})[key] = list(ast.literal_eval(value))
            else:
                pending = (key, value)
    return out


def _strip_comment(line: str) -> str:
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:i]
    return line


def requirement_pins(path: Path = REQUIREMENTS) -> Dict[str, str]:
    """requirements.txt's lines by canonical name, in its order: "pytest" -> "pytest==9.2.0" (comments dropped)."""
    pins: Dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = _strip_comment(raw).strip()
        if line and not line.startswith("-"):
            pins[canonical(re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0])] = line
    return pins


class Wheel:
    def __init__(self, path: Path):
        utils = _packaging().utils
        self.path = path
        name, version, _, tags = utils.parse_wheel_filename(path.name)
        self.name, self.version, self.tags = canonical(str(name)), version, set(tags)

    def requires(self) -> List[str]:
        with zipfile.ZipFile(self.path) as archive:
            meta = next(n for n in archive.namelist() if re.match(r"^[^/]+\.dist-info/METADATA$", n))
            message = email.parser.Parser().parsestr(archive.read(meta).decode("utf-8", "replace"))
        return message.get_all("Requires-Dist") or []


def wheels_in(folder: Optional[Path]) -> Dict[str, List[Wheel]]:
    """The wheels of ``folder`` this interpreter can install, by canonical name, newest first."""
    if folder is None:
        return {}
    supported = set(_packaging().tags.sys_tags())
    found: Dict[str, List[Wheel]] = {}
    for path in sorted(Path(folder).glob("*.whl")):
        try:
            wheel = Wheel(path)
        except Exception:  # not a wheel name: ignored, as pip would
            continue
        if wheel.tags & supported:
            found.setdefault(wheel.name, []).append(wheel)
    for wheels in found.values():
        wheels.sort(key=lambda w: w.version, reverse=True)
    return found
