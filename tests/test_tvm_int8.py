"""TVM int8 packages: the Relax rewrite of QDQ convolutions to integer ones
(lanner.compile.tvm_int8) against its oracle, ONNX Runtime running the same QDQ model, in both
kernel layouts (NCHW, and the AVX512-VNNI packed one where this CPU has it); what build_tvm
refuses."""

from __future__ import annotations

import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("tvm")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx_models import save_graph  # noqa: E402  (tests/support)

import lanner  # noqa: E402
from lanner.backends import tvm_backend  # noqa: E402
from lanner.compile import (  # noqa: E402
    TuningRequest,
    UnsupportedError,
    compile_model,
    tvm_build,
    tvm_cpu_schedules,
    tvm_int8,
    tvm_tuning,
)
from lanner.compile.onnxruntime_build import quantize_qdq  # noqa: E402
from lanner.compile.pipeline import HELD_OUT_MAX  # noqa: E402
from lanner.manifest import Manifest  # noqa: E402

SHAPE = (1, 3, 23, 29)  # odd sizes: the packed layout pads channels, never the image


def _init(rng, name, shape, scale=0.3):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def make_convnet(path):
    """Every convolution form the rewrite handles: no padding, padding 1 and 2, stride 2, dilation 2,
    depthwise (groups = channels), channel counts that are not multiples of 4 or 16, a PReLU
    between (quantized to uint8 with a non-zero zero point), and a float Gemm head left as it is."""
    rng = np.random.default_rng(3)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, list(SHAPE))
    maps = helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, 6, 12, 14])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])
    inits = [
        _init(rng, "w1", (10, 3, 3, 3)),
        _init(rng, "b1", (10,), 0.1),
        _init(rng, "a1", (10, 1, 1), 0.2),
        _init(rng, "w2", (10, 1, 3, 3)),
        _init(rng, "b2", (10,), 0.1),
        _init(rng, "w3", (21, 10, 3, 3), 0.2),
        _init(rng, "b3", (21,), 0.1),
        _init(rng, "w4", (17, 21, 1, 1), 0.2),
        _init(rng, "b4", (17,), 0.1),
        _init(rng, "w5", (6, 17, 3, 3), 0.2),
        _init(rng, "wf", (5, 6)),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"]),
        helper.make_node("PRelu", ["c1", "a1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=10),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=[2, 1, 2, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4", "b4"], ["c4"]),
        helper.make_node("Relu", ["c4"], ["r4"]),
        helper.make_node("Conv", ["r4", "w5"], ["maps"], pads=[2, 2, 2, 2], dilations=[2, 2]),
        helper.make_node("GlobalAveragePool", ["maps"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf"], ["logits"], transB=1),
    ]
    return save_graph(path, nodes, "convnet", [x], [maps, logits], inits)


@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    """The float model, its calibration feeds and ORT's QDQ model of it (what build_tvm quantizes)."""
    root = tmp_path_factory.mktemp("int8")
    source = make_convnet(root / "convnet.onnx")
    rng = np.random.default_rng(11)
    feeds = [{"image": rng.uniform(-1, 1, SHAPE).astype(np.float32)} for _ in range(12)]
    # compile_model calibrates on all but the last samples, which it holds out for fidelity
    calibration = feeds[: len(feeds) - min(HELD_OUT_MAX, len(feeds) // 5)]
    quantize_qdq(source, root / "qdq.onnx", calibration, lambda _: None, "tvm")
    return source, feeds, root / "qdq.onnx"


def _ort(path, x):
    """ONNX Runtime (the oracle) on ``path``'s ``image`` input: every output, in the graph's order."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})


def _host_target(tc):
    return tc.tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": tvm_backend.host_mcpu()})


def _compiled(tc, mod):
    """``mod`` built for this CPU (TVM's default pipeline) as a function: input -> list of outputs."""
    vm = tc.relax.VirtualMachine(tc.relax.build(mod, target=_host_target(tc)), tc.tvm.cpu())

    def run(x):
        out = vm["main"](tc.tvm.runtime.tensor(x))
        return [o.numpy() for o in ([out] if hasattr(out, "numpy") else out)]

    return run


def _host_vnni(tc) -> bool:
    return tvm_int8.vnni_available(tc, _host_target(tc))


@pytest.mark.parametrize("vnni", [False, True], ids=["nchw", "vnni"])
def test_integer_convolutions_match_onnxruntime_exactly(qdq, vnni):
    # ORT runs the QDQ model as QLinearConv (8-bit products, int32 sums); the rewrite does the same
    # integer arithmetic, so the quantized outputs agree to the bit.
    tc = tvm_backend.import_compiler()
    if vnni and not _host_vnni(tc):
        pytest.skip("this CPU has no AVX512-VNNI")
    _, _, path = qdq
    mod = tc.from_onnx(onnx.load(str(path)), keep_params_in_input=False)
    rewritten, report = tvm_int8.integer_convolutions(mod, tc, vnni=vnni)
    # VNNI: the four convolutions whose outputs feed another's stay in NCHW16c blocks; the last, the graph's
    # output, is unpacked
    assert report == tvm_int8.IntegerConvolutions(rewritten=5, left_float=(), unpacks_saved=4 if vnni else 0)
    script = rewritten.script(show_meta=False)
    assert script.count('out_dtype="int32"') == (0 if vnni else 5)
    # VNNI: each ungrouped conv -> (bias) -> quantize is one kernel with a requantizing epilogue, the
    # depthwise one a kernel in NCHW16c blocks (10 channels: one block, 6 of them padding)
    assert script.count("qconv2d_nchwc_u8s8") == (2 * 4 if vnni else 0)  # definition + call, per conv
    assert script.count("qdwconv2d_nchw16c") == (2 if vnni else 0)
    run = _compiled(tc, rewritten)
    rng = np.random.default_rng(5)
    for _ in range(3):
        x = rng.uniform(-1.2, 1.2, SHAPE).astype(np.float32)  # beyond the calibrated range: saturation too
        for got, want in zip(run(x), _ort(path, x)):
            np.testing.assert_array_equal(got, want)


def make_pooled_net(path):
    """MTCNN P-Net's first block: conv -> PReLU -> 2x2 max pool (ceil mode, odd sizes: partial windows) -> conv."""
    rng = np.random.default_rng(7)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, list(SHAPE))
    y = helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, 6, 9, 12])
    inits = [
        _init(rng, "w1", (10, 3, 3, 3)),
        _init(rng, "b1", (10,), 0.1),
        _init(rng, "a1", (10, 1, 1), 0.2),
        _init(rng, "w2", (6, 10, 3, 3), 0.2),
        _init(rng, "b2", (6,), 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"]),
        helper.make_node("PRelu", ["c1", "a1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["maps"]),
    ]
    return save_graph(path, nodes, "pooled", [x], [y], inits)


@pytest.mark.parametrize("vnni", [False, True], ids=["nchw", "vnni"])
def test_max_pool_runs_on_the_quantized_values_exactly(tmp_path, vnni):
    # quantize(max_pool(x)) == max_pool(quantize(x)) bit for bit (quantizing is monotonic), so the
    # pool is moved after the quantize and reads uint8, not float32.
    tc = tvm_backend.import_compiler()
    if vnni and not _host_vnni(tc):
        pytest.skip("this CPU has no AVX512-VNNI")
    rng = np.random.default_rng(13)
    feeds = [{"image": rng.uniform(-1, 1, SHAPE).astype(np.float32)} for _ in range(8)]
    quantize_qdq(make_pooled_net(tmp_path / "pooled.onnx"), tmp_path / "qdq.onnx", feeds, lambda _: None, "tvm")
    mod = tc.from_onnx(onnx.load(str(tmp_path / "qdq.onnx")), keep_params_in_input=False)
    assert re.search(r"float32.*R\.nn\.max_pool2d", mod.script(show_meta=False))  # ORT's QDQ pools in float
    rewritten, report = tvm_int8.integer_convolutions(mod, tc, vnni=vnni)
    assert report.rewritten == 2
    pools = [line for line in rewritten.script(show_meta=False).splitlines() if "R.nn.max_pool2d" in line]
    assert len(pools) == 1 and 'dtype="uint8"' in pools[0], pools
    run = _compiled(tc, rewritten)
    for _ in range(3):
        x = rng.uniform(-1.3, 1.3, SHAPE).astype(np.float32)
        np.testing.assert_array_equal(run(x)[0], _ort(tmp_path / "qdq.onnx", x)[0])


def test_layout_changes_fuse_into_the_operations_around_them(qdq):
    # Between two convolutions the activations stay in the NCHW16c blocks the first one writes: its epilogue
    # (PReLU, quantize) runs on them, and the next convolution reads them as they are (16-channel inputs) or
    # regrouped by 4 (others); the layout changes are declared element-wise, so after the build's fusion
    # passes none is a kernel of its own (AnnotateTIROpPattern alone calls them opaque). Only the graph's
    # output is unpacked to NCHW.
    from lanner.compile import tvm_tuning

    tc = tvm_backend.import_compiler()
    if not _host_vnni(tc):
        pytest.skip("this CPU has no AVX512-VNNI")
    _, _, path = qdq
    imported = tc.from_onnx(onnx.load(str(path)), keep_params_in_input=False)
    mod, _ = tvm_int8.integer_convolutions(imported, tc, vnni=True)
    prepared = tvm_tuning._prepare(tc, mod, _host_target(tc))
    names = [gv.name_hint for gv, f in prepared.functions.items() if isinstance(f, tc.tvm.tirx.PrimFunc)]
    layout = [n for n in names if "pack_nchw" in n]
    assert layout and all(n.startswith("fused_") for n in layout), names
    # conv1 -> PReLU -> quantize in blocks; conv3 -> ReLU -> conv4 (21 channels) regrouped in conv3's kernel
    assert any(
        re.fullmatch(r"fused_qconv2d_nchwc_u8s8\d*_dequantize\d*_greater_multiply_where_quantize\d*", n) for n in names
    )
    assert any(re.fullmatch(r"fused_qconv2d_nchwc_u8s8\d*_repack_nchw16c_nchw4c\d*", n) for n in names), names
    assert len([n for n in names if "unpack" in n]) == 1, names  # the output maps


def test_tvm_int8_package_is_integer_and_loads(qdq, tmp_path):
    source, feeds, path = qdq
    m = compile_model(
        source, backend="tvm", precision="int8", calib=_calib(feeds, tmp_path / "calib"), out=tmp_path / "pkg"
    )
    notes = m.target_info["build_notes"]
    assert notes["int8"]["integer_convolutions"] == 5 and notes["int8"]["float_convolutions"] == 0
    assert notes["quantization"]["format"] == "QDQ" and m.fidelity["passed"]
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == ["manifest.json", "model.so"]
    x = feeds[0]["image"]
    with lanner.load(tmp_path / "pkg", num_threads=1) as model:
        out = model.run({"image": x})
    # same calibration, same QDQ model: the package computes what ORT computes on it
    np.testing.assert_array_equal(out["maps"], _ort(path, x)[0])
    assert Manifest.read(tmp_path / "pkg").precision == "int8"


def _calib(feeds, folder):
    folder.mkdir()
    for i, feed in enumerate(feeds):
        np.save(folder / f"{i:02d}.npy", feed["image"])
    return folder


@pytest.mark.slow
def test_tuned_tvm_int8_package_matches_onnxruntime(qdq, tmp_path):
    # tuning goes through its own fusion passes and MetaSchedule's schedules (VNNI-tensorized
    # convolutions on AVX512-VNNI CPUs): the result must still be ORT's to the bit
    source, feeds, path = qdq
    m = compile_model(
        source,
        backend="tvm",
        precision="int8",
        calib=_calib(feeds, tmp_path / "calib"),
        out=tmp_path / "pkg",
        tuning=TuningRequest(trials=8),
    )
    assert m.target_info["tuning"]["tasks"] > 0 and m.target_info["build_notes"]["int8"]["integer_convolutions"] == 5
    x = np.random.default_rng(9).uniform(-1.2, 1.2, SHAPE).astype(np.float32)
    with lanner.load(tmp_path / "pkg", num_threads=1) as model:
        out = model.run({"image": x})
    want = _ort(path, x)
    np.testing.assert_array_equal(out["maps"], want[0])
    np.testing.assert_array_equal(out["logits"], want[1])


def test_graph_without_quantized_convolutions_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])
    gemm = helper.make_node("Gemm", ["x", "w"], ["y"])
    save_graph(tmp_path / "mlp.onnx", [gemm], "mlp", [x], [y], [_init(rng, "w", (8, 3))])
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        np.save(calib / f"{i}.npy", rng.standard_normal((4, 8)).astype(np.float32))
    with pytest.raises(UnsupportedError, match="no convolution in the quantized form"):
        compile_model(tmp_path / "mlp.onnx", backend="tvm", precision="int8", calib=calib, out=tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_int8_for_a_cuda_target_is_refused(qdq, tmp_path):
    source, _, _ = qdq
    calib = tmp_path / "calib"
    calib.mkdir()
    np.save(calib / "0.npy", np.zeros(SHAPE, np.float32))
    with pytest.raises(UnsupportedError, match="int8 for the tvm backend is supported on CPU targets only"):
        compile_model(source, target="cuda-sm90", backend="tvm", precision="int8", calib=calib, out=tmp_path / "p")


def test_tvm_int8_without_calibration_is_refused(qdq, tmp_path):
    with pytest.raises(ValueError, match="int8 needs calibration samples"):
        compile_model(qdq[0], backend="tvm", precision="int8", out=tmp_path / "pkg")


def test_a_quantized_model_is_built_from_its_own_qdq_without_calibration(qdq, tmp_path):
    # lanner's int8 students ship as QDQ ONNX: their own scales are the int8 model (no re-quantizing)
    _, feeds, path = qdq
    m = compile_model(path, backend="tvm", precision="int8", out=tmp_path / "pkg")
    notes = m.target_info["build_notes"]
    assert notes["quantization"].startswith("the model's own Q/DQ nodes") and m.fidelity["passed"]
    assert notes["int8"]["integer_convolutions"] == 5
    x = feeds[-1]["image"]
    with lanner.load(tmp_path / "pkg", num_threads=1) as model:
        out = model.run({"image": x})
    want = _ort(path, x)
    np.testing.assert_array_equal(out["maps"], want[0])
    np.testing.assert_array_equal(out["logits"], want[1])


@pytest.mark.parametrize("vnni", [False, True], ids=["nchw", "vnni"])
def test_shipped_bridge_model_is_integer_and_exact(tmp_path, vnni):
    # A 29-convolution int8 ResNet (the recognizer of small faces, its own Q/DQ), where requantizing with
    # a float bias and a division by the output scale differed from ONNX Runtime's QLinearConv in the last
    # bit of many outputs (the small nets above did not show it): now equal to the bit, in both layouts.
    from lanner import models
    from lanner.compile import tvm_build

    tc = tvm_backend.import_compiler()
    if vnni and not _host_vnni(tc):
        pytest.skip("this CPU has no AVX512-VNNI")
    model = onnx.load(str(models.onnx_path("dlib-resnet-lowres")))
    for d, v in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, 150, 150)):
        d.ClearField("dim_param")
        d.dim_value = v
    path = tmp_path / "bridge.onnx"
    onnx.save(model, str(path))
    notes: dict = {}
    mod = tvm_build._import(tc, path, tmp_path, notes, lambda _: None)  # folds its shape arithmetic
    rewritten, report = tvm_int8.integer_convolutions(mod, tc, vnni=vnni)
    # its residual zero pads that pad nothing are dropped, and the quantize(dequantize(x)) pairs of one scale
    # around them folded: exact (checked to the bit below)
    assert notes["zero_pads_dropped"] == 23  # of its 28 Pad nodes
    # VNNI: 23 of its 29 convolutions pass their outputs on in NCHW16c blocks (the last stage's shortcuts, padded
    # in channels and space by TVM's own pad kernels, are unpacked)
    assert report == tvm_int8.IntegerConvolutions(
        rewritten=29, left_float=(), identities_folded=24, unpacks_saved=23 if vnni else 0
    )
    run = _compiled(tc, rewritten)
    rng = np.random.default_rng(1)
    for _ in range(5):  # the old requantization differed in 78 of these 640 values
        x = rng.uniform(0, 1, (1, 3, 150, 150)).astype(np.float32)
        np.testing.assert_array_equal(run(x)[0], _ort(path, x)[0])


def make_requantized_net(path, *, same: bool):
    """image -> Q -> DQ -> Pad (all-zero pads) -> Q -> DQ -> Pad (one column) -> Relu -> output: the second Q/DQ pair
    uses the first's scale and zero point (``same``) or another scale."""
    s1, z1 = numpy_helper.from_array(np.float32(0.0173), "s1"), numpy_helper.from_array(np.uint8(131), "z1")
    s2 = numpy_helper.from_array(np.float32(0.0173 if same else 0.021), "s2")
    zero_pads = numpy_helper.from_array(np.zeros(8, np.int64), "zero_pads")
    one_pad = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 0, 1], np.int64), "one_pad")
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, list(SHAPE))
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [SHAPE[0], SHAPE[1], SHAPE[2], SHAPE[3] + 1])
    nodes = [
        helper.make_node("QuantizeLinear", ["image", "s1", "z1"], ["q1"]),
        helper.make_node("DequantizeLinear", ["q1", "s1", "z1"], ["d1"]),
        helper.make_node("Pad", ["d1", "zero_pads"], ["p1"]),
        helper.make_node("QuantizeLinear", ["p1", "s2", "z1"], ["q2"]),
        helper.make_node("DequantizeLinear", ["q2", "s2", "z1"], ["d2"]),
        helper.make_node("Pad", ["d2", "one_pad"], ["p2"]),
        helper.make_node("Relu", ["p2"], ["out"]),
    ]
    return save_graph(path, nodes, "requantized", [x], [y], [s1, z1, s2, zero_pads, one_pad])


