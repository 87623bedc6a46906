# Production image. One image runs every process; the command picks which (k8s/ passes
# it as the container's args):
#   web (default)  uvicorn kootabase.asgi:application --workers 2 ...
#   workers        celery -A kootabase worker --queues default|orders,matching|blockchain
#   scheduler      celery -A kootabase beat --schedule /tmp/celerybeat-schedule
#   matchers       python manage.py run_matcher --shard-file <map> --shard <n>
#   migrations     python manage.py migrate --noinput
# Nothing secret is baked in: every setting comes from the environment at run time.

FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-mysql.txt /src/
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir -r /src/requirements-mysql.txt
COPY . /app
WORKDIR /app
# The matching engine's compiled core; the runtime stage has no compiler.
RUN /venv/bin/python -m matching.engine._native.build
# Static files (hashed names and a manifest, compressed) are collected here. Production
# settings insist on their servers and keys, so throwaway values stand in: nothing is
# connected to, and none of them reaches the runtime stage.
RUN DJANGO_ENV=production KOOTABASE_VAR_DIR=/tmp/collectstatic STATIC_ROOT=/app/staticfiles \
    SECRET_KEY=collectstatic-only DATABASE_URL=sqlite:////tmp/collectstatic/unused.sqlite3 \
    REDIS_URL=redis://unused:6379/0 CELERY_BROKER_URL=memory:// \
    API_KEY_ENCRYPTION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    HD_WALLET_MNEMONIC=unused HOT_WALLET_PRIVATE_KEY=unused \
    /venv/bin/python manage.py collectstatic --noinput --verbosity 0 \
 && rm -rf /tmp/collectstatic

FROM python:3.11-slim-bookworm AS runtime
# tini is PID 1: it forwards SIGTERM to the process and reaps the probes' orphans.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --gid 0 --home-dir /app --no-create-home kootabase
# UVICORN_WS_PER_MESSAGE_DEFLATE: WebSocket frames leave uncompressed. Compressing each
# frame for each connection took about 40 % of the server's CPU per frame in the fan-out
# benchmark (docs/benchmarks.md); set it to true to trade that CPU for bandwidth.
ENV PATH=/venv/bin:$PATH \
    UVICORN_WS_PER_MESSAGE_DEFLATE=false \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_ENV=production \
    KOOTABASE_VAR_DIR=/tmp/kootabase \
    STATIC_ROOT=/app/staticfiles
COPY --from=build /venv /venv
# Owned by root and not writable by the process: the code cannot be changed at run time.
COPY --from=build /app /app
WORKDIR /app
USER 10001
EXPOSE 8000
# For `docker run` of the web server (Kubernetes uses its own probes), as the first of
# ALLOWED_HOSTS. Other commands serve no HTTP: run them with --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; host = os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0].lstrip('.'); u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': host}), timeout=4)"]
ENTRYPOINT ["tini", "--"]
# Forwarded headers are read by Django (SECURE_PROXY_SSL_HEADER, NUM_PROXIES), not by
# uvicorn, so a client cannot choose its address with X-Forwarded-For. On SIGTERM open
# connections (WebSockets included) get 20 s to finish.
CMD ["uvicorn", "kootabase.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", \
     "--no-proxy-headers", "--timeout-graceful-shutdown", "20", "--no-server-header"]
