"""lanner bench: timing arithmetic on a fake clock, the stage protocol, the report schema,
renderings and compare, argument errors, an end-to-end run, and TVM RPC on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tvm_rpc import free_port  # tests/support

from lanner.benchmarking import (
    BenchOptions,
    LatencyStats,
    RunPolicy,
    StageTimer,
    compare_reports,
    load_report,
    measure,
    render_markdown,
    render_table,
    validate_report,
)
from lanner.benchmarking.machine import machine_info, peak_rss_bytes
from lanner.benchmarking.report import SCHEMA_VERSION, render_compare
from lanner.benchmarking.variants import make_inputs
from lanner.cli import main as cli_main
from lanner.names import MANIFEST_FILENAME, PRECISIONS

MS = 1_000_000  # ns per ms


class FakeClock:
    """A clock that only moves when the timed function says so."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def scripted(durations_ns, clock):
    it = iter(durations_ns)

    def fn():
        clock.now += next(it)

    return fn


# -- timing ------------------------------------------------------------------------------


def test_percentiles_on_fake_clock_exclude_warmup():
    clock = FakeClock()
    warm = [1000 * MS] * 3  # huge warm-up calls must not leak into the stats
    timed = [k * MS for k in range(1, 101)]  # 1..100 ms
    m = measure(scripted(warm + timed, clock), RunPolicy(warmup=3, runs=100), clock=clock)
    s = m.stats
    assert m.warmup_ns.tolist() == warm
    assert m.samples_ns.tolist() == timed
    # Linear interpolation: h = 99 * p; x[h] = h + 1 ms.
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.p99_ms == pytest.approx(99.01)
    assert (s.min_ms, s.max_ms, s.n) == (1.0, 100.0, 100)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.std_ms == pytest.approx(np.std(np.arange(1, 101), ddof=1))


def test_manifest_latency_and_bench_report_agree_on_one_sample():
    """The compiler's manifest latency and lanner bench's report use one percentile definition."""
    from lanner.compile.fidelity import measure_latency

    durations = [k * MS for k in (5, 1, 9, 3, 7, 2, 10, 4, 8, 6)]  # 1..10 ms, shuffled
    clock = FakeClock()
    manifest = measure_latency(scripted([MS] * 3 + durations, clock), warmup=3, min_runs=10, max_runs=10, clock=clock)
    clock = FakeClock()
    bench = measure(scripted([MS] * 3 + durations, clock), RunPolicy(warmup=3, runs=10), clock=clock).stats
    assert manifest == {"median": bench.p50_ms, "p90": bench.p90_ms, "min": bench.min_ms, "runs": bench.n}
    assert manifest["p90"] == pytest.approx(9.1)  # interpolated (nearest-rank would say 10)


@pytest.mark.parametrize("samples, p50, p99", [([5 * MS], 5.0, 5.0), ([2 * MS, 4 * MS], 3.0, 3.98)])
def test_percentiles_small_samples(samples, p50, p99):
    s = LatencyStats.from_ns(samples)
    assert (s.p50_ms, s.std_ms if len(samples) == 1 else None) == (p50, 0.0 if len(samples) == 1 else None)
    assert s.p99_ms == pytest.approx(p99)


@pytest.mark.parametrize("bad, match", [([], "non-empty"), ([1, -1], "non-negative"), ([np.nan], "finite")])
def test_stats_reject_bad_samples(bad, match):
    with pytest.raises(ValueError, match=match):
        LatencyStats.from_ns(bad)


@pytest.mark.parametrize("latency_ms, budget_s, expected", [(10, 0.5, 50), (10, 0.01, 10), (0.001, 100.0, 10_000)])
def test_adaptive_run_count_fits_budget(latency_ms, budget_s, expected):
    clock = FakeClock()
    step = int(latency_ms * MS)
    m = measure(scripted([step] * 20_000, clock), RunPolicy(warmup=3, budget_s=budget_s), clock=clock)
    assert m.samples_ns.size == expected  # clamped to [min_runs=10, max_runs=10_000]


