# zsseg_rt on a desktop/server NVIDIA GPU: the torch-free runtime on NVIDIA's TensorRT 10 container
# (24.08: TensorRT 10.3 as on JetPack 6, CUDA 12.6, Python 3.10, Ubuntu 22.04).
# TensorRT 10.3 has NO Blackwell support (RTX 50xx, B200; TensorRT added it in 10.8 with CUDA 12.8): for those GPUs
# pass --build-arg TRT_BASE=<an NGC TensorRT container with TensorRT >= 10.8 and < 11> and add the architecture,
# e.g. --build-arg CMAKE_CUDA_ARCHITECTURES="75;80;86;89;90;120" (sm_100 for B200). See docs/tensorrt.md.
# UNTESTED: written without Docker or a GPU (see README "Jetson").
#   docker build -f docker/desktop.Dockerfile -t zsseg_rt:desktop .
#   docker run --rm -it --gpus all -v "$PWD/bundles:/data" zsseg_rt:desktop \
#     zsseg segment /data/photo.jpg --bundle /data/voc --classes "cat,sofa,floor" -o /data/overlay.png
# For export/training (torch) install .[torch,export] on top, or use tools/setup_env.sh outside the container.
ARG TRT_BASE=nvcr.io/nvidia/tensorrt:24.08-py3
FROM ${TRT_BASE}

# The GPU architectures to compile the CUDA kernels for (CMake's list syntax); default: the project's list.
ARG CMAKE_CUDA_ARCHITECTURES="75;80;86;89;90"
WORKDIR /opt/zsseg_rt
COPY . .
# The container's own TensorRT Python bindings (10.x) are kept: no tensorrt from PyPI (which resolves to 11.x).
RUN python3 -m pip install --no-cache-dir \
      $(grep -E '^(scikit-build-core|pybind11|cmake|ninja)==' requirements.txt) \
    && CUDACXX=/usr/local/cuda/bin/nvcc python3 -m pip install --no-cache-dir --no-build-isolation \
      -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES}" ".[runtime]" \
    && rm -rf build
RUN python3 -c "import tensorrt, zsseg_rt.ops as o; print('TensorRT', tensorrt.__version__, '| CUDA kernels:', o.native_module().cuda_compiled()); assert tensorrt.__version__.startswith('10.')"
CMD ["zsseg", "--help"]