@pytest.mark.parametrize("same", [True, False], ids=["same-scale", "other-scale"])
def test_zero_pads_and_requantize_identities_fold_exactly(tmp_path, same):
    # A Pad whose pads are all zero is dropped at import (its one-column neighbour is kept); the
    # quantize(dequantize(x)) pair around it then folds where the scale and zero point are the same, and only
    # there; the result equals ONNX Runtime's to the bit, saturation included.
    tc = tvm_backend.import_compiler()
    path = make_requantized_net(tmp_path / "net.onnx", same=same)
    from lanner.compile import onnx_graph

    pruned, dropped = onnx_graph.without_zero_pads(onnx.load(str(path)))
    assert dropped == 1 and [n.op_type for n in pruned.graph.node].count("Pad") == 1
    assert [n.input[0] for n in pruned.graph.node if n.op_type == "QuantizeLinear"] == ["image", "d1"]
    notes: dict = {}
    mod = tvm_build._import(tc, path, tmp_path, notes, lambda _: None)
    assert notes["zero_pads_dropped"] == 1
    folded, report = tvm_int8.integer_convolutions(mod, tc)
    assert report.identities_folded == (1 if same else 0)
    assert folded.script(show_meta=False).count("R.quantize(") == (1 if same else 2)
    run = _compiled(tc, folded)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = rng.uniform(-3.0, 3.0, SHAPE).astype(np.float32)  # beyond the uint8 range: clipped
        np.testing.assert_array_equal(run(x)[0], _ort(path, x)[0])