def test_adaptive_without_warmup_probes_once():
    clock = FakeClock()
    m = measure(scripted([20 * MS] * 100, clock), RunPolicy(warmup=0, budget_s=0.4), clock=clock)
    assert m.samples_ns.size == 20


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"warmup": -1}, "warmup must be >= 0"),
        ({"runs": 0}, "runs must be >= 1"),
        ({"budget_s": 0}, "budget_s must be a positive"),
        ({"min_runs": 5, "max_runs": 2}, "min_runs <= max_runs"),
    ],
)
def test_run_policy_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunPolicy(**kwargs)


def test_measure_collects_stage_times_and_progress():
    clock = FakeClock()
    calls = []

    class Pipe:
        stage_times_ns = {"preprocess": 2 * MS, "net": 5 * MS}

    pipe = Pipe()
    m = measure(
        scripted([10 * MS] * 12, clock),
        RunPolicy(warmup=2, runs=10),
        clock=clock,
        stage_times=lambda: pipe.stage_times_ns,
        progress=lambda d, n: calls.append((d, n)),
    )
    assert calls[-1] == (10, 10) and len(calls) == 10
    assert set(m.stage_samples_ns) == {"preprocess", "net"}
    assert m.stage_samples_ns["net"].tolist() == [5 * MS] * 10


# -- stage protocol ------------------------------------------------------------------------


def test_stage_timer_records_last_call_and_accumulates_repeats():
    timer = StageTimer()
    with timer.run():
        with timer.stage("pnet"):
            pass
        with timer.stage("pnet"):
            time.sleep(0.001)
        with timer.stage("nms"):
            pass
    assert list(timer.last) == ["pnet", "nms"]
    assert timer.last["pnet"] >= 1_000_000
    with timer.run():
        with timer.stage("rnet"):
            pass
    assert list(timer.last) == ["rnet"]


@pytest.mark.parametrize("name", ["", "other"])
def test_stage_timer_rejects_reserved_names(name):
    with pytest.raises(ValueError, match="stage name must be non-empty and not 'other'"):
        with StageTimer().stage(name):
            pass


def test_factory_pipeline_stage_breakdown(tmp_path):
    from lanner.benchmarking import VariantJob, run_variant

    src = tmp_path / "pipe.py"
    src.write_text(
        "import time, numpy as np\n"
        "from lanner.benchmarking import StageTimer\n"
        "class Pipe:\n"
        "    backend = 'numpy'\n"
        "    def __init__(self, num_threads=None):\n"
        "        self.timer = StageTimer()\n"
        "    @property\n"
        "    def stage_times_ns(self):\n"
        "        return self.timer.last\n"
        "    def example_inputs(self, batch, rng):\n"
        "        return rng.standard_normal((batch, 64)).astype(np.float32)\n"
        "    def run(self, x):\n"
        "        with self.timer.run():\n"
        "            with self.timer.stage('preprocess'):\n"
        "                y = x * 2\n"
        "            with self.timer.stage('net'):\n"
        "                time.sleep(0.0005)\n"
        "        return y\n"
        "def make(num_threads=None):\n"
        "    return Pipe(num_threads)\n"
    )
    job = VariantJob(name="pipe", kind="factory", source=f"{src}:make", policy={"warmup": 1, "runs": 8})
    entry = run_variant(job)
    assert entry["status"] == "ok", entry["error"]
    stages = entry["batches"][0]["stages"]
    assert list(stages) == ["preprocess", "net", "other"]
    assert stages["net"]["p50_ms"] >= 0.5
    assert sum(s["share"] for s in stages.values()) == pytest.approx(1.0, abs=1e-6)
    assert entry["backend"] == "numpy"


# -- inputs ------------------------------------------------------------------------------


def test_make_inputs_batch_and_dtypes():
    rng = np.random.default_rng(0)
    specs = [
        {"name": "x", "shape": ["batch", 3, 4], "dtype": "float32"},
        {"name": "k", "shape": [None], "dtype": "int64"},
    ]
    feeds = make_inputs(specs, 8, rng)
    assert feeds["x"].shape == (8, 3, 4) and feeds["x"].dtype == np.float32
    assert feeds["k"].shape == (8,) and feeds["k"].dtype == np.int64


@pytest.mark.parametrize(
    "shape, match", [([1, 3], "fixed batch dim of 1, cannot run batch 8"), (["b", None, 3], r"dynamic dims \[1\]")]
)
def test_make_inputs_rejects_unrunnable_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        make_inputs([{"name": "x", "shape": shape, "dtype": "float32"}], 8, np.random.default_rng(0))


