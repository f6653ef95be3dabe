"""Builds bitsandbytes._C against the torch that is already installed.

The CPU kernels are always built; the CUDA kernels too where torch is a CUDA build and
nvcc is found. Sources and flags come from build.json, which CMakeLists.txt reads as well.
Environment switches:
  BNB_BUILD_CUDA=0|1      force the CUDA part off or on (default: auto)
  TORCH_CUDA_ARCH_LIST    architectures to build (default: 8.0;8.6;8.9;9.0+PTX)
"""
import glob
import json
import os

import torch
from setuptools import find_packages, setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;8.6;8.9;9.0+PTX"


def read_config():
    with open(os.path.join(ROOT, "build.json")) as f:
        return json.load(f)


def want_cuda():
    switch = os.environ.get("BNB_BUILD_CUDA", "auto")
    available = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if switch == "1" and not available:
        raise RuntimeError("BNB_BUILD_CUDA=1 but torch is not a CUDA build or nvcc was not found")
    return available if switch == "auto" else switch == "1"


def write_build_info(with_cuda, archs):
    info = {
        "cuda": with_cuda,
        "cuda_archs": archs if with_cuda else "",
        "cuda_version": torch.version.cuda if with_cuda else None,
        "torch_version": torch.__version__,
    }
    with open(os.path.join(ROOT, "bitsandbytes", "_build_info.json"), "w") as f:
        json.dump(info, f, indent=2)


def find_cublaslt():
    """(include dir, library path) of cuBLASLt: the CUDA toolkit's, else the one torch's wheels
    install under site-packages/nvidia. (None, None) when absent: the int8 GEMM then falls back
    to its own tiled kernel."""
    roots = [cpp_extension.CUDA_HOME or ""]
    roots += sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "..", "nvidia", "*")))
    roots += sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "..", "nvidia", "*", "*")))
    for root in roots:
        header = os.path.join(root, "include", "cublasLt.h")
        if not os.path.exists(header):
            continue
        for libdir in ("lib64", "lib", os.path.join("lib", "x64")):
            libs = sorted(glob.glob(os.path.join(root, libdir, "libcublasLt.so*")), key=len)
            if libs:
                return os.path.join(root, "include"), os.path.realpath(libs[0])
    return None, None


def extension(cfg, with_cuda):
    sources = cfg["ops_common"] + cfg["kernels_cpu"] + cfg["ops_cpu"]
    include_dirs = [os.path.join(ROOT, d) for d in cfg["include_dirs"]]
    compile_args = {"cxx": list(cfg["cxx_flags"])}
    if not with_cuda:
        return cpp_extension.CppExtension(
            "bitsandbytes._C", sources, include_dirs=include_dirs, extra_compile_args=compile_args,
            extra_link_args=cfg["link_flags"])
    compile_args["cxx"].append("-DBNB_WITH_CUDA")
    compile_args["nvcc"] = list(cfg["nvcc_flags"])
    link_args = list(cfg["link_flags"])
    cublaslt_include, cublaslt_lib = find_cublaslt()
    if cublaslt_lib:
        include_dirs.append(cublaslt_include)
        link_args += [cublaslt_lib, "-Wl,-rpath," + os.path.dirname(cublaslt_lib)]
    else:
        print("warning: cuBLASLt not found: the int8 GEMM is built with its fallback kernel only")
    return cpp_extension.CUDAExtension(
        "bitsandbytes._C", sources + cfg["kernels_cuda"] + cfg["ops_cuda"], include_dirs=include_dirs,
        extra_compile_args=compile_args, extra_link_args=link_args)


def main():
    cfg = read_config()
    with_cuda = want_cuda()
    archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
    write_build_info(with_cuda, archs)
    setup(
        name="bitsandbytes",
        packages=find_packages(include=["bitsandbytes", "bitsandbytes.*"]),
        package_data={"bitsandbytes": ["_build_info.json"]},
        ext_modules=[extension(cfg, with_cuda)],
        cmdclass={"build_ext": cpp_extension.BuildExtension},
    )


if __name__ == "__main__":
    main()
