"""Branches, calls, returns, exit, trap and CTA barriers."""

from __future__ import annotations


from .errors import TrapError
from .opsutil import registry, threads
from .parser import Group, Imm, Sym, imm_int

H, handler = registry()
_th = threads


@handler("bra", "brx")
def h_bra(ins, ctx, op):
    if ins.opcode == "brx":
        raise ctx.fail(ins, "brx.idx is not implemented")
    (target,) = ins.operands
    if not isinstance(target, Sym):
        raise ctx.fail(ins, "branch target must be a label")
    dest = ctx.label(ins, target.name)

    def run(st, idx):
        st.pc[idx] = dest
        return True
    return run


def _exit(st, idx):
    from .machine import EXITED
    st.pc[idx] = EXITED
    return True


@handler("exit")
def h_exit(ins, ctx, op):
    return _exit


@handler("ret")
def h_ret(ins, ctx, op):
    if ctx.fn.is_entry:
        return _exit

    def run(st, idx):
        th = _th(st, idx)
        st.depth[th] -= 1
        st.pc[th] = st.stack[th, st.depth[th]]
        return True
    return run


@handler("trap")
def h_trap(ins, ctx, op):
    def run(st, idx):
        raise st.error(TrapError, "trap executed", int(_th(st, idx)[0]))
    return run


@handler("call")
def h_call(ins, ctx, op):
    ops = list(ins.operands)
    rets = []
    if ops and isinstance(ops[0], Group):
        rets = [o.name for o in ops.pop(0).items]
    fname = ops.pop(0)
    if not isinstance(fname, Sym):
        raise ctx.fail(ins, "indirect calls are not implemented")
    args = [o.name for o in ops.pop(0).items] if ops and isinstance(ops[0], Group) else []
    if ops:
        raise ctx.fail(ins, "call with a prototype list is not implemented")
    callee = ctx.comp.module.functions[fname.name]
    if len(args) != len(callee.params) or len(rets) != len(callee.returns):
        raise ctx.fail(ins, f"call of {fname.name} with {len(args)} arguments/{len(rets)} results, it takes "
                       f"{len(callee.params)}/{len(callee.returns)}")
    start = ctx.starts[fname.name]
    moves = [(ctx.prefix + a, fname.name + ":" + p.name) for a, p in zip(args, callee.params)]

    def run(st, idx):
        th = _th(st, idx)
        _copy_params(st, th, moves)
        if (st.depth[th] >= st.stack.shape[1]).any():
            raise st.error(TrapError, "call stack deeper than 8", int(th[0]))
        st.stack[th, st.depth[th]] = st.pc[th] + 1
        st.depth[th] += 1
        st.pc[th] = start
        return True
    return run


def _copy_params(st, th, moves) -> None:
    """Per-thread .param buffers copied (src -> dst) for the threads th: arguments at a call, results after."""
    for src, dst in moves:
        s, d = st.thread_params[src], st.thread_params[dst]
        w = min(s.shape[1], d.shape[1])
        d[th, :w] = s[th, :w]


def after_call(ins, ctx, op):
    """The op after a call: copies the callee's return parameters into the caller's (threads arrive here
    from the callee's ret)."""
    ops = list(ins.operands)
    rets = [o.name for o in ops[0].items] if ops and isinstance(ops[0], Group) else []
    fname = ops[1] if rets else ops[0]
    callee = ctx.comp.module.functions[fname.name]
    moves = [(fname.name + ":" + r.name, ctx.prefix + name) for r, name in zip(callee.returns, rets)]

    def run(st, idx):
        _copy_params(st, _th(st, idx), moves)
    return run


@handler("bar", "barrier")
def h_bar(ins, ctx, op):
    mods = set(ins.mods)
    if ins.opcode == "bar" and "warp" in mods:
        from .ops_warp import h_bar_warp
        return h_bar_warp(ins, ctx, op)
    if not ({"sync"} <= mods or ins.opcode == "bar" and not mods - {"sync", "aligned", "cta"}):
        raise ctx.fail(ins, f"{ins.opcode}.{'.'.join(ins.mods)} is not implemented (bar.sync / barrier.sync are)")
    if mods - {"sync", "aligned", "cta"}:
        raise ctx.fail(ins, f"{ins.opcode}.{'.'.join(ins.mods)} is not implemented")
    if not ins.operands or not isinstance(ins.operands[0], Imm) or imm_int(ins.operands[0].text) != 0:
        raise ctx.fail(ins, "only barrier 0 is implemented")
    if len(ins.operands) > 1:
        if not isinstance(ins.operands[1], Imm):
            raise ctx.fail(ins, "a barrier thread count from a register is not implemented")
        count = imm_int(ins.operands[1].text)
    else:
        count = None
    op.barrier = True

    def run(st, idx):
        if count is not None and count != st.nthr:
            raise ctx.fail(ins, f"barrier with a count of {count} threads (CTA has {st.nthr}) is not implemented")
        st.barrier_reset(st.cta_local[idx])
    return run
