"""Rule-made schedules for the CPU kernels a tune leaves to their default.

TVM 0.27 lowers a CPU function nobody scheduled as it was legalised: one sequential loop nest per
block, every intermediate of a fused function (a pool, then quantize / dequantize / pad / quantize)
written to memory and read back. MetaSchedule fixes that only for the tasks that get trials, and a
time budget spends them on the convolutions: in the tenth run's bridge tune 22 of 45 tasks kept their
default, 10% of the model's latency at one thread and none of it parallel (an average pool with its
quantize chain 38 us, a 32x35x35 dequantize 18 us, the last fully connected layer 22 us).

:func:`default_candidates` makes, for one task, the few schedules the SDK's tuner measures beside the
default (``tvm_tuning``): the injective blocks inlined into their neighbours (dlight's
``try_inline_contiguous_spatial``), each remaining block's outer spatial loops run in parallel, and
both. No rule wins everywhere (inlining made that pool 7x faster and a pad-then-pack 3x slower; a
parallel loop costs a microsecond of thread hand-off, more than some kernels take), so each is
measured like any trial and the database keeps the fastest; they are recorded with their traces, so
``--tuning-db`` replays them.

:func:`rows_first_rule` is a schedule rule of the tuner's design space (every trial of a packed int8
convolution's task), not a default: the order in which the task's epilogue walks its output.
"""

from __future__ import annotations

from typing import Any

__all__ = ["default_candidates", "rows_first_rule", "PARALLEL_CHUNKS_PER_CORE"]

# The parallel loop is the fusion of a block's leading spatial loops, outermost first, until it has at least
# this many iterations per core: enough to balance the cores without fusing the inner loops LLVM vectorises.
PARALLEL_CHUNKS_PER_CORE = 4


def default_candidates(tvm: Any, mod: Any, cores: int) -> list[tuple[str, Any]]:
    """Rule-made schedules of a task's function, other than TVM's default.

    Args:
        tvm: the ``tvm`` module (:func:`lanner.backends.tvm_backend.import_toolchain`).
        mod: the task's IRModule (its function is ``main``).
        cores: the target's ``num-cores``: a parallel loop gets at least ``PARALLEL_CHUNKS_PER_CORE``
            iterations per core.

    Returns:
        ``(name, schedule)`` pairs (``"inline"``, ``"parallel"``, ``"inline+parallel"``), each a traced
        ``tvm.s_tir.Schedule`` that differs from the default; empty where no rule applies (a function
        dlight cannot normalise, one whose blocks neither inline nor have a parallel loop).
    """
    from tvm_ffi import structural_equal

    candidates: list[tuple[str, Any]] = []
    seen = [mod]
    for inline, parallel in ((True, False), (False, True), (True, True)):
        sch = _schedule(tvm, mod, inline, parallel, cores)
        if sch is None or any(structural_equal(sch.mod, other) for other in seen):
            continue
        seen.append(sch.mod)
        candidates.append(("+".join(name for name, on in (("inline", inline), ("parallel", parallel)) if on), sch))
    return candidates


def _schedule(tvm: Any, mod: Any, inline: bool, parallel: bool, cores: int) -> Any:
    s_tir = tvm.s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import try_inline_contiguous_spatial

    sch = s_tir.Schedule(mod)
    try:
        blocks = normalize_prim_func(sch)
    except (RuntimeError, ValueError):  # a function dlight's analysis does not take (TVM's errors are RuntimeErrors)
        return None
    if blocks is None:
        return None
    if inline:
        blocks = try_inline_contiguous_spatial(sch, blocks)
    if parallel:
        for block in blocks:
            _parallel_outer(sch, block, PARALLEL_CHUNKS_PER_CORE * max(1, cores))
    return sch


