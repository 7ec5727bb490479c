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
depthwise convolutions sum over their own input channels. Where the convolution (+ bias) is
quantized, as ONNX Runtime fuses it into ``QLinearConv``, the whole is requantized the way
``QLinearConv`` does it: the int32 bias added to the sums, then one float32 multiplier per channel,
``s_x * s_w / s_y`` (a float bias added before dividing by ``s_y`` differs from that in the last bit
of some outputs: 78 of the bridge model's 640 embedding values over 5 inputs). Anything else
(``MatMul``/``Gemm``, pooling, activations) keeps TVM's float lowering. Before the rewrite, each
``quantize(dequantize(x, s, z), s, z)`` of 8-bit ``x`` is folded to ``x`` (an identity, to the bit:
:func:`_requantize_identities`); a QDQ file has them around its pads, and fused into an epilogue each cost
two float divisions per element.

On x86 CPUs with AVX512-VNNI, each ungrouped ``quantize(conv2d(...) + bias)`` with a uint8 input
and static shapes becomes one kernel instead: TOPI's ``conv2d_NCHWc_int8`` (activations NCHW16c, or
NCHW4c where the input channels do not fill blocks of 16; weights in blocks of 16 output x 4 input
channels) with the correction, scales, bias and quantize as its epilogue, writing the 8-bit output in
NCHW16c blocks. MetaSchedule's x86 rules tensorize its convolution with ``vpdpbusd`` when the package is
tuned (``--tune``); see :func:`vnni_available` for the TVM 0.27 intrinsic this needs fixed. Depthwise ones
followed by a quantize take NCHW16c blocks there too (:func:`_packed_qdwconv`: 16 channels per int32
vector, no pad kernel); other grouped convolutions stay NCHW (integer all the same). What follows a
packed kernel (dequantize, PReLU, residual add, quantize, pools, pads) then runs on its blocks, and the
next convolution reads them without a layout change (:func:`_blocked_activations`), as oneDNN keeps its
activations blocked between layers.
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
    identities_folded: int = 0  # quantize(dequantize(x)) pairs with one scale and zero point (_requantize_identities)
    unpacks_saved: int = 0  # packed kernels' outputs kept in NCHW16c blocks for what follows (_blocked_activations)


def _value(expr) -> np.ndarray | None:
    """The array of a Relax constant, or None for anything else."""
    value = getattr(expr, "value", None)
    return value.numpy() if hasattr(value, "numpy") else None


