"""Kootabase settings.

Everything is read from the environment (django-environ). With no environment at all
the platform runs embedded on one machine: SQLite under ``var/``, an in-process cache
and channel layer, and a Celery broker kept in files under ``var/``. Setting
``DATABASE_URL``, ``REDIS_URL`` and ``CELERY_BROKER_URL`` switches to MySQL/MariaDB,
Redis and a real broker; the code paths are the same.

``DJANGO_ENV`` is ``development`` (default), ``test`` or ``production``; the test suite
uses ``kootabase.settings_test``, which starts from this module.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "test", "production"}:
    raise environ.ImproperlyConfigured(f"DJANGO_ENV must be development, test or production, not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

if PRODUCTION:
    # Production never falls back to an embedded backend by accident.
    _missing = [name for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL") if not env.str(name, default="")]
    if _missing:
        raise environ.ImproperlyConfigured(f"Production needs {', '.join(_missing)} in the environment")

VAR_DIR = Path(env.str("KOOTABASE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _development_key(name: str, generate: Callable[[], str]) -> str:
    """A key generated once into var/ so sessions (and encrypted secrets) survive restarts on a laptop."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(generate())
        path.chmod(0o600)
    return path.read_text().strip()


def _development_secret_key() -> str:
    return _development_key("secret_key", lambda: secrets.token_urlsafe(50))


if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY")  # required: raises ImproperlyConfigured when missing
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _development_secret_key()

DEBUG = env.bool("DEBUG", default=not PRODUCTION and DJANGO_ENV != "test")
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
# The pod's own address (Kubernetes downward API: status.podIP). The kubelet's probes and
# the metrics scraper address a pod by it, so it is an allowed host too.
if POD_IP := env.str("POD_IP", default=""):
    ALLOWED_HOSTS.append(f"[{POD_IP}]" if ":" in POD_IP else POD_IP)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "accounts.backoffice.BackOfficeAdminConfig",  # django.contrib.admin with 2FA and the audit trail
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "channels",
    "kootabase",
    "accounts",
    "wallets",
    "orders",
    "matching",
    "marketdata",
    "blockchain",
    "audit",
    "monitoring",
    "kyc",
    "aml",
]

MIDDLEWARE = [
    "monitoring.middleware.RequestMetricsMiddleware",  # first: it times the whole chain and the view
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # before WhiteNoise: static files get the header too
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Requests one web process runs at once, each on one of this many long-lived threads with
# its own persistent database connection; the rest wait their turn. Keep web processes x
# this (plus workers and matchers) below the database's max_connections. See
# kootabase/asgi_handler.py.
WEB_MAX_CONCURRENT_REQUESTS = env.int("WEB_MAX_CONCURRENT_REQUESTS", default=32)

# Group commit for order placement (orders/group_placement.py): the orders of a web
# process's concurrent requests are placed together, up to this many in one transaction.
ORDER_PLACEMENT_GROUPING = env.bool("ORDER_PLACEMENT_GROUPING", default=True)
ORDER_PLACEMENT_GROUP_MAX = env.int("ORDER_PLACEMENT_GROUP_MAX", default=50)

ROOT_URLCONF = "kootabase.urls"
ASGI_APPLICATION = "kootabase.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "kootabase" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'kootabase.sqlite3'}")}
_db = DATABASES["default"]
DATABASE_VENDOR = "mysql" if "mysql" in _db["ENGINE"] else "sqlite" if "sqlite" in _db["ENGINE"] else "other"
if DATABASE_VENDOR == "mysql":
    if _db["ENGINE"] == "django.db.backends.mysql":
        # Django's backend without the ping per request for a connection in steady use
        # (DB_HEALTH_CHECK_AFTER_IDLE below; kootabase/db_backends/mysql/base.py).
        _db["ENGINE"] = "kootabase.db_backends.mysql"
    # READ COMMITTED: money rows are always read with SELECT ... FOR UPDATE, so we need no
    # repeatable snapshots; it avoids REPEATABLE READ's gap locks, which multiply deadlocks
    # between concurrent inserts of ledger legs. See docs/architecture.md.
    # One statement per text (mysqlclient allows several by default): a text can never carry
    # a second statement. The matcher's deferred writes turn it on for their own text only
    # (kootabase.db.writes_deferred).
    _db.setdefault("OPTIONS", {}).update(
        {
            "charset": "utf8mb4",
            "isolation_level": "read committed",
            "multi_statements": False,
            "init_command": "SET sql_mode='STRICT_TRANS_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION'",
        }
    )
    _db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    # MySQL cannot index Lower(email); its *_ci collation already compares emails
    # case-insensitively, so the plain unique index gives the same guarantee there.
    SILENCED_SYSTEM_CHECKS = ["models.W044"]
    # Persistent connections: the web tier runs requests on a fixed set of threads
    # (kootabase/asgi_handler.py), so each thread keeps one connection; the matcher and the
    # Celery workers keep theirs. Health checks replace a connection the server dropped.
    _db["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=300)
    _db["CONN_HEALTH_CHECKS"] = True
    # ... except in a request whose connection ended a request cleanly less than this many
    # seconds ago: no ping then (0: a ping at every request, as Django does). A connection
    # dropped within that time fails the request that uses it, once (docs/operations.md).
    DB_HEALTH_CHECK_AFTER_IDLE = env.float("DB_HEALTH_CHECK_AFTER_IDLE", default=1.0)
elif DATABASE_VENDOR == "sqlite":
    # WAL lets the web process read while a worker writes; IMMEDIATE takes the write lock
    # when a transaction begins, so two writers queue instead of deadlocking on upgrade.
    _db.setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and channel layer ----------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "kootabase.cache.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        # A socket's consumer waits on its channel with BZPOPMIN for 5 s at a time; redis-py's
        # default read timeout is 5 s too, and the server answers an empty wait a little
        # after 5 s, so without a longer timeout every socket idle for 5 s lost its consumer.
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}], "prefix": "kootabase"},
        },
        # Market data (each matcher batch, to every web process's hub) over Redis Pub/Sub:
        # one PUBLISH per batch and no round trip per message received. At most once, as
        # the hub expects (a lost batch is a gap in the depth sequence). See docs/marketdata.md.
        "marketdata": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "kootabase-marketdata"},
        },
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "kootabase"}}
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
        "marketdata": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    }