def test_a_zero_pad_that_is_a_graph_output_is_kept(tmp_path):
    from lanner.compile import onnx_graph

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, list(SHAPE))
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, list(SHAPE))
    zeros = numpy_helper.from_array(np.zeros(8, np.int64), "zeros")
    pad = helper.make_node("Pad", ["image", "zeros"], ["out"])
    path = save_graph(tmp_path / "p.onnx", [pad], "p", [x], [y], [zeros])
    model, dropped = onnx_graph.without_zero_pads(onnx.load(str(path)))
    assert dropped == 0 and [n.op_type for n in model.graph.node] == ["Pad"]


@pytest.mark.parametrize("vnni", [False, True], ids=["nchw", "vnni"])
def test_rule_made_cpu_schedules_compute_what_the_default_does(qdq, vnni):
    """Every fused function of the int8 model (packs, pads, pools, convolution epilogues, the Gemm head)
    under each schedule of ``tvm_cpu_schedules.default_candidates``, built from its recorded trace as a
    tuned build replays it, gives TVM's default schedule's outputs bit for bit."""
    tc = tvm_backend.import_compiler()
    if vnni and not _host_vnni(tc):
        pytest.skip("this CPU has no AVX512-VNNI")
    _, _, path = qdq
    target = tc.tvm.target.Target({**_host_target(tc).export(), "num-cores": 2})
    mod, _ = tvm_int8.integer_convolutions(tvm_build._import(tc, path, path.parent, {}, lambda _: None), tc, vnni=vnni)
    fused = tvm_tuning._prepare(tc, mod, target)
    tvm, dev = tc.tvm, tc.tvm.cpu()
    rng = np.random.default_rng(5)
    names: dict[str, list[str]] = {}
    for gvar, func in fused.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        task = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        infos = [info.as_json() for info in tc.meta_schedule.arg_info.ArgInfo.from_prim_func(func)]
        feeds = [_random(rng, dtype, shape) for _, dtype, shape in infos]

        def outputs(mod, feeds=feeds):
            args = [tvm.runtime.tensor(a.copy(), dev) for a in feeds]
            tvm.compile(mod, target=target)["main"](*args)
            return [a.numpy() for a in args]

        want = outputs(task)
        candidates = tvm_cpu_schedules.default_candidates(tvm, task, 2)
        names[gvar.name_hint] = [name for name, _ in candidates]
        for name, sch in candidates:
            replayed = tvm.s_tir.Schedule(task)
            sch.trace.apply_to_schedule(replayed, remove_postproc=False)
            for got, expected in zip(outputs(replayed.mod), want):
                np.testing.assert_array_equal(got, expected, err_msg=f"{gvar.name_hint}, {name}")
    # the rules applied where they can: inlining a quantize chain into its producer, a parallel loop where
    # there are enough iterations; each candidate differs from the default and from the others
    assert any("inline" in n for n in names.values()) and any("parallel" in n for n in names.values()), names
    assert all(len(set(n)) == len(n) and set(n) <= {"inline", "parallel", "inline+parallel"} for n in names.values())