def integer_convolutions(mod, tc, vnni: bool = False) -> tuple[object, IntegerConvolutions]:
    """Rewrite the QDQ convolutions of ``mod["main"]`` to integer ones (module docstring).

    ``tc`` is :func:`lanner.backends.tvm_backend.import_compiler`'s namespace. With ``vnni``
    (an x86 target with AVX512-VNNI), ungrouped convolutions followed by a quantize become packed
    VNNI kernels with a requantizing epilogue (:func:`_packed_qconv`). Returns the new module and
    an :class:`IntegerConvolutions` report; a convolution that does not have the exact QDQ form
    above is left as it is and named in ``left_float``.
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

    def qdq(matches):
        return [_value(matches[p]) for p in (w_q, s_x, z_x, s_w, z_w)]

    def rewrite(call, matches):
        nonlocal rewritten
        reason = _refusal(call, matches[data_q], *qdq(matches))
        if reason is not None:
            left.append(reason)
            return call
        rewritten += 1
        return _integer_conv(tc, call, matches[data_q], *qdq(matches)[:4], kernels)

    main, folded = _requantize_identities(tc, _pool_quantized(tc, mod["main"]))
    # quantize(conv2d (+ bias)) requantized as ONNX Runtime's QLinearConv does (one packed VNNI kernel where it can)
    b_q, s_b, z_b, s_y, z_y = (dpl.is_const() for _ in range(5))
    bias = dpl.is_op("relax.reshape")(dpl.is_op("relax.dequantize")(b_q, s_b, z_b), dpl.wildcard())
    for with_bias in (True, False):
        root = dpl.is_op("relax.add")(pattern, bias) if with_bias else pattern

        def fuse(call, matches, with_bias=with_bias):
            nonlocal rewritten
            conv = matches[pattern]
            w, sx, zx, sw, zw = qdq(matches)
            sy, zy = _value(matches[s_y]), _value(matches[z_y])
            b = [_value(matches[p]) for p in (b_q, s_b, z_b)] if with_bias else None
            if (
                _refusal(conv, matches[data_q], w, sx, zx, sw, zw) is not None
                or sy.size != 1
                or zy.size != 1
                or (b is not None and b[0].shape != (w.shape[0],))
            ):
                return call  # the convolution alone is rewritten (or refused) below
            rewritten += 1
            bias_q = None
            if b is not None:  # int32 with the scale s_x * s_w, as QLinearConv adds it to the sums
                bias_q = np.broadcast_to(b[0].astype(np.int32) - b[2].astype(np.int32), w.shape[:1])
            requant = (bias_q, np.float32(sy.reshape(())), int(zy.reshape(())), str(call.attrs.out_dtype))
            packed = vnni and _packable(tc, conv, matches[data_q])
            depthwise = vnni and _depthwise_packable(tc, conv, matches[data_q], w)
            return _integer_conv(tc, conv, matches[data_q], w, sx, zx, sw, kernels, requant, packed, depthwise)

        main = dpl.rewrite_call(dpl.is_op("relax.quantize")(root, s_y, z_y), fuse, main)
    main = dpl.rewrite_call(pattern, rewrite, main)
    # a conv2d outside the pattern (a float input, a weight that is not a constant) stays float too
    unmatched = _count_convolutions(mod["main"]) - rewritten - len(left)
    left.extend(["not between QDQ pairs"] * unmatched)
    blocked = 0
    if vnni:
        main, blocked = _blocked_activations(tc, main, kernels)
    out = kernels.get()
    out["main"] = main
    return out, IntegerConvolutions(rewritten, tuple(left), folded, blocked)


def _requantize_identities(tc, main):
    """``quantize(dequantize(x, s, z), s, z)`` -> ``x`` (same scale, zero point, axis and integer type; a
    float32 dequantize), and how many were folded.

    Exact for 8-bit ``x``: ``(x - z) * s / s`` is within ``|x - z| * 2**-23`` of the integer ``x - z``
    (``|x - z| <= 255``), so the quantize's rounding gives it back and its clip keeps it; scales are held to
    [1e-30, 1e30] so that neither product under- nor overflows. A QDQ file has such pairs around operations
    that move values without changing them (its zero pads, dropped at import where their pads are all zero:
    :func:`lanner.compile.onnx_graph.without_zero_pads`): each fused into an epilogue costs two float
    divisions per element (the bridge's residual adds)."""
    from tvm.relax import dpl

    x, s_x, z_x, s_y, z_y = dpl.wildcard(), dpl.is_const(), dpl.is_const(), dpl.is_const(), dpl.is_const()
    deq = dpl.is_op("relax.dequantize")(x, s_x, z_x)
    pattern = dpl.is_op("relax.quantize")(deq, s_y, z_y)
    folded = 0

    def rewrite(call, matches):
        nonlocal folded
        scale, zero, scale_y, zero_y = (_value(matches[p]) for p in (s_x, z_x, s_y, z_y))
        dtype = str(call.attrs.out_dtype)
        per_tensor = scale.size == 1 and zero.size == 1
        if (
            dtype not in ("uint8", "int8")
            or str(matches[x].ty.dtype) != dtype
            or scale.dtype != np.float32
            or str(matches[deq].attrs.out_dtype) != "float32"
            or not (np.array_equal(scale, scale_y) and np.array_equal(zero, zero_y))
            or not (per_tensor or int(call.attrs.axis) == int(matches[deq].attrs.axis))
            or not np.all((scale >= 1e-30) & (scale <= 1e30))
        ):
            return call
        folded += 1
        return matches[x]

    return dpl.rewrite_call(pattern, rewrite, main), folded


def _pool_quantized(tc, main):
    """``quantize(max_pool2d(x))`` -> ``max_pool2d(quantize(x))`` (per-tensor scale and zero point).

    Quantizing is monotonic (scale, round, add the zero point, clip), so it commutes with a maximum and
    the two give the same bits; the pool's out-of-range positions, -inf in float, are the integer type's
    minimum, which is also what -inf quantizes to. The pool then reads and the operation before it
    writes 8-bit values instead of float32 ones: for MTCNN P-Net, whose first convolution's 10 x 286 x
    382 output (at 288 x 384) goes through PReLU to a max pool in float, a quarter of the bytes of the
    largest activation in the network."""
    from tvm.relax import dpl

    x, s_y, z_y = dpl.wildcard(), dpl.is_const(), dpl.is_const()
    pool = dpl.is_op("relax.nn.max_pool2d")(x)
    pattern = dpl.is_op("relax.quantize")(pool, s_y, z_y)

    def rewrite(call, matches):
        if _value(matches[s_y]).size != 1 or _value(matches[z_y]).size != 1:
            return call
        a = matches[pool].attrs
        axis, out_dtype = int(call.attrs.axis), str(call.attrs.out_dtype)
        q = tc.relax.op.quantize(matches[x], matches[s_y], matches[z_y], axis, out_dtype)
        return tc.relax.op.nn.max_pool2d(
            q,
            pool_size=[int(v) for v in a.pool_size],
            strides=[int(v) for v in a.strides],
            padding=[int(v) for v in a.padding],
            dilation=[int(v) for v in a.dilation],
            ceil_mode=bool(a.ceil_mode),
            count_include_pad=bool(a.count_include_pad),
            layout=str(a.layout),
            out_layout=str(a.out_layout),
        )

    return dpl.rewrite_call(pattern, rewrite, main)


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


def _packable(tc, call, data) -> bool:
    """Whether this convolution can take the VNNI layout: ungrouped, uint8 input, static shape."""
    static = all(isinstance(d, tc.tvm.tirx.IntImm) for d in data.ty.shape)  # not a symbolic batch
    return static and int(call.attrs.groups) == 1 and str(data.ty.dtype) == "uint8"


def _depthwise_packable(tc, call, data, w) -> bool:
    """Whether this convolution can run in NCHW16c blocks (:func:`_packed_qdwconv`): depthwise (one input
    and one output channel per group), static shape."""
    static = all(isinstance(d, tc.tvm.tirx.IntImm) for d in data.ty.shape)
    channels = int(data.ty.shape[1]) if static else -1
    return static and int(call.attrs.groups) == channels == w.shape[0] and w.shape[1] == 1


def _integer_conv(tc, call, data, w, s_x, z_x, s_w, kernels, requant=None, packed=False, depthwise=False):
    """The integer form of ``call``; with ``requant`` = (int32 bias or None, output scale, output zero
    point, output dtype), of ``quantize(call + bias)`` requantized as ONNX Runtime's QLinearConv does:
    ``round(float32(sums + bias) * (s_x * s_w / s_y)) + z_y``, clipped; with ``packed``, as one packed
    VNNI kernel (:func:`_packed_qconv`); with ``depthwise``, as one kernel in NCHW16c blocks
    (:func:`_packed_qdwconv`)."""
    relax = tc.relax
    attrs = call.attrs
    out_channels = w.shape[0]
    zero = int(z_x.reshape(()))
    shape = [int(d) if isinstance(d, tc.tvm.tirx.IntImm) else d for d in data.ty.shape]
    padding = [int(p) for p in attrs.padding]  # top, left, bottom, right
    scale = (np.float32(s_x.reshape(())) * s_w.astype(np.float32).reshape(-1)) * np.ones(out_channels, np.float32)
    correction = (zero * w.astype(np.int64).sum(axis=(1, 2, 3))).astype(np.int32)
    if depthwise:
        conv = ([int(v) for v in attrs.strides], [int(v) for v in attrs.dilation], padding)
        return _packed_qdwconv(tc, data, shape, w, zero, conv, correction, scale, requant, kernels)
    if any(padding):
        data = relax.op.nn.pad(
            data, [0, 0, 0, 0, padding[0], padding[2], padding[1], padding[3]], pad_value=float(zero)
        )
    strides = [int(s) for s in attrs.strides]
    dilation = [int(d) for d in attrs.dilation]
    if packed:
        n, c, h, wi = shape
        padded_shape = (n, c, h + padding[0] + padding[2], wi + padding[1] + padding[3])
        return _packed_qconv(tc, data, padded_shape, w, zero, strides, dilation, correction, scale, requant, kernels)
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
        acc = relax.op.subtract(acc, relax.const(correction.reshape(1, out_channels, 1, 1)))
    if requant is None:
        return relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(scale.reshape(1, out_channels, 1, 1)))
    bias_q, s_y, z_y, dtype = requant
    if bias_q is not None:
        acc = relax.op.add(acc, relax.const(np.ascontiguousarray(bias_q, np.int32).reshape(1, out_channels, 1, 1)))
    multiplier = _multiplier(scale, s_y).reshape(1, out_channels, 1, 1)
    v = relax.op.round(relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(multiplier)))
    v = relax.op.add(v, relax.const(np.float32(z_y)))
    lo, hi = _int_range(dtype)
    v = relax.op.maximum(relax.op.minimum(v, relax.const(np.float32(hi))), relax.const(np.float32(lo)))
    return relax.op.astype(v, dtype)