# --- Celery ---------------------------------------------------------------------------
# With no broker configured, tasks travel through kombu's filesystem transport under
# var/celery: a real worker process consumes them, exactly as it would from RabbitMQ or
# Redis. The test settings use the in-memory transport with an in-process worker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "filesystem://"
CELERY_EMBEDDED_BROKER_DIR = VAR_DIR / "celery"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (CELERY_EMBEDDED_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_EMBEDDED_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_EMBEDDED_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_EMBEDDED_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_EMBEDDED_BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = False

# --- Auth -----------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # django-guardian: no anonymous user row
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)  # per email and per IP ...
LOGIN_FAILURE_WINDOW = env.int("LOGIN_FAILURE_WINDOW", default=900)  # ... within this many seconds

# Two-factor authentication (django-otp): TOTP apps plus single-use recovery codes.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Kootabase")
OTP_RECOVERY_CODES = 10

# API keys: secrets are stored encrypted (Fernet). The first key encrypts, every listed
# key decrypts, so a key can be rotated by prepending a new one.
if PRODUCTION:
    API_KEY_ENCRYPTION_KEYS = env.list("API_KEY_ENCRYPTION_KEY")  # required
else:
    API_KEY_ENCRYPTION_KEYS = env.list("API_KEY_ENCRYPTION_KEY", default=[]) or [
        _development_key("api_key_encryption_key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    ]
API_KEY_MAX_EXPIRY_SECONDS = env.int("API_KEY_MAX_EXPIRY_SECONDS", default=30)  # signed requests live this long
# Reverse proxies in front of the app (an ingress: 1). Client IPs are read from
# X-Forwarded-For only that many hops deep; 0 trusts REMOTE_ADDR alone.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)

# --- API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.JWTAuthentication",
        "accounts.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.api.permissions.HasApiKeyScope",
    ],
    "DEFAULT_PARSER_CLASSES": ["kootabase.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["kootabase.api.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "kootabase.api.negotiation.RememberedContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "kootabase.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["kootabase.api.throttling.RateLimitThrottle"],
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="300/min"),
        "user": env.str("THROTTLE_USER", default="6000/min"),
        "register": env.str("THROTTLE_REGISTER", default="20/hour"),
        "api_key": env.str("THROTTLE_API_KEY", default="1200/min"),
        "ip": env.str("THROTTLE_IP", default="12000/min"),
    },
    "EXCEPTION_HANDLER": "kootabase.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Kootabase API",
    "DESCRIPTION": "Spot exchange API: accounts, wallets, orders and market data. "
    "Decimals are strings, times ISO-8601 UTC, errors {code, message, details}.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    # No online validator badge: it would send the schema's URL to a third party (and the CSP blocks it).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # One name for a choice set that several fields use.
    "ENUM_NAME_OVERRIDES": {"KycDocumentKindEnum": "kyc.models.DocumentKind"},
}

# --- Blockchain -----------------------------------------------------------------------
# Nodes: ETH_RPC_URL serves the network named "ethereum"; BLOCKCHAIN_RPC_URLS adds others
# ("polygon=https://...,arbitrum=https://..."). A network with no URL uses the embedded
# chain: an in-process EVM (web3's EthereumTesterProvider) in the test suite, and in the
# embedded run the local chain process ``run_embedded`` starts (see docs/blockchain.md).
# Production has no embedded chain: every network needs a URL.
ETH_RPC_URL = env.str("ETH_RPC_URL", default="")
BLOCKCHAIN_RPC_URLS = {
    **({"ethereum": ETH_RPC_URL} if ETH_RPC_URL else {}),
    **env.dict("BLOCKCHAIN_RPC_URLS", default={}),
}
BLOCKCHAIN_EMBEDDED_CHAIN_PORT = env.int("BLOCKCHAIN_EMBEDDED_CHAIN_PORT", default=8545)
if PRODUCTION:
    BLOCKCHAIN_EMBEDDED_CHAIN = ""
