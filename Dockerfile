# Huiyin gateway image. The default voice is prepared at build time (the conversion
# tools live only in a throwaway environment inside that step), so the container needs
# no network at run time.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 huiyin

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY synth synth
COPY cache cache
COPY config config
RUN pip install --no-cache-dir . \
 && HUIYIN_MODELS_DIR=/models huiyin models prepare \
 && chown -R huiyin /models

ENV HUIYIN_HOST=0.0.0.0 \
    HUIYIN_PORT=8080 \
    HUIYIN_MODELS_DIR=/models \
    HUIYIN_DATA_DIR=/data
RUN mkdir /data && chown huiyin /data
VOLUME /data
USER huiyin
EXPOSE 8080
CMD ["huiyin", "serve"]