def _parallel_outer(sch: Any, block: Any, chunks: int) -> None:
    """Fuse ``block``'s leading spatial loops, outermost first, until they count ``chunks`` iterations, and
    run the fused loop in parallel; nothing where the block has fewer iterations than that."""
    from tvm.s_tir import ScheduleError

    kinds = block.dom_kind()
    spatial = len(kinds) - len(kinds.lstrip("S"))
    loops = sch.get_loops(block.block_rv)[:spatial]
    extents = [sch.get(loop).extent for loop in loops]
    if not all(hasattr(extent, "value") for extent in extents):  # symbolic shapes: left as they are
        return
    count, outer = 1, 0
    while outer < len(loops) and count < chunks:
        count *= int(extents[outer].value)
        outer += 1
    if count < chunks:
        return
    try:
        sch.parallel(sch.fuse(*loops[:outer]) if outer > 1 else loops[0])
    except ScheduleError:  # a loop the schedule says cannot run in parallel (it carries a dependence)
        return


def rows_first_rule(tvm: Any, ms: Any) -> Any:
    """A MetaSchedule schedule rule for the tasks of the packed int8 convolutions (``tvm_int8``): their
    output block's row loop goes outside its channel loop.

    Such a task ends in an epilogue that reads the convolution's accumulator, NCHW16c (the 16 channels of a
    pixel side by side), and writes the next layout, NCHW, NCHW4c or NCHW16c, whose loop nest runs channel
    (block) first, then rows. Each pass over the channels then reads the whole accumulator again with a
    64-byte stride: MTCNN P-Net's first convolution (10 x 286 x 382 outputs, a 7 MB int32 accumulator)
    read it ten times, and its tuned kernel took 2.72 / 1.51 ms at 1 / 2 threads on an Intel Xeon (L2
    2 MB per core). With the rows outside, one row of the accumulator (24 KB) serves every channel while
    it is in cache: 1.52 / 0.72 ms, the same trace otherwise. Recorded in each candidate's trace, so
    databases replay it; other tasks are left as they are.
    """
    from tvm.s_tir import ScheduleError
    from tvm.s_tir.schedule import SBlockRV

    @tvm.ir.utils.derived_object
    class RowsFirst(ms.schedule_rule.PyScheduleRule):
        def _initialize_with_tune_context(self, context: Any) -> None:
            pass

        def apply(self, sch: Any, block: SBlockRV) -> list[Any]:
            names = _top_level_blocks(sch.mod["main"])  # (read from the IR: nothing enters the trace)
            if not any(name.startswith("conv2d_NCHWc_int8") for name in names):
                return [sch]
            if sch.get(block).name_hint != names[-1] or names[-1].startswith("conv2d_NCHWc_int8"):
                return [sch]  # not the epilogue's output block
            iters = sch.get(block).iter_vars
            if len(iters) < 4 or any(int(iv.iter_type) != 0 for iv in iters):
                return [sch]  # only an NCHW or NCHWc output (0: a data-parallel axis)
            extents = [iv.dom.extent for iv in iters[1:3]]
            if not all(hasattr(e, "value") and int(e.value) > 1 for e in extents):
                return [sch]  # a single channel block or row: nothing to reorder
            loops = sch.get_loops(block)
            if len(loops) == len(iters):  # its loops untouched: one per axis, in order
                try:
                    sch.reorder(loops[2], loops[1])
                except ScheduleError:  # (not a loop chain: the design space keeps the block's own order)
                    pass
            return [sch]

        def clone(self) -> Any:
            return RowsFirst()

    return RowsFirst()


def _top_level_blocks(func: Any) -> list[str]:
    """Names of the blocks directly under a function's root block, in order (each under its loops)."""
    body = func.body.block.body
    names = []
    for stmt in getattr(body, "seq", [body]):
        while not hasattr(stmt, "block"):  # loops (and their annotations) down to the block
            if not hasattr(stmt, "body"):
                break
            stmt = stmt.body
        if hasattr(stmt, "block"):
            names.append(stmt.block.name_hint)
    return names
