"""SASS and ptxas text parsed (checks/sass.py's): ``cuobjdump -sass`` into :class:`Function` objects (their
:class:`Instruction` list: address, predicate, opcode, operands; loops from backward branches) and ``nvcc -Xptxas -v``
into per-kernel registers, stack and spills. Its own module to keep sass.py short: sass.py loads it by path and
re-exports its names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_FUNCTION = re.compile(r"Function\s*:\s*(\S+)")
_REGISTER = re.compile(r"\bR(\d+)\b")


@dataclass
class Instruction:
    address: int
    predicate: str
    opcode: str
    operands: str

    @property
    def base(self) -> str:
        return self.opcode.split(".")[0]

    def branch_target(self) -> Optional[int]:
        if self.base not in ("BRA", "BRX"):
            return None
        match = re.search(r"0x([0-9a-f]+)", self.operands)
        return int(match.group(1), 16) if match else None

    def destination_registers(self) -> List[int]:
        """Registers written by a load (the first operand; .64/.128 write 2/4 consecutive registers)."""
        match = _REGISTER.match(self.operands.strip())
        if not match or self.operands.strip().startswith("RZ"):
            return []
        width = 4 if ".128" in self.opcode else 2 if ".64" in self.opcode else 1
        return [int(match.group(1)) + i for i in range(width)]

    def source_registers(self) -> List[int]:
        parts = self.operands.split(",", 1)
        stores = self.base in ("STS", "STG", "STL", "ST", "RED", "ATOM", "ATOMS")
        sources = self.operands if stores else (parts[1] if len(parts) > 1 else "")
        regs = [int(m) for m in _REGISTER.findall(sources)]
        # 64-bit address operands [R4.64] read R4 and R5
        regs += [int(m) + 1 for m in re.findall(r"\bR(\d+)\.64\b", sources)]
        return regs


@dataclass
class Function:
    name: str
    instructions: List[Instruction] = field(default_factory=list)

    def loops(self) -> List[Tuple[int, int]]:
        """[start, end] address ranges of loops: each backward branch closes one."""
        found = []
        for ins in self.instructions:
            target = ins.branch_target()
            if target is not None and target <= ins.address:
                found.append((target, ins.address))
        return sorted(set(found))

    def body(self, loop: Tuple[int, int]) -> List[Instruction]:
        return [i for i in self.instructions if loop[0] <= i.address <= loop[1]]

    def innermost_loops(self) -> List[Tuple[int, int]]:
        loops = self.loops()
        return [a for a in loops if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in loops)]


def parse_sass(text: str) -> Dict[str, Function]:
    functions: Dict[str, Function] = {}
    current: Optional[Function] = None
    for line in text.splitlines():
        header = _FUNCTION.search(line)
        if header:
            current = functions.setdefault(header.group(1), Function(header.group(1)))
            continue
        match = _INSTRUCTION.search(line)
        if match and current is not None:
            current.instructions.append(
                Instruction(
                    int(match.group(1), 16), (match.group(2) or "").strip(), match.group(3), match.group(4).strip()
                )
            )
    return functions


_PTXAS_FUNCTION = re.compile(r"(?:Compiling entry function|Function properties for) '?([^' ]+)'?")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_REGS = re.compile(r"Used (\d+) registers")


def parse_ptxas(text: str) -> Dict[str, dict]:
    """Per entry function: registers, stack frame, spill store / load bytes (from nvcc -Xptxas -v)."""
    facts: Dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        match = re.search(r"Compiling entry function '([^']+)'", line)
        if match:
            current = facts.setdefault(
                match.group(1), {"registers": 0, "stack": 0, "spill_stores": 0, "spill_loads": 0}
            )
            continue
        match = re.search(r"Function properties for (\S+)", line)
        if match:
            name = match.group(1)
            current = facts.get(name)  # device functions (not entries) are reported too: ignored
            continue
        if current is None:
            continue
        spill = _PTXAS_SPILL.search(line)
        if spill:
            current["stack"] = max(current["stack"], int(spill.group(1)))
            current["spill_stores"] = max(current["spill_stores"], int(spill.group(2)))
            current["spill_loads"] = max(current["spill_loads"], int(spill.group(3)))
        regs = _PTXAS_REGS.search(line)
        if regs:
            current["registers"] = int(regs.group(1))
    return facts
