# zsseg_rt on a Jetson (JetPack 6, L4T r36): the torch-free runtime on JetPack's CUDA, TensorRT 10 and OpenCV.
# UNTESTED: written without Docker, a Jetson or a GPU (see README "Jetson"). tools/setup_jetson.sh does the work,
# the same script as on a bare device.
#   docker build -f docker/jetson.Dockerfile -t zsseg_rt:jetson .          (on the Jetson, or an arm64 builder)
#   docker run --rm -it --runtime nvidia -v "$PWD/bundles:/data" --device /dev/video0 -p 8080:8080 zsseg_rt:jetson \
#     zsseg camera /dev/video0 --bundle /data/voc --classes "person,chair" --preview 8080
# Engines are built inside the container on the device (zsseg build-engine /data/voc), and cached in the bundle.
ARG L4T_BASE=nvcr.io/nvidia/l4t-jetpack:r36.4.0
FROM ${L4T_BASE}

# 87 = Orin (every JetPack 6 device); the build cannot read the GPU model at `docker build` time.
ARG CMAKE_CUDA_ARCHITECTURES=87
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3-venv python3-pip git && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/zsseg_rt
COPY . .
ENV ZSSEG_VENV=/opt/zsseg_rt/.venv-jetson
RUN CMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES} bash tools/setup_jetson.sh \
    && rm -rf build
ENV PATH=/opt/zsseg_rt/.venv-jetson/bin:${PATH}
CMD ["zsseg", "--help"]