def test_make_inputs_shape_override():
    feeds = make_inputs(
        [{"name": "x", "shape": ["b", None], "dtype": "float32"}], 2, np.random.default_rng(0), {"x": (2, 7)}
    )
    assert feeds["x"].shape == (2, 7)


# -- machine -----------------------------------------------------------------------------


def test_machine_info_describes_cpu_memory_and_libraries():
    m = machine_info()
    assert m["cpu_model"] and m["logical_cores"] >= 1 and m["usable_cores"] >= 1
    assert m["mem_total_bytes"] > 0
    assert m["libraries"]["numpy"] == np.__version__
    assert set(m["cpu_key_flags"]) <= set(m["cpu_flags"])
    assert peak_rss_bytes() > 10 * 2**20


# -- report schema, rendering, compare ---------------------------------------------------


def _variant(name, p50, samples=None, fidelity=None, batch=1):
    samples = samples or [p50 * 0.9, p50, p50 * 1.2]
    stats = LatencyStats.from_ns(np.asarray(samples) * MS)
    return {
        "name": name,
        "kind": "package",
        "source": f"/pkgs/{name}",
        "status": "ok",
        "error": None,
        "target": "x86",
        "backend": name.split("-")[0],
        "precision": "fp32",
        "fidelity": fidelity,
        "toolchain": {},
        "artifact_bytes": 2**20,
        "compile_s": 1.0,
        "cold_start": {"load_ms": 10.0, "first_run_ms": 2.0, "total_ms": 12.0, "batch": batch},
        "memory": {"rss_before_load_bytes": 2**26, "peak_rss_bytes": 2**27},
        "batches": [
            {
                "batch": batch,
                "status": "ok",
                "runs": stats.n,
                "warmup": 1,
                "latency_ms": stats.to_dict(),
                "throughput_per_s": 1e3 / stats.mean_ms,
                "samples_ms": list(samples),
                "stages": None,
            }
        ],
    }


def _report(variants, baseline=None):
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "lanner bench",
        "created_utc": "2026-11-23T19:00:00Z",
        "command": None,
        "options": {"runs": 3, "warmup": 1, "threads": None, "pin": None, "budget_s": 2.0},
        "machine": machine_info(),
        "baseline": baseline or variants[0]["name"],
        "remote": None,
        "variants": variants,
    }


def test_report_schema_accepts_valid_and_names_problems(tmp_path):
    report = _report([_variant("openvino-fp32", 2.0), _variant("onnxruntime-fp32", 4.0)])
    validate_report(report)
    broken = json.loads(json.dumps(report))
    del broken["variants"][1]["memory"]
    with pytest.raises(ValueError, match=r"report.variants\[1\]: missing keys \['memory'\]"):
        validate_report(broken)
    broken = json.loads(json.dumps(report))
    broken["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version 99 is not supported"):
        validate_report(broken)
    broken = json.loads(json.dumps(report))
    broken["variants"][0]["batches"][0]["samples_ms"].pop()
    with pytest.raises(ValueError, match="2 samples for 3 runs"):
        validate_report(broken)
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        load_report(path)


def test_table_and_markdown_show_speedup_and_fidelity():
    fid = {"outputs": {"y": {"cosine_min": 0.99321}}, "passed": False, "top1_agreement": None}
    report = _report([_variant("onnxruntime-fp32", 4.0), _variant("openvino-int8", 2.0, fidelity=fid)])
    table = render_table(report)
    assert "1.00x (base)" in table and "2.00x" in table and "cos 0.99321 FAIL" in table
    md = render_markdown(report)
    assert md.startswith("| variant | batch | p50 ms |") and "| 2.00x |" in md


def test_compare_reports_change_and_verdicts():
    a = _report([_variant("ov", 2.0, [2.0] * 5), _variant("ort", 4.0, [4.0] * 5), _variant("old", 1.0)])
    b = _report([_variant("ov", 2.5, [2.5] * 5), _variant("ort", 4.0, [4.02] * 5), _variant("new", 1.0)])
    rows = {r["variant"]: r for r in compare_reports(a, b)}
    assert rows["ov"]["p50_change"] == pytest.approx(0.25) and rows["ov"]["verdict"] == "slower"
    assert rows["ort"]["verdict"] == "same"
    assert rows["old"]["verdict"] == "only in A" and rows["new"]["verdict"] == "only in B"
    assert "+25.0%" in render_compare(a, b) and "setup differs" not in render_compare(a, b)
    b["options"]["threads"] = 2
    b["machine"] = dict(b["machine"], libraries={**b["machine"]["libraries"], "onnxruntime": "9.9"})
    text = render_compare(a, b)
    assert "setup differs: threads: None -> 2;" in text and "-> 9.9" in text


