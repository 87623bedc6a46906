# Production image: the ASGI server by default; the same image runs the Celery workers,
# the beat scheduler and the matchers with a different command (see k8s/).

FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-mysql.txt /src/
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir -r /src/requirements-mysql.txt
COPY . /app
# The matching engine's compiled core; the runtime stage has no compiler.
RUN cd /app && /venv/bin/python -m matching.engine._native.build

FROM python:3.11-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --gid 0 --home-dir /app --no-create-home kootabase
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_ENV=production \
    KOOTABASE_VAR_DIR=/tmp/kootabase \
    STATIC_ROOT=/app/staticfiles
COPY --from=build /venv /venv
WORKDIR /app
COPY --from=build --chown=10001:0 /app /app
# Static files are collected at build time with throwaway settings; nothing secret is baked in.
RUN SECRET_KEY=collectstatic-only DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    REDIS_URL=redis://unused:6379/0 CELERY_BROKER_URL=memory:// \
    python manage.py collectstatic --noinput --verbosity 0 \
 && rm -rf /tmp/kootabase /tmp/collectstatic.sqlite3
USER 10001
EXPOSE 8000
CMD ["uvicorn", "kootabase.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--workers", "2", "--proxy-headers", "--forwarded-allow-ips", "*", "--no-server-header"]
