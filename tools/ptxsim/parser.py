"""PTX text -> kernels and functions: declarations, labels and instructions with their source lines.

Parses the subset of PTX that nvcc and NVRTC emit for this project's kernels (entries, .func with .param
arguments, .reg/.shared/.local/.param declarations in nested scopes, module-level .global/.const data with
initialisers). Anything else raises PtxParseError naming the line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from .errors import PtxParseError


# ---------------------------------------------------------------------------------------------- operands
@dataclass(frozen=True)
class Reg:
    name: str


@dataclass(frozen=True)
class Imm:
    text: str  # as written: 42, -1, 0x1f, 0f3F800000, 0d3FF0000000000000


@dataclass(frozen=True)
class Sym:
    name: str  # a variable, parameter, function or label name


@dataclass(frozen=True)
class Vec:
    items: Tuple["Operand", ...]


@dataclass(frozen=True)
class Addr:
    base: Union[Reg, Sym, Imm]
    offset: int


@dataclass(frozen=True)
class Pair:
    first: "Operand"   # d|p of setp / shfl
    second: "Operand"


@dataclass(frozen=True)
class Neg:
    item: "Operand"    # !%p


@dataclass(frozen=True)
class Group:
    items: Tuple["Operand", ...]  # (a, b) of call


Operand = Union[Reg, Imm, Sym, Vec, Addr, Pair, Neg, Group]


@dataclass
class Instr:
    line: int
    text: str
    opcode: str               # "add", "ld", "mma"
    mods: Tuple[str, ...]     # ("global", "v4", "u32")
    operands: Tuple[Operand, ...]
    guard: Optional[str] = None
    guard_neg: bool = False


@dataclass
class VarDecl:
    space: str         # shared, local, global, const, param
    name: str
    type: str
    size: int          # bytes (0: unsized extern shared)
    align: int
    init: Optional[bytes] = None
    line: int = 0


@dataclass
class Function:
    name: str
    is_entry: bool
    params: List[VarDecl]
    returns: List[VarDecl]
    regs: Dict[str, str]              # register name (or prefix for %r<N>) -> type
    reg_ranges: Dict[str, Tuple[str, int]]
    vars: List[VarDecl]               # shared/local/param declared in the body
    body: List[Instr]
    labels: Dict[str, int]            # label -> index into body
    directives: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    line: int = 0

    def reg_type(self, name: str) -> Optional[str]:
        t = self.regs.get(name)
        if t is not None:
            return t
        m = re.fullmatch(r"(%[A-Za-z_$][\w$]*?)(\d+)", name)
        if m and m.group(1) in self.reg_ranges:
            t, n = self.reg_ranges[m.group(1)]
            if int(m.group(2)) < n:
                return t
        return None


@dataclass
class Module:
    functions: Dict[str, Function]
    globals: List[VarDecl]
    version: str = ""
    target: str = ""


# ---------------------------------------------------------------------------------------------- lexing
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def _strip_comments(text: str) -> str:
    return _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _split_top(s: str, sep: str = ",") -> List[str]:
    out, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    tail = "".join(cur).strip()
    if tail:
        out.append(tail)
    return out


_IDENT = r"[A-Za-z_$%][\w$.]*"


def parse_operand(s: str, line: int) -> Operand:
    s = s.strip()
    if not s:
        raise PtxParseError(f"line {line}: empty operand")
    if s.startswith("{") and s.endswith("}"):
        return Vec(tuple(parse_operand(x, line) for x in _split_top(s[1:-1])))
    if s.startswith("(") and s.endswith(")"):
        inner = s[1:-1].strip()
        return Group(tuple(parse_operand(x, line) for x in _split_top(inner)) if inner else ())
    if s.startswith("[") and s.endswith("]"):
        inner = s[1:-1].replace(" ", "")
        m = re.fullmatch(r"(" + _IDENT + r"|-?\d+|0[xX][0-9a-fA-F]+)(?:\+(-?\d+|0[xX][0-9a-fA-F]+))?", inner)
        if not m:
            raise PtxParseError(f"line {line}: address operand '{s}' not understood")
        base_s, off_s = m.group(1), m.group(2)
        base: Union[Reg, Sym, Imm]
        if base_s.startswith("%"):
            base = Reg(base_s)
        elif re.fullmatch(r"-?\d+|0[xX][0-9a-fA-F]+", base_s):
            base = Imm(base_s)
        else:
            base = Sym(base_s)
        return Addr(base, int(off_s, 0) if off_s else 0)
    if "|" in s:
        a, b = s.split("|", 1)
        return Pair(parse_operand(a, line), parse_operand(b, line))
    if s.startswith("!"):
        return Neg(parse_operand(s[1:], line))
    if s.startswith("%"):
        return Reg(s)
    if re.fullmatch(r"0[fF][0-9a-fA-F]{8}|0[dD][0-9a-fA-F]{16}|-?0[xX][0-9a-fA-F]+U?|-?\d+U?", s):
        return Imm(s)
    if re.fullmatch(r"[A-Za-z_$][\w$]*", s):
        return Sym(s)
    raise PtxParseError(f"line {line}: operand '{s}' not understood")


def imm_int(text: str) -> int:
    t = text.rstrip("U")
    return int(t, 0) if not re.fullmatch(r"-?0\d+", t) else int(t, 8)


# ---------------------------------------------------------------------------------------------- parsing
_DECL = re.compile(r"^\.(reg|shared|local|param|global|const)\s+(.*)$", re.S)


def _parse_var(space: str, rest: str, line: int) -> VarDecl:
    align = 0
    m = re.match(r"\.align\s+(\d+)\s+(.*)$", rest, re.S)
    if m:
        align, rest = int(m.group(1)), m.group(2)
    init_vals = None
    if "=" in rest:
        rest, init_s = rest.split("=", 1)
        init_vals = [v.strip() for v in init_s.strip().strip("{}").split(",") if v.strip()]
    m = re.fullmatch(r"\s*\.(\w+)\s+([\w$.]+)\s*(?:\[(\d*)\])?\s*", rest)
    if not m:
        raise PtxParseError(f"line {line}: declaration '.{space} {rest.strip()}' not understood")
    t, name, n = m.group(1), m.group(2), m.group(3)
    from .ptxtypes import BITS
    if t not in BITS:
        raise PtxParseError(f"line {line}: type .{t} not understood")
    esize = max(1, BITS[t] // 8)
    count = 1 if n is None else (int(n) if n else 0)
    init = None
    if init_vals:
        init = _pack_init(init_vals, t, esize, line)
        if count == 0:
            count = len(init) // esize
    return VarDecl(space, name, t, esize * count, align or esize, init, line)


def _pack_init(vals: List[str], t: str, esize: int, line: int) -> bytes:
    import struct
    out = bytearray()
    for v in vals:
        if v[:2] in ("0f", "0F") and len(v) == 10:
            bits = int(v[2:], 16)
        elif v[:2] in ("0d", "0D") and len(v) == 18:
            bits = int(v[2:], 16)
        elif t in ("f32", "f64") and re.fullmatch(r"-?[\d.]+(e-?\d+)?", v):
            bits = int.from_bytes(struct.pack("<f" if t == "f32" else "<d", float(v)), "little")
        else:
            try:
                bits = imm_int(v)
            except ValueError:
                raise PtxParseError(f"line {line}: initialiser value '{v}' not understood") from None
        out += (bits & ((1 << (8 * esize)) - 1)).to_bytes(esize, "little")
    return bytes(out)


def _line_of(offsets: List[int], pos: int) -> int:
    lo, hi = 0, len(offsets)
    while lo < hi:
        mid = (lo + hi) // 2
        if offsets[mid] <= pos:
            lo = mid + 1
        else:
            hi = mid
    return lo + 1  # 1-based


def _params(s: str, line: int) -> List[VarDecl]:
    out = []
    for p in _split_top(s):
        m = _DECL.match(p.strip())
        if not m or m.group(1) != "param":
            raise PtxParseError(f"line {line}: parameter '{p}' not understood")
        out.append(_parse_var("param", m.group(2), line))
    return out


def parse(text: str) -> Module:
    """Parses a whole PTX module."""
    src = _strip_comments(text)
    nl = [i for i, ch in enumerate(src) if ch == "\n"]
    mod = Module({}, [])
    pos, n = 0, len(src)
    header = re.compile(r"\s*((?:\.(?:visible|extern|weak)\s+)*)\.(entry|func)\s*(\([^)]*\))?\s*([\w$.]+)\s*\(", re.S)
    while pos < n:
        m = re.compile(r"\S").search(src, pos)
        if not m:
            break
        pos = m.start()
        line = _line_of(nl, pos)
        hm = header.match(src, pos)
        if hm:
            kind, ret_s, name = hm.group(2), hm.group(3), hm.group(4)
            close = src.index(")", hm.end() - 1) if src[hm.end():].lstrip().startswith(")") else None
            # parameter list: up to the matching ')'
            depth, j = 1, hm.end()
            while depth:
                if src[j] == "(":
                    depth += 1
                elif src[j] == ")":
                    depth -= 1
                j += 1
            del close
            params = _params(src[hm.end():j - 1], line)
            returns = _params(ret_s[1:-1], line) if ret_s else []
            # directives up to '{' or ';' (a declaration without body)
            k = j
            while k < n and src[k] not in "{;":
                k += 1
            dirs: Dict[str, Tuple[int, ...]] = {}
            for dm in re.finditer(r"\.(maxntid|reqntid|minnctapersm|maxnreg)\s+([\d,\s]+)", src[j:k]):
                dirs[dm.group(1)] = tuple(int(x) for x in dm.group(2).replace(" ", "").split(",") if x)
            if k >= n or src[k] == ";":
                pos = k + 1
                continue  # a prototype (.extern .func): nothing to run
            depth, e = 1, k + 1
            while depth:
                if e >= n:
                    raise PtxParseError(f"line {line}: body of {name} not closed")
                if src[e] == "{":
                    depth += 1
                elif src[e] == "}":
                    depth -= 1
                e += 1
            fn = _parse_body(name, kind == "entry", params, returns, src, k + 1, e - 1, nl, line)
            fn.directives = dirs
            mod.functions[name] = fn
            pos = e
            continue
        if re.match(r"\.(version|target|address_size)\b", src[pos:pos + 14]):  # no ';' after these
            eol = src.find("\n", pos)
            eol = n if eol < 0 else eol
            stmt = src[pos:eol].strip()
            pos = eol
        else:
            semi = src.index(";", pos)
            stmt = src[pos:semi].strip()
            pos = semi + 1
        if stmt.startswith(".version"):
            mod.version = stmt.split()[1]
        elif stmt.startswith(".target"):
            mod.target = stmt.split(None, 1)[1]
        elif stmt.startswith(".address_size"):
            if stmt.split()[1] != "64":
                raise PtxParseError(f"line {line}: only 64-bit addressing is implemented")
        else:
            s2 = re.sub(r"^\.(visible|extern|weak)\s+", "", stmt)
            dm = _DECL.match(s2)
            if dm and dm.group(1) in ("global", "const", "shared"):
                mod.globals.append(_parse_var(dm.group(1), dm.group(2), line))
            else:
                raise PtxParseError(f"line {line}: module-level statement '{stmt[:60]}' not understood")
    return mod


def _parse_body(name: str, is_entry: bool, params: List[VarDecl], returns: List[VarDecl], src: str, start: int,
                end: int, nl: List[int], line0: int) -> Function:
    fn = Function(name, is_entry, params, returns, {}, {}, [], [], {}, line=line0)
    # Registers declared in a nested { } scope (inline asm blocks, call sequences) shadow the function's
    # registers of the same name: they get a name of their own (name$scope) for the rest of that scope.
    scopes: List[Dict[str, str]] = [{}]
    counter = [0]
    pos = start
    while pos < end:
        m = re.compile(r"\S").search(src, pos, end)
        if not m:
            break
        pos = m.start()
        ch = src[pos]
        if ch == "{":
            scopes.append({})
            counter[0] += 1
            pos += 1
            continue
        if ch == "}":
            if len(scopes) == 1:
                raise PtxParseError(f"line {_line_of(nl, pos)}: unbalanced '}}'")
            scopes.pop()
            pos += 1
            continue
        lm = re.compile(r"([\w$.]+)\s*:").match(src, pos)
        if lm and not src[pos] == "@":
            fn.labels[lm.group(1)] = len(fn.body)
            pos = lm.end()
            continue
        semi = src.index(";", pos, end)
        stmt = " ".join(src[pos:semi].split())
        line = _line_of(nl, pos)
        pos = semi + 1
        dm = _DECL.match(stmt)
        if dm:
            space, rest = dm.group(1), dm.group(2)
            if space == "reg":
                rm = re.fullmatch(r"\.(\w+)\s+(.*)", rest)
                if not rm:
                    raise PtxParseError(f"line {line}: register declaration '{stmt}' not understood")
                t = rm.group(1)
                for item in rm.group(2).split(","):
                    item = item.strip()
                    im = re.fullmatch(r"(%[\w$]+)<(\d+)>", item)
                    if len(scopes) > 1:  # a nested scope: fresh names
                        names = [f"{im.group(1)}{i}" for i in range(int(im.group(2)))] if im else [item]
                        for nm in names:
                            fresh = f"{nm}${counter[0]}"
                            scopes[-1][nm] = fresh
                            fn.regs[fresh] = t
                    elif im:
                        fn.reg_ranges[im.group(1)] = (t, int(im.group(2)))
                    else:
                        fn.regs[item] = t
            else:
                fn.vars.append(_parse_var(space, rest, line))
            continue
        if stmt.startswith(".extern .shared") or stmt.startswith(".extern"):
            dm = _DECL.match(stmt[len(".extern "):])
            if dm:
                fn.vars.append(_parse_var(dm.group(1), dm.group(2), line))
                continue
        if stmt.startswith("."):
            if re.match(r"\.(pragma|loc|file)\b", stmt):
                continue
            raise PtxParseError(f"line {line}: directive '{stmt[:60]}' not understood")
        ins = _parse_instr(stmt, line)
        if len(scopes) > 1 and any(scopes[1:]):
            ins = _rename(ins, scopes)
        fn.body.append(ins)
    return fn


def _lookup(name: str, scopes: List[Dict[str, str]]) -> str:
    for sc in reversed(scopes):
        if name in sc:
            return sc[name]
    return name


def _rename_op(o, scopes):
    if isinstance(o, Reg):
        return Reg(_lookup(o.name, scopes))
    if isinstance(o, Sym):
        new = _lookup(o.name, scopes)
        return Reg(new) if new != o.name else o
    if isinstance(o, Vec):
        return Vec(tuple(_rename_op(x, scopes) for x in o.items))
    if isinstance(o, Group):
        return Group(tuple(_rename_op(x, scopes) for x in o.items))
    if isinstance(o, Pair):
        return Pair(_rename_op(o.first, scopes), _rename_op(o.second, scopes))
    if isinstance(o, Neg):
        return Neg(_rename_op(o.item, scopes))
    if isinstance(o, Addr):
        b = _rename_op(o.base, scopes)
        return Addr(b, o.offset)
    return o


def _rename(ins: Instr, scopes) -> Instr:
    ops = tuple(_rename_op(o, scopes) for o in ins.operands)
    guard = _lookup(ins.guard, scopes) if ins.guard else None
    return Instr(ins.line, ins.text, ins.opcode, ins.mods, ops, guard, ins.guard_neg)


def _parse_instr(stmt: str, line: int) -> Instr:
    guard, neg = None, False
    gm = re.match(r"@(!?)(%[\w$]+)\s+", stmt)
    if gm:
        neg, guard = gm.group(1) == "!", gm.group(2)
        stmt = stmt[gm.end():]
    parts = stmt.split(None, 1)
    op = parts[0]
    ops_s = parts[1] if len(parts) > 1 else ""
    pieces = op.split(".")
    operands = tuple(parse_operand(x, line) for x in _split_top(ops_s)) if ops_s.strip() else ()
    text = (f"@{'!' if neg else ''}{guard} " if guard else "") + stmt
    return Instr(line, text, pieces[0], tuple(pieces[1:]), operands, guard, neg)