elif DJANGO_ENV == "test":
    BLOCKCHAIN_EMBEDDED_CHAIN = "tester"  # one in-process EVM per test process
else:
    BLOCKCHAIN_EMBEDDED_CHAIN = f"http://127.0.0.1:{BLOCKCHAIN_EMBEDDED_CHAIN_PORT}"
# Secrets, never stored in the database: the BIP-39 mnemonic the deposit addresses are
# derived from (BIP-32/44) and the hot wallet's private key. Required in production;
# generated once into var/ for development.
if PRODUCTION:
    HD_WALLET_MNEMONIC = env.str("HD_WALLET_MNEMONIC")  # required
    HOT_WALLET_PRIVATE_KEY = env.str("HOT_WALLET_PRIVATE_KEY")  # required
else:

    def _generate_mnemonic() -> str:
        from eth_account.hdaccount import Language, generate_mnemonic

        return generate_mnemonic(num_words=24, lang=Language.ENGLISH)

    HD_WALLET_MNEMONIC = env.str("HD_WALLET_MNEMONIC", default="") or _development_key(
        "hd_wallet_mnemonic", _generate_mnemonic
    )
    HOT_WALLET_PRIVATE_KEY = env.str("HOT_WALLET_PRIVATE_KEY", default="") or _development_key(
        "hot_wallet_private_key", lambda: "0x" + secrets.token_hex(32)
    )
BLOCKCHAIN_CONFIRMATIONS_DEFAULT = env.int("BLOCKCHAIN_CONFIRMATIONS_DEFAULT", default=12)
BLOCKCHAIN_SCAN_BATCH_BLOCKS = env.int("BLOCKCHAIN_SCAN_BATCH_BLOCKS", default=100)  # per scan run
BLOCKCHAIN_FEE_BUMP_AFTER = env.int("BLOCKCHAIN_FEE_BUMP_AFTER", default=180)  # seconds unmined before a bump
# The withdrawal address book: a new address, and switching "only to the address book"
# off, take effect this many seconds after the (2FA-confirmed) request. See docs/security.md.
ADDRESS_BOOK_ACTIVATION_DELAY = env.int("ADDRESS_BOOK_ACTIVATION_DELAY", default=24 * 3600)

# --- KYC ------------------------------------------------------------------------------
# Tier limits are valued in this currency (see docs/security.md, "KYC tiers").
KYC_REFERENCE_CURRENCY = env.str("KYC_REFERENCE_CURRENCY", default="USDT").strip().upper()
KYC_DOCUMENT_MAX_BYTES = env.int("KYC_DOCUMENT_MAX_BYTES", default=10 * 1024 * 1024)  # per file

# --- AML ------------------------------------------------------------------------------
# The block-list the AML rules check counterparties and users against: one address or
# email per line, "#" comments; read again whenever the file changes (see docs/security.md,
# "AML"). Production mounts it from a ConfigMap (docs/operations.md). Missing: nothing blocked.
AML_BLOCKLIST_FILE = env.str("AML_BLOCKLIST_FILE", default=str(VAR_DIR / "aml-blocklist.txt"))

# --- Monitoring -----------------------------------------------------------------------
# /metrics (Prometheus) answers only "Authorization: Bearer <METRICS_TOKEN>"; without a
# token it is off (404). See docs/operations.md, "Monitoring".
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Request counters, worker heartbeats and WebSocket counts are shared by every process:
# in Redis when there is one, else in a SQLite file of their own under var/.
MONITORING_REDIS_URL = env.str("MONITORING_REDIS_URL", default=REDIS_URL)
MONITORING_STORE_PATH = env.str("MONITORING_STORE_PATH", default=str(VAR_DIR / "monitoring.sqlite3"))

# --- i18n, static ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # served from the finders; collectstatic fills it in production
MEDIA_ROOT = VAR_DIR / "media"
# Files that are never served: KYC documents. Outside every served URL (no URL maps to it);
# in production a mounted volume of its own (see docs/operations.md).
PRIVATE_MEDIA_ROOT = Path(env.str("PRIVATE_MEDIA_ROOT", default=str(VAR_DIR / "private")))

# --- Security -------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the web client reads it to send X-CSRFToken
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every response (django-csp). Everything loads from this origin
# only: the admin, Swagger UI and ReDoc (served by drf-spectacular-sidecar) and every
# dashboard ship their scripts and styles as static files, with no inline code. A template
# that cannot avoid an inline block marks it with nonce="{{ request.csp_nonce }}"; the
# nonce is then added to the header of that response only. See docs/security.md.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],  # the admin's and Swagger UI's icons are data: URIs in their CSS
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        **({"report-uri": env.str("CSP_REPORT_URI")} if env.str("CSP_REPORT_URI", default="") else {}),
    },
}
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Logging --------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