def _random(rng, dtype, shape):
    if dtype.startswith(("uint", "int")):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -100), min(info.max, 200), shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def test_packed_convolution_tasks_write_rows_first(qdq):
    """The tuner's design space for a packed int8 convolution's task runs its output block row-first
    (``tvm_cpu_schedules.rows_first_rule``): the epilogue reads the NCHW16c accumulator one row at a time
    for every channel, not the whole accumulator once per channel. Other tasks keep their loop order."""
    from types import SimpleNamespace

    tc = tvm_backend.import_compiler()
    if not _host_vnni(tc):
        pytest.skip("this CPU has no AVX512-VNNI")
    _, _, path = qdq
    target = tc.tvm.target.Target({**_host_target(tc).export(), "num-cores": 2})
    mod, _ = tvm_int8.integer_convolutions(tvm_build._import(tc, path, path.parent, {}, lambda _: None), tc, vnni=True)
    fused = tvm_tuning._prepare(tc, mod, target)
    tvm, ms = tc.tvm, tc.meta_schedule
    funcs = [(g.name_hint, f) for g, f in fused.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
    tasks = [
        SimpleNamespace(
            dispatched=[tvm.IRModule({"main": f.with_attr("global_symbol", "main")})], target=target, task_name=n
        )
        for n, f in funcs
    ]
    reordered = set()
    for task, context in zip(tasks, tvm_tuning._contexts(tvm, ms, tasks, 0)):
        for space in context.generate_design_space():
            blocks = space.get_child_blocks(space.get_sblock("root"))
            out = blocks[-1]
            extents = [int(space.get(loop).extent) for loop in space.get_loops(out)]
            domain = [int(iv.dom.extent) for iv in space.get(out).iter_vars]
            packed = any(space.get(b).name_hint.startswith("conv2d_NCHWc_int8") for b in blocks)
            if packed and min(domain[1:3]) > 1:  # batch, rows, channels (or blocks), columns[, channels in a block]
                assert extents == [domain[0], domain[2], domain[1], *domain[3:]], (task.task_name, extents, domain)
                reordered.add(task.task_name)
    assert len(reordered) >= 2, reordered
    # the rule alone: on a packed convolution's output block a reorder; on any other block, nothing
    rule = tvm_cpu_schedules.rows_first_rule(tvm, ms)
    for task in tasks:
        sch = tvm.s_tir.Schedule(task.dispatched[0])
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
        for block in blocks:
            before = len(sch.trace.insts)
            (after,) = rule.apply(sch, block)
            added = [inst.kind.name for inst in after.trace.insts[before:]]
            last = sch.get(block).name_hint == sch.get(blocks[-1]).name_hint
            assert added == (["GetLoops", "Reorder"] if task.task_name in reordered and last else []), (
                task.task_name,
                sch.get(block).name_hint,
                added,
            )


def test_x86_intrinsics_load_without_the_rest_of_their_package():
    """vnni_available registers x86's tensor intrinsics alone (every target's take ~20 s) and leaves the package
    to be imported for real later (MetaSchedule's tune contexts import it). In a fresh process: this one may
    have imported the package already."""
    import subprocess
    import sys

    code = (
        "import sys, importlib.util\n"
        "from lanner.compile import tvm_int8\n"
        "x86 = tvm_int8._x86_tensor_intrinsics()\n"
        "from tvm.s_tir import TensorIntrin\n"
        "assert TensorIntrin.get(x86.VNNI_DOT_16x4_INTRIN) is not None\n"
        "assert 'tvm.s_tir.tensor_intrin' not in sys.modules, 'the stand-in package was left behind'\n"
        "assert not any(m.startswith('tvm.s_tir.tensor_intrin.cuda') for m in sys.modules)\n"
        "assert sys.modules['tvm.s_tir.tensor_intrin.x86'] is x86\n"
        "spec = importlib.util.find_spec('tvm.s_tir.tensor_intrin')\n"
        "assert spec.origin.endswith('__init__.py'), spec\n"
        "assert tvm_int8._x86_tensor_intrinsics() is x86\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