def _multiplier(scale, s_y):
    """QLinearConv's requantization multiplier per channel: ``s_x * s_w / s_y`` in float32."""
    return (scale / np.float32(s_y)).astype(np.float32)


def _int_range(dtype):
    """The clip bounds, as floats, of a quantized output type (uint8 or int8)."""
    return (0.0, 255.0) if dtype == "uint8" else (-128.0, 127.0)


# VNNI's vpdpbusd multiplies 4 uint8 activations by 4 int8 weights of each of 16 output channels
# and adds the sums to 16 int32 lanes: activations packed NCHW4c, weights in blocks of 16 output
# x 4 input channels, the layout of TOPI's conv2d_NCHWc_int8 (n_elems 4).
_IC_BLOCK, _OC_BLOCK = 4, 16


def _input_block(channels: int) -> int:
    """Channels per block of a packed convolution's input: 16 where they fill whole blocks of 16, the layout of
    every packed kernel's output, so a convolution reads the one before it as that one writes it
    (:func:`_blocked_activations`); else 4, VNNI's own group (an image's 3 channels would take 16 in blocks of 16)."""
    return _OC_BLOCK if channels % _OC_BLOCK == 0 else _IC_BLOCK


def _packed_qconv(tc, data, shape, w, zero, strides, dilation, correction, scale, requant, kernels):
    """``quantize(conv2d(data, w) + bias)``, requantized as :func:`_integer_conv` says, as one kernel: TOPI's
    ``conv2d_NCHWc_int8`` and a requantizing epilogue in the accumulator's NCHW16c blocks, so the
    int32 sums never leave the kernel. ``data`` (uint8 NCHW, already padded) is packed to NCHW16c or NCHW4c
    (:func:`_pack`, :func:`_input_block`; channels padded with the zero point, which meet zero weights); ``w``
    is packed here; the result is unpacked to NCHW (:func:`_unpack`). Both are declared element-wise, so
    FuseOps puts them into the kernels around them; :func:`_blocked_activations` then removes the pairs
    between two packed kernels. The epilogue is the same arithmetic as the NCHW form's, so both layouts give
    the same bits. MetaSchedule's x86 rules tensorize the convolution with VNNI (:func:`vnni_available`)."""
    tvm = tc.tvm
    from tvm import te, topi

    out_channels, in_channels, kh, kw = w.shape
    block = _input_block(in_channels)
    oc_p = -(-out_channels // _OC_BLOCK) * _OC_BLOCK
    ic_p = -(-in_channels // block) * block
    padded = np.zeros((oc_p, ic_p, kh, kw), np.int8)
    padded[:out_channels, :in_channels] = w
    # (oc/16, 16, ic/block, block/4, 4, kh, kw) -> (oc/16, ic/block, kh, kw, block/4, 16, 4)
    packed = padded.reshape(oc_p // _OC_BLOCK, _OC_BLOCK, ic_p // block, block // _IC_BLOCK, _IC_BLOCK, kh, kw)
    packed = np.ascontiguousarray(packed.transpose(0, 2, 5, 6, 3, 1, 4))
    n, _, h, wi = shape
    x = _pack(tc, kernels, data, shape, zero, block=block)

    def i64(*dims):
        return _i64(tvm, *dims)

    te_data = te.placeholder(i64(n, ic_p // block, h, wi, block), "uint8", name="data")
    te_kernel = te.placeholder(i64(*packed.shape), "int8", name="kernel")
    te_acc = topi.nn.conv2d_NCHWc_int8(
        te_data, te_kernel, strides, 0, dilation, f"NCHW{block}c", f"NCHW{_OC_BLOCK}c", "int32", _IC_BLOCK
    )
    return _requantized_kernel(
        tc, kernels, "qconv2d_nchwc_u8s8", (te_data, te_kernel, te_acc), (x, packed), correction, scale, requant
    )


def _requantized_kernel(tc, kernels, name, computes, inputs, correction, scale, requant):
    """The packed kernels' epilogue and call: the int32 sums ``acc`` (NCHW16c) minus the zero-point correction,
    plus the bias, requantized as :func:`_integer_conv` says in the accumulator's own layout (16-lane
    stores, no scatter), added to ``kernels`` as ``name`` over (``data``, ``kernel``) = ``computes[:2]``, called
    on ``inputs`` (the packed activations, the packed weights), and unpacked to NCHW (:func:`_unpack`).
    ``correction`` and ``scale`` are per output channel; padded channels get zero correction and scale."""
    relax, tvm = tc.relax, tc.tvm
    from tvm import te

    te_data, te_kernel, te_acc = computes
    bias, s_y, z_y, dtype = requant
    channels = len(correction)
    packed_shape = tuple(int(d) for d in te_acc.shape)
    c_p = packed_shape[1] * _OC_BLOCK
    te_corr = te.placeholder(_i64(tvm, c_p), "int32", name="correction")
    te_scale = te.placeholder(_i64(tvm, c_p), "float32", name="scale")
    te_bias = te.placeholder(_i64(tvm, c_p), "int32", name="bias")
    lo, hi = _int_range(dtype)

    def requantize(b, cb, y, x, ci):
        c = cb * _OC_BLOCK + ci
        a = te_acc[b, cb, y, x, ci] - te_corr[c]
        if bias is not None:
            a = a + te_bias[c]
        q = te.round(a.astype("float32") * te_scale[c]) + tvm.tirx.const(float(z_y), "float32")
        return te.max(te.min(q, hi), lo).astype(dtype)

    te_q = te.compute(_i64(tvm, *packed_shape), requantize, name="requantized")
    params = [te_data, te_kernel, te_corr, te_scale, *([te_bias] if bias is not None else []), te_q]
    gvar = kernels.add_func(te.create_prim_func(params).without_attr("global_symbol"), name)
    per_channel = [correction, _multiplier(scale, s_y), *([bias] if bias is not None else [])]
    args = [inputs[0], relax.const(inputs[1]), *(relax.const(np.pad(v, (0, c_p - channels))) for v in per_channel)]
    y = relax.call_tir(gvar, args, relax.TensorType(list(packed_shape), dtype))
    return _unpack(tc, kernels, y, packed_shape, channels, dtype)


def _packed_qdwconv(tc, data, shape, w, zero, conv, correction, scale, requant, kernels):
    """A depthwise ``quantize(conv2d(data, w) + bias)`` as one kernel in NCHW16c blocks: each output pixel's 16
    channels are one int32 vector, the window's products summed in it, requantized in it as
    :func:`_packed_qconv` does. Its input is ``data`` (8-bit NCHW, not padded) packed to NCHW16c, padded with the
    zero point (as the NCHW form's pad kernel does) in a block of this kernel, and its output is unpacked to NCHW;
    both layout changes are declared element-wise (:func:`_layout_kernel`), so the pack fuses into the kernel
    that writes ``data`` (a packed convolution writes its own NCHW16c blocks, whole) and the unpack with the
    next convolution's pack into this one. In the NCHW form the same convolution reads and writes one
    channel plane at a time, and its padding is a kernel of its own (mobileface112: 10 depthwise kernels and
    10 pads, 145 of 434 us at 1 thread, tuned; benchmarks/compile/README.md, twelfth run). Reading the padding
    through a bounds test at every tap instead of a padded block made the largest one's default 35 us, not 24."""
    tvm = tc.tvm
    from tvm import te

    (stride_h, stride_w), (dil_h, dil_w), (pad_t, pad_l, pad_b, pad_r) = conv
    channels, _, kh, kw = w.shape
    n, _, h, wi = shape
    blocks = -(-channels // _OC_BLOCK)
    c_p = blocks * _OC_BLOCK
    in_dtype = str(data.ty.dtype)
    weights = np.zeros((c_p, kh, kw), np.int8)
    weights[:channels] = w[:, 0]
    weights = np.ascontiguousarray(weights.reshape(blocks, _OC_BLOCK, kh, kw).transpose(0, 2, 3, 1))
    h_out = (h + pad_t + pad_b - dil_h * (kh - 1) - 1) // stride_h + 1
    w_out = (wi + pad_l + pad_r - dil_w * (kw - 1) - 1) // stride_w + 1
    x = _pack(tc, kernels, data, shape, zero, block=_OC_BLOCK, dtype=in_dtype)

    te_data = te.placeholder(_i64(tvm, n, blocks, h, wi, _OC_BLOCK), in_dtype, name="data")
    te_kernel = te.placeholder(_i64(tvm, *weights.shape), "int8", name="kernel")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def pad(b, cb, y, xx, ci):
        inside = tvm.tirx.all(y >= pad_t, y < h + pad_t, xx >= pad_l, xx < wi + pad_l)
        value = te_data[b, cb, te.max(te.min(y - pad_t, h - 1), 0), te.max(te.min(xx - pad_l, wi - 1), 0), ci]
        return te.if_then_else(inside, value, tvm.tirx.const(zero, in_dtype))

    # the padded input, a block of the kernel's own (MetaSchedule computes it where it serves the loops best)
    te_pad = te.compute(_i64(tvm, n, blocks, h + pad_t + pad_b, wi + pad_l + pad_r, _OC_BLOCK), pad, name="padded")

    def window(b, cb, y, xx, ci):
        value = te_pad[b, cb, y * stride_h + ry * dil_h, xx * stride_w + rx * dil_w, ci]
        return te.sum(value.astype("int32") * te_kernel[cb, ry, rx, ci].astype("int32"), axis=[ry, rx])

    te_acc = te.compute(_i64(tvm, n, blocks, h_out, w_out, _OC_BLOCK), window, name="acc")
    computes = (te_data, te_kernel, te_acc)
    return _requantized_kernel(tc, kernels, "qdwconv2d_nchw16c", computes, (x, weights), correction, scale, requant)


# Operations on each element alone, with attributes that say nothing of a layout: in NCHW16c blocks they give,
# channel for channel, what they give in NCHW (with scalar operands: a per-tensor scale or zero point).
_ELEMENTWISE_OPS = frozenset(
    {
        "relax.quantize",
        "relax.dequantize",
        "relax.add",
        "relax.subtract",
        "relax.multiply",
        "relax.divide",
        "relax.maximum",
        "relax.minimum",
        "relax.round",
        "relax.clip",
        "relax.astype",
        "relax.nn.relu",
    }
)


def _blocked_activations(tc, main, kernels):
    """``main`` with the activations between packed convolutions kept in the NCHW16c blocks the convolutions
    write, and how many unpacks to NCHW that saved.

    Each packed kernel writes NCHW16c (16 channels of a pixel side by side, the VNNI accumulator's layout),
    which :func:`_integer_conv` unpacks to NCHW for the graph's operations after it, and the next convolution
    packs again. Here every value computed from an unpacked one by element-wise operations (per-tensor
    quantize / dequantize, add, multiply, ReLU ...), a per-channel PReLU, a max or average pool or a spatial pad
    is computed on the blocks instead, and a pack of such a value becomes the blocks themselves (a convolution
    reading NCHW16c: :func:`_input_block`) or a regrouping of them (NCHW4c: :func:`_repack`). So a kernel's
    epilogue, the residual add of a ResNet block included, runs in the layout its accumulator has, 16 lanes at a
    time, and no layout change is left between two convolutions. Values something else needs (a matrix product,
    the graph's output) are unpacked where they are used. Channels past the last real one hold whatever the
    operations make of the padding; they only ever meet zero weights or are dropped by an unpack, so the
    outputs are the same to the bit (the exactness tests run with it)."""
    relax = tc.relax
    body = main.body
    if (
        len(body.blocks) != 1
        or not isinstance(body.blocks[0], relax.DataflowBlock)
        or not all(isinstance(b, relax.VarBinding) for b in body.blocks[0].bindings)  # (no match_cast)
    ):
        return main, 0
    context = kernels.get()
    bound = {b.var: b.value for b in body.blocks[0].bindings}
    fb = relax.BlockBuilder()
    emitted: dict = {}  # a var of main -> its value in the new function, in main's layout
    blocked: dict = {}  # a var of main (NCHW) -> (its NCHW16c value in the new function, channels)

    def layout(call, module=context):
        if not isinstance(call, relax.Call) or getattr(call.op, "name", None) != "relax.call_tir":
            return None
        attrs = getattr(module.functions.get(call.args[0]), "attrs", None)
        return str(attrs[_LAYOUT_ATTR]) if attrs is not None and _LAYOUT_ATTR in attrs else None

    def unpacks(func, module):
        return sum(layout(b.value, module) == "unpack" for block in func.body.blocks for b in block.bindings)

    def shape(expr):
        return [int(d) for d in expr.ty.shape]

    def nchw(var):  # main's value, unpacked from its blocks where only those were computed
        if var not in emitted and var in blocked:
            y, channels = blocked[var]
            emitted[var] = fb.emit(_unpack(tc, kernels, y, shape(y), channels, str(y.ty.dtype)))
        return emitted.get(var, var)  # (main's parameters stay as they are)

    def remap(expr):
        if isinstance(expr, relax.Var):
            return nchw(expr)
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([remap(f) for f in expr.fields])
        if isinstance(expr, relax.TupleGetItem):
            return relax.TupleGetItem(remap(expr.tuple_value), expr.index)
        if isinstance(expr, relax.Call):
            return relax.Call(expr.op, [remap(a) for a in expr.args], expr.attrs, expr.ty_args)
        return expr  # constants, shapes, global vars

    def constant(expr):  # the array of a constant, through the bindings and reshapes that lead to it
        while isinstance(expr, relax.Var) and expr in bound:
            expr = bound[expr]
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == "relax.reshape":
            return constant(expr.args[0])
        return _value(expr)

    def single(expr):  # one element: broadcasts over NCHW16c as over NCHW
        info = expr.ty
        return isinstance(info, relax.TensorType) and info.shape is not None and all(int(d) == 1 for d in info.shape)

    def blocked_form(value):  # (NCHW16c value, channels), or None where it is not computed in blocks
        if not isinstance(value, relax.Call):
            return None
        op = getattr(value.op, "name", None)
        if layout(value) == "unpack":
            (y,) = value.args[1].fields
            return nchw(y), shape(value)[1]
        inputs = [a for a in value.args if isinstance(a, relax.Var) and a in blocked]
        if not inputs or len({blocked[a][1] for a in inputs}) != 1:
            return None
        x, channels = blocked[inputs[0]]
        if op in _ELEMENTWISE_OPS:
            n, _, h, w, _ = shape(x)
            unblocked = [a for a in value.args if a not in blocked and not single(a)]
            if any(shape(blocked[a][0]) != shape(x) for a in inputs) or not all(
                isinstance(a, relax.Var) and a.ty.shape is not None and shape(a) == [n, channels, h, w]
                for a in unblocked
            ):
                return None
            args = []
            for a in value.args:
                if any(a.same_as(u) for u in unblocked):  # (a ResNet shortcut padded in channels, in NCHW)
                    dtype = str(a.ty.dtype)
                    args.append(fb.emit(_pack(tc, kernels, nchw(a), shape(a), 0, _OC_BLOCK, dtype)))
                else:
                    args.append(blocked[a][0] if a in blocked else remap(a))
            return fb.emit(relax.Call(value.op, args, value.attrs, value.ty_args)), channels
        if op == "relax.nn.prelu" and int(value.attrs.axis) == 1:
            alpha = constant(value.args[1])
            if alpha is None or alpha.size != channels:
                return None
            c_p = shape(x)[1] * _OC_BLOCK
            slopes = np.pad(alpha.reshape(-1).astype(np.float32), (0, c_p - channels))
            slopes = relax.const(slopes.reshape(1, -1, 1, 1, _OC_BLOCK), str(x.ty.dtype))
            # TOPI's prelu: x > 0 ? x : x * slope
            positive = fb.emit(relax.op.greater(x, relax.const(0.0, str(x.ty.dtype))))
            return fb.emit(relax.op.where(positive, x, fb.emit(relax.op.multiply(x, slopes)))), channels
        if op in ("relax.nn.max_pool2d", "relax.nn.avg_pool2d") and value.attrs.layout == "NCHW":
            a = value.attrs
            pool = relax.op.nn.max_pool2d if op == "relax.nn.max_pool2d" else relax.op.nn.avg_pool2d
            ints = lambda v: [int(i) for i in v]  # noqa: E731
            call = pool(
                x,
                ints(a.pool_size),
                ints(a.strides),
                ints(a.padding),
                ints(a.dilation),
                bool(a.ceil_mode),
                bool(a.count_include_pad),
                f"NCHW{_OC_BLOCK}c",
                f"NCHW{_OC_BLOCK}c",
            )
            return fb.emit(call), channels
        if op == "relax.nn.pad" and all(int(p) == 0 for p in value.attrs.pad_width[:4]):
            pads = [int(p) for p in value.attrs.pad_width] + [0, 0]
            return fb.emit(relax.op.nn.pad(x, pads, str(value.attrs.pad_mode), float(value.attrs.pad_value))), channels
        return None

    def pack(value):  # a pack of a value in blocks: the blocks as they are, or regrouped by 4
        (u,) = value.args[1].fields
        if u not in blocked:
            return None
        y, _ = blocked[u]
        out, have = shape(value), shape(y)
        if str(y.ty.dtype) != str(value.ty.dtype) or [out[0], *out[2:4]] != [have[0], *have[2:4]]:
            return None
        if out == have:
            return y
        if out[-1] == _IC_BLOCK and out[1] <= have[1] * (_OC_BLOCK // _IC_BLOCK):
            return fb.emit(_repack(tc, kernels, y, have, out, str(y.ty.dtype)))
        return None

    with fb.function("main", list(main.params)):
        with fb.dataflow():
            for binding in body.blocks[0].bindings:
                var, value = binding.var, binding.value
                if not isinstance(var, relax.DataflowVar):
                    emitted[var] = fb.emit_output(remap(value))
                    continue
                if layout(value) == "pack" and (packed := pack(value)) is not None:
                    emitted[var] = packed
                    continue
                form = blocked_form(value)
                if form is not None:
                    blocked[var] = form
                else:
                    emitted[var] = fb.emit(remap(value))
        fb.emit_func_output(remap(body.body))
    built = fb.get()["main"]
    new = relax.analysis.remove_all_unused(
        relax.Function(built.params, built.body, built.ret_ty, main.is_pure, main.attrs)
    )
    return new, unpacks(main, context) - unpacks(new, kernels.get())  # (with the unpacks added above)


def _i64(tvm, *dims):
    """Shape dimensions as int64 (Relax's shapes are int64; FuseTIR maps buffers to Relax vars by exact type)."""
    return [tvm.tirx.IntImm("int64", int(d)) for d in dims]


# FuseOps's kElemWise: what the pack / unpack functions below are declared as (see _layout_kernel),
# in a function attribute of their own that declared_op_patterns copies to "op_pattern"
_ELEMWISE = 0
_PATTERN_ATTR = "lanner.op_pattern"
_LAYOUT_ATTR = "lanner.layout"  # "pack" (NCHW -> NCHW{block}c) or "unpack" (NCHW16c -> NCHW)


def _layout_kernel(tc, kernels, compute, inputs, name, kind=None):
    """Add a layout-changing PrimFunc declared element-wise, so FuseOps fuses it like the operations
    around it: an unpack into the convolution before it and the element-wise operations after that (the
    kernel then writes its output once, in its final layout), a pack into the operations before it.
    AnnotateTIROpPattern would call the index remap opaque and leave it a kernel of its own: one more
    pass over the activations and one more call per convolution. :func:`declared_op_patterns` restores
    the declaration after AnnotateTIROpPattern."""
    from tvm import te

    func = te.create_prim_func([*inputs, compute]).without_attr("global_symbol").with_attr(_PATTERN_ATTR, _ELEMWISE)
    if kind is not None:  # what _blocked_activations looks for
        func = func.with_attr(_LAYOUT_ATTR, kind)
    return kernels.add_func(func, name)


def _pack(tc, kernels, data, shape, zero, block=_IC_BLOCK, dtype="uint8"):
    """8-bit NCHW -> NCHW{block}c (channels padded with the zero point ``zero``, which meets zero weights)."""
    relax, tvm = tc.relax, tc.tvm
    from tvm import te

    n, c, h, w = shape
    c_p = -(-c // block)
    src = te.placeholder(_i64(tvm, n, c, h, w), dtype, name="src")

    def value(b, cb, y, x, ci):
        ch = cb * block + ci
        return te.if_then_else(ch < c, src[b, te.min(ch, c - 1), y, x], tvm.tirx.const(zero, dtype))

    packed = te.compute(_i64(tvm, n, c_p, h, w, block), value, name="packed")
    gvar = _layout_kernel(tc, kernels, packed, [src], f"pack_nchw{block}c", "pack")
    return relax.call_tir(gvar, [data], relax.TensorType([n, c_p, h, w, block], dtype))


def _unpack(tc, kernels, y, packed_shape, channels, dtype):
    """NCHW16c (the convolution's output blocks) -> NCHW with ``channels`` channels."""
    relax, tvm = tc.relax, tc.tvm
    from tvm import te

    n, cb, h, w, block = packed_shape
    src = te.placeholder(_i64(tvm, *packed_shape), dtype, name="src")
    out = te.compute(
        _i64(tvm, n, channels, h, w), lambda b, c, yy, xx: src[b, c // block, yy, xx, c % block], name="unpacked"
    )
    gvar = _layout_kernel(tc, kernels, out, [src], "unpack_nchw16c", "unpack")
    return relax.call_tir(gvar, [y], relax.TensorType([n, channels, h, w], dtype))


def _repack(tc, kernels, y, packed_shape, out_shape, dtype):
    """NCHW16c -> NCHW4c: each group of 4 channels moves as it is (a convolution whose input channels do not
    fill blocks of 16 reading one whose output does)."""
    relax, tvm = tc.relax, tc.tvm
    from tvm import te

    src = te.placeholder(_i64(tvm, *packed_shape), dtype, name="src")
    ratio = _OC_BLOCK // _IC_BLOCK
    out = te.compute(
        _i64(tvm, *out_shape),
        lambda b, cb, yy, xx, ci: src[b, cb // ratio, yy, xx, cb % ratio * _IC_BLOCK + ci],
        name="repacked",
    )
    gvar = _layout_kernel(tc, kernels, out, [src], "repack_nchw16c_nchw4c")
    return relax.call_tir(gvar, [y], relax.TensorType(list(out_shape), dtype))


def declared_op_patterns(tvm):
    """Module pass: give each PrimFunc with a ``lanner.op_pattern`` attribute that ``op_pattern`` (run it
    after AnnotateTIROpPattern, before FuseOps)."""

    @tvm.transform.module_pass(opt_level=0, name="DeclaredOpPatterns")
    def apply(mod, _ctx):
        for gvar, func in list(mod.functions.items()):
            attrs = getattr(func, "attrs", None)
            if attrs is not None and _PATTERN_ATTR in attrs:
                mod[gvar] = func.with_attr("op_pattern", int(attrs[_PATTERN_ATTR]))
        return mod

    return apply


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

    x86 = _x86_tensor_intrinsics()
    if _compiles(tvm, x86.dot_product_16x4_u8i8i32_vnni, target):
        return True
    TensorIntrin.register(x86.VNNI_DOT_16x4_INTRIN, x86.dot_product_16x4_u8i8i32_desc, _vnni_impl(), override=True)
    return _compiles(tvm, _vnni_impl(), target)


def _x86_tensor_intrinsics():
    """``tvm.s_tir.tensor_intrin.x86`` (its intrinsics registered) without the rest of its package.

    The package's ``__init__`` registers every target's tensor intrinsics (CUDA's alone ~16 s of TVMScript
    parsing on a 2-core x86; 0.2 s for x86's). The submodule is loaded under a stand-in for the package, which is
    then removed, so a later ``import tvm.s_tir.tensor_intrin`` (MetaSchedule's ``TuneContext`` makes one) runs
    the real package and reuses this submodule. Not for concurrent use with another thread's first import of
    that package (compile-time only; Lanner compiles in one thread).
    """
    import importlib
    import importlib.util
    import sys
    import types

    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return importlib.import_module(f"{name}.x86")
    spec = importlib.util.find_spec(name)
    stand_in = types.ModuleType(name)
    stand_in.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = stand_in
    try:
        return importlib.import_module(f"{name}.x86")
    finally:
        del sys.modules[name]


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
