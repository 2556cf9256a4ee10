"""s3fs-style ``storage_options`` -> ``pyarrow.fs.S3FileSystem`` arguments.

Users pass S3 options the way s3fs (and the original petastorm) takes them: ``key``, ``secret``,
``token``, ``endpoint_url``, ``client_kwargs``, ``region``, ``anon``... Those with a pyarrow equivalent are
translated, so the fast native S3 client is used; if one has none, :func:`s3_options` says so (None) and
the caller falls back to s3fs.
"""
from __future__ import annotations

from typing import Optional
from urllib.parse import urlparse

__all__ = ["s3_options"]

# s3fs-style storage_options that map one-to-one onto pyarrow.fs.S3FileSystem arguments.
_S3FS_TO_PYARROW = {
    "key": "access_key",
    "secret": "secret_key",
    "token": "session_token",
    "anon": "anonymous",
    "region": "region",
    "region_name": "region",
}
# pyarrow.fs.S3FileSystem arguments, also accepted as they are.
_PYARROW_S3_ARGS = frozenset({
    "access_key", "secret_key", "session_token", "anonymous", "region", "request_timeout",
    "connect_timeout", "scheme", "endpoint_override", "background_writes", "default_metadata",
    "role_arn", "session_name", "external_id", "load_frequency", "proxy_options", "allow_delayed_open",
    "allow_bucket_creation", "allow_bucket_deletion", "check_directory_existence_before_creation",
    "retry_strategy", "force_virtual_addressing", "tls_ca_file_path",
})
_S3_CLIENT_KWARGS_MAPPED = frozenset({"endpoint_url", "region_name"})


def s3_options(storage_options: dict) -> Optional[dict]:
    """Translate s3fs-style options to ``pyarrow.fs.S3FileSystem`` arguments.

    Returns None when an option has no pyarrow equivalent (then s3fs must be used).
    """
    out: dict = {}
    endpoint_url = None
    use_ssl = None
    for key, value in storage_options.items():
        if key in _S3FS_TO_PYARROW:
            if value is not None:
                out[_S3FS_TO_PYARROW[key]] = value
        elif key in _PYARROW_S3_ARGS:
            if value is not None:
                out[key] = value
        elif key == "endpoint_url":
            endpoint_url = value
        elif key == "use_ssl":
            use_ssl = value
        elif key == "client_kwargs":
            client_kwargs = dict(value or {})
            if set(client_kwargs) - _S3_CLIENT_KWARGS_MAPPED:
                return None
            endpoint_url = client_kwargs.get("endpoint_url", endpoint_url)
            if client_kwargs.get("region_name") is not None:
                out.setdefault("region", client_kwargs["region_name"])
        else:
            return None
    if use_ssl is not None and "scheme" not in out:
        out["scheme"] = "https" if use_ssl else "http"
    if endpoint_url:
        if "://" in endpoint_url:
            parsed = urlparse(endpoint_url)
            out["scheme"] = parsed.scheme
            out["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        else:
            out["endpoint_override"] = endpoint_url
    if out.get("anonymous") is not None:
        out["anonymous"] = bool(out["anonymous"])
    return out