def test_merge_rounds_pools_samples():
    from lanner.benchmarking.runner import merge_rounds

    a, b = _variant("ov", 2.0, [1.0, 2.0, 3.0]), _variant("ov", 2.0, [4.0, 5.0])
    b["memory"]["peak_rss_bytes"] = 2**28
    b["cold_start"]["total_ms"] = 20.0
    m = merge_rounds([a, b])
    (batch,) = m["batches"]
    assert batch["samples_ms"] == [1.0, 2.0, 3.0, 4.0, 5.0] and batch["runs"] == 5 and batch["rounds"] == 2
    assert batch["latency_ms"]["p50_ms"] == pytest.approx(3.0) and batch["warmup"] == 2
    assert m["memory"]["peak_rss_bytes"] == 2**28 and m["cold_start"]["total_ms"] == pytest.approx(16.0)
    failed = dict(b, status="error", error="boom", batches=[])
    assert merge_rounds([a, failed])["error"] == "boom"


def test_cli_compare(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_report([_variant("ov", 2.0, [2.0] * 4)])))
    b.write_text(json.dumps(_report([_variant("ov", 1.0, [1.0] * 4)])))
    assert cli_main(["bench", "compare", str(a), str(b)]) == 0
    assert "faster" in capsys.readouterr().out
    assert cli_main(["bench", "compare", str(a)]) == 2
    assert "usage: lanner bench compare OLD.json NEW.json" in capsys.readouterr().err
    md = tmp_path / "a.md"
    assert cli_main(["bench", "show", str(a), "--md", str(md)]) == 0
    assert "1.00x (base)" in capsys.readouterr().out and md.read_text().startswith("| variant |")


