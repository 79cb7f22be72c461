# sparsed container image. Multi-stage: compile in the build stage, copy only the binaries, the
# shared libraries they load, the bundled models and a non-root user into the runtime stage.
# The base images are build arguments: CUDA 13 development and runtime images by default (the GPU
# image; it also serves on CPU-only hosts, --device=auto falls back), or plain Debian 12 for a
# CPU image. The packages come from scripts/install-deps.sh either way.
#   docker build -t sparsed .                      (CUDA_ARCHS defaults to "80;90")
#   docker build -t sparsed:cpu --build-arg BUILD_IMAGE=debian:12 --build-arg RUNTIME_IMAGE=debian:12 .
#   docker run -p 50051:50051 -p 9464:9464 sparsed
# tests/container/container_test.py builds and runs the CPU image with podman.
ARG BUILD_IMAGE=nvidia/cuda:13.0.0-devel-ubuntu24.04
ARG RUNTIME_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04

FROM ${BUILD_IMAGE} AS build
ARG CUDA_ARCHS="80;90"
ENV DEBIAN_FRONTEND=noninteractive
# Only the package list first, so the installed packages stay cached across source changes.
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh build && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS}" \
    && cmake --build /build --target sparsed sparsed-cli sparsed-make-model sparsed-tokenizer
# Collect the binaries, the tokenizer program, the CUDA backend (dlopen'ed by --device auto|cuda)
# and every shared library they load (except the C runtime and CUDA's own, which the runtime
# image provides).
RUN mkdir -p /out/bin /out/lib \
    && cp /build/bin/sparsed /build/bin/sparsed-cli /build/bin/sparsed-make-model /out/bin/ \
    && cp /build/lib/sparsed-tokenizer /out/lib/ \
    && if [ -f /build/lib/libsparsed_cuda.so ]; then cp /build/lib/libsparsed_cuda.so /out/lib/; fi \
    && for f in /out/bin/* /out/lib/sparsed-tokenizer /out/lib/libsparsed_cuda.so; do \
         [ -f "$f" ] || continue; \
         ldd "$f" | awk '/=> \// {print $3}' ; done | sort -u \
       | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux|libcuda|libcudart|libcublas)[.-]' \
       | xargs -r cp -L -t /out/lib/ \
    && if [ -d models/sparsed-tiny ]; then cp -r models /out/models; else mkdir -p /out/models; fi

FROM ${RUNTIME_IMAGE} AS runtime
RUN groupadd --system --gid 10001 sparsed \
    && useradd --system --uid 10001 --gid 10001 --home /opt/sparsed sparsed
COPY --from=build /out/bin/ /opt/sparsed/bin/
COPY --from=build /out/lib/ /opt/sparsed/lib/
COPY --from=build /out/models/ /opt/sparsed/models/
# Appended to, not replaced: GPU nodes mount the driver's libraries on the base image's path.
ENV LD_LIBRARY_PATH=/opt/sparsed/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}} PATH=/opt/sparsed/bin:$PATH
WORKDIR /opt/sparsed
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["sparsed-cli", "--server", "127.0.0.1:50051", "--timeout_s", "2", "health"]
ENTRYPOINT ["sparsed", "--listen", "0.0.0.0:50051", "--metrics_listen", "0.0.0.0:9464"]
CMD ["--model", "/opt/sparsed/models/sparsed-tiny"]
