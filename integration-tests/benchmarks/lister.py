"""ListObjectsV2 over the directory nginx serves, for the scaling scenario: nginx sends the
bucket-level requests (``GET /<bucket>?list-type=2...``) here and serves the objects itself.

Why not s3rver or moto: listing 50,000 keys took moto 90 s on this machine (every page sorts and
renders the whole bucket) and s3rver about a second per page of a 3,000-key bucket, so a
50,000-object listing would cost minutes per run and measure the server, not the client. Here a
page is a bisect into a sorted list of the files under the prefix's directory (built once per
directory and kept while its mtime is unchanged) and 1,000 XML entries: a few milliseconds.

Each entry carries what nginx will answer for that object: ``Size`` from the file, ``ETag`` as
nginx makes it (``"<mtime hex>-<size hex>"``), ``LastModified`` from its mtime; so a client that
pins its GETs to the listed ETag (``If-Match``) gets the object. Supported: ``prefix``,
``continuation-token``, ``start-after``, ``max-keys``, ``encoding-type=url``; a non-empty
``delimiter`` is refused (501), nothing here needs it.

Run: ``python lister.py <served root> <port>``; it prints ``ready`` and serves until killed.
"""

from __future__ import annotations

import base64
import bisect
import os
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape

MAX_KEYS = 1000


class _Index:
    """Sorted (key, size, mtime) of the files under one directory, relative to the bucket."""

    def __init__(self, bucket_root: Path, directory: Path) -> None:
        self.mtime_ns = directory.stat().st_mtime_ns if directory.is_dir() else 0
        entries: list[tuple[str, int, int]] = []
        for folder, _, files in os.walk(directory):
            for name in files:
                path = Path(folder) / name
                status = path.stat()
                entries.append((path.relative_to(bucket_root).as_posix(), status.st_size, int(status.st_mtime)))
        entries.sort()
        self.keys = [entry[0] for entry in entries]
        self.entries = entries


class Lister:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._indexes: dict[Path, _Index] = {}
        self._lock = threading.Lock()

    def index(self, bucket: str, prefix: str) -> _Index:
        bucket_root = self.root / bucket
        directory = bucket_root / prefix.rpartition("/")[0]
        with self._lock:
            index = self._indexes.get(directory)
            current = directory.stat().st_mtime_ns if directory.is_dir() else 0
            if index is None or index.mtime_ns != current:
                index = self._indexes[directory] = _Index(bucket_root, directory)
            return index

    def page(self, bucket: str, query: dict[str, str]) -> tuple[int, str]:
        if query.get("list-type") != "2":
            return 501, _error("NotImplemented", "only ListObjectsV2 (list-type=2) is served here")
        if query.get("delimiter"):
            return 501, _error("NotImplemented", "delimiter is not supported by this lister")
        if not (self.root / bucket).is_dir():
            return 404, _error("NoSuchBucket", bucket)
        prefix = query.get("prefix", "")
        max_keys = max(0, min(MAX_KEYS, int(query.get("max-keys", MAX_KEYS))))
        token = query.get("continuation-token")
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else query.get("start-after", "")
        index = self.index(bucket, prefix)
        start = max(bisect.bisect_left(index.keys, prefix), bisect.bisect_right(index.keys, after))
        selected: list[tuple[str, int, int]] = []
        position = start
        while position < len(index.entries) and len(selected) < max_keys:
            entry = index.entries[position]
            if not entry[0].startswith(prefix):
                break
            selected.append(entry)
            position += 1
        truncated = bool(selected) and position < len(index.entries) and index.entries[position][0].startswith(prefix)
        url = query.get("encoding-type") == "url"

        def name(key: str) -> str:
            return escape(quote(key, safe="/") if url else key)

        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            f"<Name>{escape(bucket)}</Name><Prefix>{name(prefix)}</Prefix><KeyCount>{len(selected)}</KeyCount>",
            f"<MaxKeys>{max_keys}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        if token:
            parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if truncated:
            next_token = base64.urlsafe_b64encode(selected[-1][0].encode()).decode()
            parts.append(f"<NextContinuationToken>{next_token}</NextContinuationToken>")
        for key, size, mtime in selected:
            modified = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            parts.append(
                f"<Contents><Key>{name(key)}</Key><LastModified>{modified}</LastModified>"
                f"<ETag>&quot;{mtime:x}-{size:x}&quot;</ETag><Size>{size}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        parts.append("</ListBucketResult>")
        return 200, "".join(parts)


def _error(code: str, message: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>'
    )


def serve(root: Path, port: int) -> None:
    lister = Lister(root)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            bucket = parts.path.strip("/")
            query = {name: values[0] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
            if not bucket or "/" in bucket:
                status, body = 400, _error("InvalidRequest", "only bucket-level listings are served here")
            else:
                status, body = lister.page(bucket, query)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))
