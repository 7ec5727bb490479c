"""Integer convolutions for TVM int8 packages: a Relax rewrite of quantized (QDQ) convolutions.

TVM 0.27's Relax ONNX frontend imports ``QuantizeLinear`` / ``DequantizeLinear`` as
``R.quantize`` / ``R.dequantize(..., out_dtype="float32")`` and has no converter for
``QLinearConv`` or ``ConvInteger``, so every ``conv2d`` of a QDQ model computes in float32 between
a dequantize of its input and of its weights. :func:`integer_convolutions` rewrites each

    conv2d(dequantize(x_q, s_x, z_x), dequantize(W_q, s_w, 0))

(``x_q`` uint8 or int8 with a per-tensor scale and zero point, ``W_q`` an int8 constant with a
per-tensor or per-output-channel scale and zero point 0: what ``quantize_static`` writes) into

    float32(conv2d(pad(x_q, z_x), W_q, out_dtype=int32) - z_x * sum(W_q[oc])) * (s_x * s_w[oc])

which is the integer arithmetic of ONNX Runtime's ``QLinearConv``: products of 8-bit integers summed
exactly in int32. Padding is applied to ``x_q`` with the zero point (the quantized 0.0), so the
correction term ``z_x * sum(W_q[oc])`` is the same at every output position; grouped and
depthwise convolutions sum over their own input channels. The graph's float bias add and the
quantize of the output stay as they are, and TVM's FuseOps fuses them into the convolution's
kernel. Anything else (``MatMul``/``Gemm``, pooling, activations) keeps TVM's float lowering.

On x86 CPUs with AVX512-VNNI, ungrouped convolutions with uint8 inputs and static shapes take
the layout of VNNI kernels instead (TOPI's ``conv2d_NCHWc_int8``: activations NCHW4c, weights in
blocks of 16 output x 4 input channels), which MetaSchedule's x86 rules tensorize with
``vpdpbusd`` when the package is tuned (``--tune``); see :func:`vnni_available` for the TVM 0.27
intrinsic this needs fixed. Grouped and depthwise convolutions stay NCHW (integer all the same).
Exactness is tested against ONNX Runtime on the same QDQ model (``tests/test_tvm_int8.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IntegerConvolutions", "integer_convolutions"]


@dataclass(frozen=True)
class IntegerConvolutions:
    """What :func:`integer_convolutions` did: convolutions now integer, and those left in float
    (with why), in graph order."""

    rewritten: int
    left_float: tuple[str, ...]


def _value(expr) -> np.ndarray | None:
    """The array of a Relax constant, or None for anything else."""
    value = getattr(expr, "value", None)
    return value.numpy() if hasattr(value, "numpy") else None


def integer_convolutions(mod, tc, vnni: bool = False) -> tuple[object, IntegerConvolutions]:
    """Rewrite the QDQ convolutions of ``mod["main"]`` to integer ones (module docstring).

    ``tc`` is :func:`lanner.backends.tvm_backend.import_compiler`'s namespace. With ``vnni``
    (an x86 target with AVX512-VNNI), ungrouped convolutions take the packed layout of VNNI
    kernels (:func:`_packed_conv`). Returns the new module and an :class:`IntegerConvolutions`
    report; a convolution that does not have the exact QDQ form above is left as it is and named
    in ``left_float``.
    """
    relax = tc.relax
    from tvm.relax import dpl

    data_q, w_q = dpl.wildcard(), dpl.is_const()
    s_x, z_x, s_w, z_w = dpl.is_const(), dpl.is_const(), dpl.is_const(), dpl.is_const()
    pattern = dpl.is_op("relax.nn.conv2d")(
        dpl.is_op("relax.dequantize")(data_q, s_x, z_x),
        dpl.is_op("relax.dequantize")(w_q, s_w, z_w),
    )
    rewritten = 0
    left: list[str] = []
    kernels = relax.BlockBuilder(mod)  # adds the packed convolutions' PrimFuncs (typed GlobalVars)

    def rewrite(call, matches):
        nonlocal rewritten
        reason = _refusal(call, matches[data_q], *(_value(matches[p]) for p in (w_q, s_x, z_x, s_w, z_w)))
        if reason is not None:
            left.append(reason)
            return call
        rewritten += 1
        return _integer_conv(
            tc, call, matches[data_q], *(_value(matches[p]) for p in (w_q, s_x, z_x, s_w)), vnni, kernels
        )

    main = dpl.rewrite_call(pattern, rewrite, mod["main"])
    # a conv2d outside the pattern (a float input, a weight that is not a constant) stays float too
    unmatched = _count_convolutions(mod["main"]) - rewritten - len(left)
    left.extend(["not between QDQ pairs"] * unmatched)
    out = kernels.get()
    out["main"] = main
    return out, IntegerConvolutions(rewritten, tuple(left))


def _count_convolutions(func) -> int:
    return sum(
        getattr(getattr(binding.value, "op", None), "name", None) == "relax.nn.conv2d"
        for block in func.body.blocks
        for binding in block.bindings
    )


def _refusal(call, data, w, s_x, z_x, s_w, z_w) -> str | None:
    """Why this matched convolution cannot be integer, or None when it can."""
    attrs = call.attrs
    if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or attrs.out_layout != "NCHW":
        return f"layout {attrs.data_layout}/{attrs.kernel_layout} (NCHW/OIHW expected)"
    dtype = str(data.ty.dtype)
    if dtype not in ("uint8", "int8") or w.dtype != np.int8:
        return f"{dtype} x {w.dtype} (uint8/int8 x int8 expected)"
    if s_x.size != 1 or z_x.size != 1:
        return "per-channel activation quantization (per-tensor expected)"
    if np.any(z_w != 0):
        return "weights with a non-zero zero point (symmetric int8 expected)"
    if s_w.size not in (1, w.shape[0]):
        return f"{s_w.size} weight scales for {w.shape[0]} output channels"
    return None


def _integer_conv(tc, call, data, w, s_x, z_x, s_w, vnni, kernels):
    relax = tc.relax
    attrs = call.attrs
    out_channels = w.shape[0]
    zero = int(z_x.reshape(()))
    dtype = str(data.ty.dtype)
    shape = list(data.ty.shape)
    static = all(isinstance(d, tc.tvm.tirx.IntImm) for d in shape)  # not a symbolic batch
    padding = [int(p) for p in attrs.padding]  # top, left, bottom, right
    if any(padding):
        data = relax.op.nn.pad(
            data, [0, 0, 0, 0, padding[0], padding[2], padding[1], padding[3]], pad_value=float(zero)
        )
    strides = [int(s) for s in attrs.strides]
    dilation = [int(d) for d in attrs.dilation]
    if vnni and static and int(attrs.groups) == 1 and dtype == "uint8":
        n, c, h, wi = (int(d) for d in shape)
        padded_shape = (n, c, h + padding[0] + padding[2], wi + padding[1] + padding[3])
        acc = _packed_conv(tc, data, padded_shape, w, zero, strides, dilation, kernels)
    else:
        acc = relax.op.nn.conv2d(
            data,
            relax.const(w),
            strides=strides,
            padding=[0, 0, 0, 0],
            dilation=dilation,
            groups=int(attrs.groups),
            out_dtype="int32",
        )
    if zero != 0:
        correction = zero * w.astype(np.int64).sum(axis=(1, 2, 3))
        acc = relax.op.subtract(acc, relax.const(correction.astype(np.int32).reshape(1, out_channels, 1, 1)))
    scale = (np.float32(s_x.reshape(())) * s_w.astype(np.float32).reshape(-1)) * np.ones(out_channels, np.float32)
    return relax.op.multiply(
        relax.op.astype(acc, "float32"), relax.const(scale.astype(np.float32).reshape(1, out_channels, 1, 1))
    )


# VNNI's vpdpbusd multiplies 4 uint8 activations by 4 int8 weights of each of 16 output channels
# and adds the sums to 16 int32 lanes: activations packed NCHW4c, weights in blocks of 16 output
# x 4 input channels, the layout of TOPI's conv2d_NCHWc_int8 (n_elems 4).
_IC_BLOCK, _OC_BLOCK = 4, 16


def _packed_conv(tc, data, shape, w, zero, strides, dilation, kernels):
    """``conv2d(data, w)`` in int32 through TOPI's ``conv2d_NCHWc_int8``: ``data`` (uint8 NCHW,
    already padded) is packed to NCHW4c (channels padded with the zero point, which meet zero
    weights), ``w`` is packed here; the NCHW16c result is unpacked and cut to the real channels.
    MetaSchedule's x86 rules tensorize this layout with VNNI (:func:`register_vnni_intrinsic`)."""
    relax, tvm = tc.relax, tc.tvm
    from tvm import te, topi

    out_channels, in_channels, kh, kw = w.shape
    oc_p = -(-out_channels // _OC_BLOCK) * _OC_BLOCK
    ic_p = -(-in_channels // _IC_BLOCK) * _IC_BLOCK
    padded = np.zeros((oc_p, ic_p, kh, kw), np.int8)
    padded[:out_channels, :in_channels] = w
    # (oc/16, 16, ic/4, 1, 4, kh, kw) -> (oc/16, ic/4, kh, kw, 1, 16, 4)
    packed = padded.reshape(oc_p // _OC_BLOCK, _OC_BLOCK, ic_p // _IC_BLOCK, 1, _IC_BLOCK, kh, kw)
    packed = np.ascontiguousarray(packed.transpose(0, 2, 5, 6, 3, 1, 4))
    x = _layout_transform(
        tc, data, lambda n, c, h, wi: (n, c // _IC_BLOCK, h, wi, c % _IC_BLOCK), tvm.tirx.IntImm("uint8", zero)
    )
    n, _, h, wi = shape
    te_data = te.placeholder((n, ic_p // _IC_BLOCK, h, wi, _IC_BLOCK), "uint8", name="data")
    te_kernel = te.placeholder(packed.shape, "int8", name="kernel")
    te_out = topi.nn.conv2d_NCHWc_int8(
        te_data, te_kernel, strides, 0, dilation, f"NCHW{_IC_BLOCK}c", f"NCHW{_OC_BLOCK}c", "int32", _IC_BLOCK
    )
    out_shape = [int(d) for d in te_out.shape]
    func = te.create_prim_func([te_data, te_kernel, te_out]).without_attr("global_symbol")
    gvar = kernels.add_func(func, "conv2d_nchwc_u8s8")
    acc = relax.call_tir(gvar, [x, relax.const(packed)], relax.TensorType(out_shape, "int32"))
    acc = _layout_transform(tc, acc, lambda n, c, h, wi, cb: (n, c * _OC_BLOCK + cb, h, wi), None)
    if oc_p != out_channels:
        acc = relax.op.strided_slice(acc, axes=[1], begin=[0], end=[out_channels])
    return acc


def _layout_transform(tc, x, index_map, pad_value):
    """``R.layout_transform`` of an expression not yet typed (``relax.op.layout_transform`` reads
    its input's dtype to convert a Python ``pad_value``; ours is already a typed ``IntImm``)."""
    from tvm.relax.expr import prim_value
    from tvm.relax.op import _ffi_api

    index_map = tc.tvm.tirx.IndexMap.from_func(index_map, index_dtype="int64")
    return _ffi_api.layout_transform(x, index_map, None if pad_value is None else prim_value(pad_value))


def vnni_available(tc, target) -> bool:
    """True when ``target`` is an x86 LLVM target with AVX512-VNNI and TVM can emit its dot product.

    TVM 0.27's ``dot_16x4_vnni`` tensor intrinsic (``tvm/s_tir/tensor_intrin/x86.py``) passes
    ``<16 x i32>`` operands to ``llvm.x86.avx512.vpdpbusd.512``, which the LLVM it is built with
    (22) declares with ``<64 x i8>`` ones: every candidate MetaSchedule tensorizes with it fails
    LLVM's verifier. Where the stock intrinsic does not compile, we register the same instruction
    with the operands reinterpreted to ``<64 x i8>`` under the same name (MetaSchedule's x86 rule
    looks it up by name), and check that it compiles.
    """
    tvm = tc.tvm
    from tvm.target import codegen

    if target.kind.name != "llvm" or not codegen.target_has_features("avx512vnni", target):
        return False
    from tvm.s_tir import TensorIntrin
    from tvm.s_tir.tensor_intrin import x86

    if _compiles(tvm, x86.dot_product_16x4_u8i8i32_vnni, target):
        return True
    TensorIntrin.register(x86.VNNI_DOT_16x4_INTRIN, x86.dot_product_16x4_u8i8i32_desc, _vnni_impl(), override=True)
    return _compiles(tvm, _vnni_impl(), target)


def _compiles(tvm, prim_func, target) -> bool:
    try:
        tvm.compile(tvm.IRModule({"main": prim_func.with_attr("global_symbol", "main")}), target=target)
    except Exception:  # noqa: BLE001 - tvm.error.InternalError (LLVM verifier) or any lowering failure
        return False
    return True


def _vnni_impl():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def dot_product_16x4_u8i8i32_vnni(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(a_i32, 16), dtype="uint8x64"),
                B.vload([0, 0], dtype="int8x64"),
                dtype="int32x16",
            )

    return dot_product_16x4_u8i8i32_vnni
