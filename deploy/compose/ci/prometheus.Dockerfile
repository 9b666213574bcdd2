# Prometheus from Debian, with the official image's entrypoint path (/bin is /usr/bin here).
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && test -x /bin/prometheus \
 && install -d -o nobody -g nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
# The official image keeps its TSDB in /prometheus (Debian's build defaults elsewhere).
ENTRYPOINT ["/bin/prometheus", "--storage.tsdb.path=/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml"]