def test_cli_bench_checks_its_outputs_before_measuring(tmp_path, capsys):
    """--json / --md / --plot were first looked at after the whole benchmark had run (and said only 'Is a
    directory'); a file that is not an image was reported as missing."""
    (tmp_path / "adir.json").mkdir()
    assert cli_main(["bench", "nothing.onnx", "--json", str(tmp_path / "adir.json")]) == 2
    assert "--json" in capsys.readouterr().err
    assert cli_main(["bench", "nothing.onnx", "--md", str(tmp_path / "table.txt")]) == 2
    assert "unsupported markdown extension '.txt'" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli_main(["bench", "nothing.onnx", "--plot", str(tmp_path / "file" / "p.png")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    assert cli_main(["bench", "--pipeline", "face", "--image", str(text), "--quiet"]) == 2
    assert f"cannot read {text} as an image" in capsys.readouterr().err
    assert cli_main(["bench", "--pipeline", "face", "--image", str(tmp_path / "missing.jpg"), "--quiet"]) == 2
    assert "missing.jpg" in capsys.readouterr().err


def test_importing_bench_loads_no_toolchain():
    code = (
        "import sys, lanner.benchmarking, lanner.cli.bench; "
        "bad = [m for m in ('torch', 'tvm', 'nncf', 'matplotlib') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 16, 16])],
        [w],
    )
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def ort_package(tiny_onnx, tmp_path_factory) -> Path:
    from lanner.compile import compile_model

    out = tmp_path_factory.mktemp("pkgs") / "tiny-ort"
    compile_model(tiny_onnx, target="x86", backend="onnxruntime", precision="fp32", out=out)
    return out


def test_end_to_end_onnx_two_backends_all_outputs(tiny_onnx, tmp_path, capsys):
    out = {k: tmp_path / f"r.{k}" for k in ("json", "md", "png")}
    rc = cli_main(
        [
            "bench",
            str(tiny_onnx),
            "--backends",
            "onnxruntime,openvino",
            "--batch",
            "1,2",
            "--runs",
            "15",
            "--warmup",
            "2",
            "--threads",
            "1",
            "--json",
            str(out["json"]),
            "--md",
            str(out["md"]),
            "--plot",
            str(out["png"]),
            "--baseline",
            "openvino-fp32",
            "--quiet",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    report = load_report(out["json"])
    assert [v["name"] for v in report["variants"]] == ["onnxruntime-fp32", "openvino-fp32"]
    assert report["baseline"] == "openvino-fp32" and report["options"]["threads"] == 1
    for v in report["variants"]:
        assert v["status"] == "ok", v["error"]
        assert [b["batch"] for b in v["batches"]] == [1, 2] and all(b["runs"] == 15 for b in v["batches"])
        assert v["cold_start"]["total_ms"] > 0 and v["memory"]["peak_rss_bytes"] > 0
        assert v["artifact_bytes"] > 0 and v["compile_s"] > 0 and v["fidelity"]["passed"] is True
    assert "1.00x (base)" in text and "onnxruntime-fp32" in text
    assert out["md"].read_text().startswith("| variant |")
    assert out["png"].read_bytes()[:4] == b"\x89PNG"


def test_end_to_end_package_in_process_with_pinning(ort_package, tmp_path):
    cpu = min(os.sched_getaffinity(0))
    rc = cli_main(
        [
            "bench",
            str(ort_package),
            "--runs",
            "7",
            "--rounds",
            "2",
            "--warmup",
            "1",
            "--pin",
            str(cpu),
            "--in-process",
            "--json",
            str(tmp_path / "r.json"),
            "--quiet",
        ]
    )
    assert rc == 0
    report = load_report(tmp_path / "r.json")
    (v,) = report["variants"]
    assert v["backend"] == "onnxruntime" and v["kind"] == "package"
    assert (v["batches"][0]["runs"], v["batches"][0]["rounds"]) == (14, 2)
    assert report["options"]["pin"] == [cpu] and report["options"]["isolate"] is False
    assert os.sched_getaffinity(0)  # still usable


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_lanner_compile_accepts_is_accepted(precision, tmp_path):
    """One list of precisions: bench accepts whatever compile accepts (bf16 was refused once)."""
    from lanner.compile import PRECISION_CHOICES

    assert precision in PRECISION_CHOICES
    BenchOptions(precisions=(precision,), calib=str(tmp_path)).validate()


def test_bench_cli_accepts_bf16(tiny_onnx, tmp_path, capsys):
    rc = cli_main(
        [
            "bench",
            str(tiny_onnx),
            "--backends",
            "openvino",
            "--precisions",
            "bf16",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--in-process",
            "--json",
            str(tmp_path / "r.json"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert "unknown precision" not in err
    (variant,) = load_report(tmp_path / "r.json")["variants"]
    assert variant["name"] == "openvino-bf16"
    # Built and measured where the CPU has BF16; otherwise refused by the builder, with the reason.
    assert rc == 0 or "bf16 is not supported by the OpenVINO CPU plugin" in (variant["error"] or "")


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--backends", "tensorrt"], "unknown backend tensorrt; expected some of openvino, onnxruntime, tvm"),
        (["--precisions", "int4"], "unknown precision int4"),
        (["--precisions", "int8"], "int8 needs calibration data: pass --calib"),
        (["--target", "pdp11"], "pdp11"),
        (["--target", "jetson-orin-nano"], "--target jetson-orin-nano packages cannot run on this machine"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--calib", "/no/such/dir", "--precisions", "int8"], "calibration data not found"),
        (["--rpc", "nohost"], "--rpc expects HOST:PORT"),
        (
            ["--baseline", "tvm-fp32", "--backends", "onnxruntime"],
            "--baseline 'tvm-fp32' is not a variant; variants: ['onnxruntime-fp32']",
        ),
    ],
)
def test_bad_arguments_one_line_nonzero(tiny_onnx, capsys, extra, match):
    assert cli_main(["bench", str(tiny_onnx), *extra, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lanner bench: error:") and match in err


def test_package_for_another_target_is_refused(ort_package, tmp_path, capsys):
    import shutil

    pkg = tmp_path / "jetson-pkg"
    shutil.copytree(ort_package, pkg)
    manifest = json.loads((pkg / MANIFEST_FILENAME).read_text())
    manifest["target"] = "jetson-orin-nano"
    (pkg / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    assert cli_main(["bench", str(pkg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "jetson-orin-nano" in err and "aarch64" in err


def test_missing_source_and_non_package_dir(tmp_path, capsys):
    assert cli_main(["bench", str(tmp_path / "nope.onnx"), "--quiet"]) == 2
    assert "no such model or package" in capsys.readouterr().err
    assert cli_main(["bench", str(tmp_path), "--quiet"]) == 2
    assert "without manifest.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--factory", "nameonly"], "--factory expects NAME=MODULE:FUNC"),
        (["--factory", "a=m:f", "--factory-kwargs", "a=[1]"], "--factory-kwargs expects NAME={json object}"),
        (["--factory", "a=m:f", "--factory-kwargs", "b={}"], "--factory-kwargs for unknown factories ['b']"),
        (["--pipeline", "face", "--backends", "tvm"], "pipeline 'face' runs on openvino, onnxruntime, not tvm"),
        (["--pipeline", "face", "--image", "/no/such.jpg"], "no such image"),
        ([], "nothing to benchmark"),
    ],
)
def test_bad_factory_and_pipeline_arguments(capsys, argv, match):
    assert cli_main(["bench", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err


def test_factory_that_fails_to_load_is_an_error_row(tmp_path, capsys):
    rc = cli_main(
        [
            "bench",
            "--factory",
            "broken=no_such_module_xyz:make",
            "--runs",
            "3",
            "--in-process",
            "--json",
            str(tmp_path / "r.json"),
            "--quiet",
        ]
    )
    assert rc == 1  # every variant failed
    (v,) = load_report(tmp_path / "r.json")["variants"]
    assert v["status"] == "error" and "No module named 'no_such_module_xyz'" in v["error"]
    out = capsys.readouterr().out
    assert "error (below)" in out and "broken: load failed: ModuleNotFoundError" in out


@pytest.mark.slow
def test_face_pipeline_stage_breakdown(tmp_path, monkeypatch):
    lanner = pytest.importorskip("lanner")
    if not hasattr(lanner, "FaceDetector"):
        pytest.skip("this build has no FaceDetector")
    rc = cli_main(
        [
            "bench",
            "--pipeline",
            "face",
            "--backends",
            "openvino",
            "--runs",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--json",
            str(tmp_path / "r.json"),
            "--quiet",
        ]
    )
    assert rc == 0
    (v,) = load_report(tmp_path / "r.json")["variants"]
    assert v["name"] == "face-openvino-fp32" and v["status"] == "ok", v["error"]
    stages = v["batches"][0]["stages"]
    assert list(stages) == ["pyramid", "pnet", "rnet", "onet", "nms", "other"]
    assert v["artifact_bytes"] > 0 and v["fidelity"]["outputs"]


# -- TVM RPC on loopback -----------------------------------------------------------------


@pytest.mark.slow
def test_rpc_loopback_tvm_package(tiny_onnx, ort_package, tmp_path, capsys):
    pytest.importorskip("tvm")
    from lanner.compile import compile_model

    pkg = tmp_path / "tiny-tvm"
    compile_model(tiny_onnx, target="x86", backend="tvm", precision="fp32", out=pkg)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tvm.exec.rpc_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--port-end",
            str(port + 1),
            "--no-fork",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out = tmp_path / "rpc.json"
        # The server imports TVM before it listens (seconds on a loaded machine): allow 120 s.
        rc = cli_main(
            [
                "bench",
                str(pkg),
                "--rpc",
                f"127.0.0.1:{port}",
                "--rpc-timeout",
                "120",
                "--runs",
                "20",
                "--warmup",
                "2",
                "--batch",
                "1,3",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        captured = capsys.readouterr()
        text = captured.out
        assert rc == 0, captured.err
        report = load_report(out)
        (v,) = report["variants"]
        assert report["remote"]["rpc"] == f"127.0.0.1:{port}" and v["kind"] == "rpc" and v["backend"] == "tvm"
        assert v["status"] == "ok", v["error"]
        assert [b["runs"] for b in v["batches"]] == [20, 20]
        assert v["cold_start"]["upload_ms"] > 0 and "remote 127.0.0.1" in text
        # A non-TVM package over RPC is one clear error line.
        assert cli_main(["bench", str(ort_package), "--rpc", f"127.0.0.1:{port}", "--quiet"]) == 2
        assert "--rpc runs TVM packages only" in capsys.readouterr().err
    finally:
        # The server's own helper processes (TVM's popen workers) share its session: end the group.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
