"""Read and write one small JSON object in Cloud Storage over the JSON API (google-auth, no storage SDK)."""
from __future__ import annotations

import json
import os
from urllib.parse import quote

API = os.environ.get("STORAGE_API", "https://storage.googleapis.com")


def split(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://") or "/" not in uri[5:]:
        raise ValueError(f"expected gs://BUCKET/OBJECT, got {uri!r}")
    bucket, name = uri[5:].split("/", 1)
    return bucket, name


def session():
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
    return AuthorizedSession(creds)


def upload_json(uri: str, body: str, http=None) -> None:
    bucket, name = split(uri)
    http = http or session()
    r = http.post(f"{API}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": name},
                  data=body.encode(), headers={"Content-Type": "application/json"})
    if r.status_code >= 300:
        raise RuntimeError(f"upload {uri}: HTTP {r.status_code}: {r.text[:200]}")


def download_json(uri: str, http=None):
    """The object's JSON, or None when it does not exist."""
    bucket, name = split(uri)
    http = http or session()
    r = http.get(f"{API}/storage/v1/b/{bucket}/o/{quote(name, safe='')}", params={"alt": "media"})
    if r.status_code == 404:
        return None
    if r.status_code >= 300:
        raise RuntimeError(f"download {uri}: HTTP {r.status_code}: {r.text[:200]}")
    return json.loads(r.text)
