"""Object storage through boto3. Credentials come from the file the spec names, never from
the process environment (ansible-runner would record it).

Integrity is ours, not the server's: every upload is hashed (SHA-256) as it streams, and every
download is hashed again before a byte of it is used. Some S3-compatible servers (moto among
them) accept wrong checksums without complaint.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import tempfile
import time
from dataclasses import dataclass
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

import boto3
import urllib3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from migrate.adapters import guard
from migrate.config import Inventory
from migrate.errors import ConfigError, StepFailed

CHUNK = 8 * 1024 * 1024
MIN_PART = 5 * 1024 * 1024  # S3's smallest part, except the last one
READ_BLOCK = 1024 * 1024
DOWNLOAD_ATTEMPTS = 5
UNSUPPORTED = ("NotImplemented", "MethodNotAllowed", "NotImplementedError", "501")
# `rclone serve s3` answers a lifecycle PUT as if it were a bucket creation.
LIFECYCLE_UNSUPPORTED = UNSUPPORTED + ("BucketAlreadyExists", "BucketAlreadyOwnedByYou")


def client(inv: Inventory, *, pool: int = 10, attempts: int = 5, timeout: float = 60):
    st = inv.spec.storage
    if st.endpoint_url:
        guard.check(inv, urlsplit(st.endpoint_url).hostname or "", "storage.endpoint_url")
    cfg = Config(region_name=st.region, retries={"max_attempts": attempts, "mode": "standard"},
                 s3={"addressing_style": st.addressing},
                 request_checksum_calculation=st.checksum_mode,
                 response_checksum_validation=st.checksum_mode,
                 connect_timeout=min(10, timeout), read_timeout=timeout, max_pool_connections=pool)
    key_id, secret = _credentials(inv)
    return boto3.session.Session().client(
        "s3", endpoint_url=st.endpoint_url, aws_access_key_id=key_id, aws_secret_access_key=secret, config=cfg)


def _credentials(inv: Inventory) -> tuple[str | None, str | None]:
    st = inv.spec.storage
    if not st.credentials_file:
        return None, None  # boto3's own chain: instance role, shared config
    path = inv.resolve(st.credentials_file)
    parser = configparser.ConfigParser()
    if not parser.read(path):
        raise ConfigError(f"storage.credentials_file: {path} not found (is the lab up?)")
    if not parser.has_section(st.profile):
        raise ConfigError(f"storage.profile: no section [{st.profile}] in {path}")
    section = parser[st.profile]
    return section.get("aws_access_key_id"), section.get("aws_secret_access_key")


def encryption_args(inv: Inventory) -> dict:
    st = inv.spec.storage
    args = {"ServerSideEncryption": st.encryption}
    if st.encryption == "aws:kms" and st.kms_key_id:
        args["SSEKMSKeyId"] = st.kms_key_id
    return args


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or exc.response.get("ResponseMetadata", {})
                   .get("HTTPStatusCode", "?"))
    return type(exc).__name__


class HashingReader:
    """Wraps a stream: counts and hashes what passes through on its way to the upload."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data


@dataclass(frozen=True)
class Stored:
    key: str
    size: int
    sha256: str
    version: str | None = None


def put_stream(inv: Inventory, s3, stream: BinaryIO, key: str, *, metadata: dict | None = None) -> Stored:
    reader = HashingReader(stream)
    extra = {**encryption_args(inv), "Metadata": metadata or {}}
    try:
        s3.upload_fileobj(reader, inv.spec.storage.bucket, key, ExtraArgs=extra,
                          Config=TransferConfig(multipart_chunksize=CHUNK, max_concurrency=4))
    except (BotoCoreError, ClientError) as exc:
        raise StepFailed(f"upload of {key} failed: {exc}") from None
    return Stored(key, reader.size, reader.sha256.hexdigest())


def put_bytes(inv: Inventory, s3, key: str, body: bytes, *, metadata: dict | None = None) -> Stored:
    """One small object in one request (botocore retries it: the body can be sent again)."""
    try:
        answer = s3.put_object(Bucket=inv.spec.storage.bucket, Key=key, Body=body,
                               Metadata=metadata or {}, **encryption_args(inv))
    except (BotoCoreError, ClientError) as exc:
        raise StepFailed(f"upload of {key} failed ({_code(exc)})") from None
    return Stored(key, len(body), hashlib.sha256(body).hexdigest(), answer.get("VersionId"))


class StreamUpload:
    """Write bytes in; they leave as S3 parts of `part_size`, hashed on the way.

    Small objects go up in one PUT; larger ones as a multipart upload. Like s3transfer's
    `add_failure_cleanup`, the abort of a multipart upload is armed the moment the upload
    exists: any failure (or a kill that unwinds the stack) aborts it, so no incomplete upload
    is left behind. Memory: at most one part buffered.
    """

    def __init__(self, inv: Inventory, s3, key: str, *, part_size: int, metadata: dict | None = None):
        self.inv, self.s3, self.key = inv, s3, key
        self.bucket = inv.spec.storage.bucket
        self.part_size = max(part_size, MIN_PART)
        self.metadata = metadata or {}
        self.buffer = bytearray()
        self.sha256, self.size = hashlib.sha256(), 0
        self.upload_id: str | None = None
        self.parts: list[dict] = []
        self.result: Stored | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.sha256.update(data)
        self.size += len(data)
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            part = bytes(self.buffer[:self.part_size])
            del self.buffer[:self.part_size]
            self._send_part(part)

    def close(self) -> Stored:
        if self.upload_id is None:
            stored = put_bytes(self.inv, self.s3, self.key, bytes(self.buffer), metadata=self.metadata)
            self.result = Stored(self.key, self.size, self.sha256.hexdigest(), stored.version)
            return self.result
        if self.buffer or not self.parts:
            self._send_part(bytes(self.buffer))
        self.buffer = bytearray()
        try:
            answer = self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                                       MultipartUpload={"Parts": self.parts})
        except (BotoCoreError, ClientError) as exc:
            raise StepFailed(f"upload of {self.key} failed at completion ({_code(exc)})") from None
        self.upload_id = None  # complete: nothing left to abort
        self.result = Stored(self.key, self.size, self.sha256.hexdigest(), answer.get("VersionId"))
        return self.result

    def abort(self) -> None:
        if self.upload_id is not None:
            with contextlib.suppress(BotoCoreError, ClientError):
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            self.upload_id = None

    def _send_part(self, part: bytes) -> None:
        try:
            if self.upload_id is None:
                self.upload_id = self.s3.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, Metadata=self.metadata, **encryption_args(self.inv))["UploadId"]
            number = len(self.parts) + 1
            answer = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                         PartNumber=number, Body=part)
        except (BotoCoreError, ClientError) as exc:
            raise StepFailed(f"upload of {self.key} failed ({_code(exc)})") from None
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def __enter__(self) -> StreamUpload:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None:
            self.abort()


MISSING = ("NoSuchKey", "404", "NotFound")


def missing_staged(bucket: str, key: str, code: str) -> str:
    """A staged object that is gone. The journal says it was staged, so the bucket lost it (an
    endpoint that keeps objects in memory and restarted, like the lab's moto): a resume cannot
    get past it, a rollback and a new run can."""
    return (f"staged object s3://{bucket}/{key} is missing ({code}): the bucket lost what this run staged (an"
            " endpoint that restarted without its objects?); a resume cannot get past it: roll back the wave"
            " and run it again, which stages it anew")


def iter_object(s3, bucket: str, key: str, *, start: int = 0) -> Iterator[bytes]:
    """The object's bytes in blocks. A connection that breaks mid-body is reopened from the
    byte it broke at (botocore retries requests, not the reading of a body)."""
    offset, attempt = start, 0
    while True:
        try:
            args = {"Range": f"bytes={offset}-"} if offset else {}
            body = s3.get_object(Bucket=bucket, Key=key, **args)["Body"]
            for block in body.iter_chunks(READ_BLOCK):
                offset += len(block)
                yield block
            return
        except ClientError as exc:
            if _code(exc) == "InvalidRange":
                return  # an empty object, or nothing left after a break at its very end
            if _code(exc) in MISSING:
                raise StepFailed(missing_staged(bucket, key, _code(exc))) from None
            raise StepFailed(f"download of {key} failed: {_code(exc)}") from None
        except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            attempt += 1
            if attempt >= DOWNLOAD_ATTEMPTS:
                raise StepFailed(f"download of {key} failed after {attempt} attempts ({_code(exc)})") from None
            time.sleep(0.2 * attempt)


def object_sha256(s3, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in iter_object(s3, bucket, key):
        digest.update(chunk)
    return digest.hexdigest()


def fetch_verified(s3, bucket: str, key: str, *, sha256: str, size: int, spool_bytes: int):
    """Download an object into a spool (memory up to `spool_bytes`, then a private temporary
    file) and check its SHA-256 and size before returning it, rewound. A mismatch names the
    object and refuses it: nothing of it may reach the target."""
    spool = tempfile.SpooledTemporaryFile(max_size=spool_bytes)
    digest, got = hashlib.sha256(), 0
    try:
        for block in iter_object(s3, bucket, key):
            digest.update(block)
            spool.write(block)
            got += len(block)
        actual = digest.hexdigest()
        if actual != sha256 or got != size:
            raise StepFailed(f"staged object s3://{bucket}/{key}: SHA-256 {actual[:16]}… ({got} bytes) differs"
                             f" from the manifest's {sha256[:16]}… ({size} bytes); refusing to load it")
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


def _unsupported(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and _code(exc) in UNSUPPORTED


def list_versions(s3, bucket: str, prefix: str) -> dict[str, list[str | None]]:
    """key -> version ids (None for an endpoint without versioning support)."""
    found: dict[str, list[str | None]] = {}
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                found.setdefault(v["Key"], []).append(v["VersionId"])
        return found
    except ClientError as exc:
        if not _unsupported(exc):
            raise StepFailed(f"listing s3://{bucket}/{prefix} failed ({_code(exc)})") from None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found.setdefault(obj["Key"], []).append(None)
    return found


def list_keys(s3, bucket: str, prefix: str) -> set[str]:
    """Current keys under prefix (a plain listing: cheap everywhere, unlike listing versions,
    which moto answers by copying every object it holds)."""
    return {obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])}


def object_sizes(s3, bucket: str, prefix: str) -> dict[str, int]:
    """Current objects under prefix: key -> size (a plain listing, as `list_keys`)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}


def delete_unrecorded(s3, bucket: str, prefix: str, recorded: set[str]) -> int:
    """Delete every version of the keys under prefix that are not in `recorded`."""
    doomed = []
    for key in sorted(list_keys(s3, bucket, prefix) - recorded):
        doomed += [(k, v) for k, vs in list_versions(s3, bucket, key).items() if k == key for v in vs]
    return delete_versions(s3, bucket, doomed) if doomed else 0


def delete_versions(s3, bucket: str, items: list[tuple[str, str | None]]) -> int:
    """Delete exact versions (a versioned delete is permanent: no delete marker is left)."""
    objects = [{"Key": k, "VersionId": v} if v and v != "null" else {"Key": k} for k, v in items]
    for i in range(0, len(objects), 1000):
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[i:i + 1000], "Quiet": True})
        if answer.get("Errors"):
            # Not by key: a staged document's key holds its path, and a path can name a person.
            raise StepFailed(f"bucket {bucket}: {len(answer['Errors'])} object version(s) could not be deleted"
                             f" ({answer['Errors'][0].get('Code')})")
    return len(objects)


def delete_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete every version and delete marker under prefix, and abort its unfinished uploads."""
    abort_uploads(s3, bucket, prefix)
    versions = list_versions(s3, bucket, prefix)
    return delete_versions(s3, bucket, [(k, v) for k, vs in versions.items() for v in vs])


def _uploads(s3, bucket: str, prefix: str) -> list[dict]:
    try:
        pages = list(s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix))
    except ClientError as exc:
        if _unsupported(exc) or _code(exc) == "NoSuchUpload":  # rclone's answer for "none"
            return []
        raise StepFailed(f"listing uploads under s3://{bucket}/{prefix} failed ({_code(exc)})") from None
    return [u for page in pages for u in page.get("Uploads", []) if u["Key"].startswith(prefix)]


def abort_uploads(s3, bucket: str, prefix: str) -> int:
    """Abort every incomplete multipart upload under prefix; their parts are billed and hold
    data, and no one will complete them."""
    aborted = 0
    for upload in _uploads(s3, bucket, prefix):
        with contextlib.suppress(ClientError):  # already gone: what we wanted
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    return aborted


def incomplete_uploads(s3, bucket: str, prefix: str) -> list[str]:
    return [u["Key"] for u in _uploads(s3, bucket, prefix)]


def head_bucket(inv: Inventory, s3) -> None:
    try:
        s3.head_bucket(Bucket=inv.spec.storage.bucket)
    except (BotoCoreError, ClientError) as exc:
        raise StepFailed(f"bucket {inv.spec.storage.bucket}: not reachable ({exc})") from None


def bucket_settings(s3, bucket: str) -> dict[str, dict]:
    """The bucket's answer to each settings request: the response, or {"Error": {"Code": ...}}
    when it refused (S3 says "not configured" with an error too; `facts.bucket` tells the two
    apart)."""
    calls = {"region": s3.get_bucket_location, "encryption": s3.get_bucket_encryption,
             "public_access_block": s3.get_public_access_block, "versioning": s3.get_bucket_versioning}
    answers = {}
    for name, call in calls.items():
        try:
            answers[name] = call(Bucket=bucket)
        except (BotoCoreError, ClientError) as exc:
            answers[name] = {"Error": {"Code": _code(exc)}}
    return answers


def object_size(s3, bucket: str, key: str) -> int:
    try:
        return s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except ClientError as exc:
        if _code(exc) in MISSING:
            raise StepFailed(missing_staged(bucket, key, _code(exc))) from None
        raise StepFailed(f"s3://{bucket}/{key}: not readable ({_code(exc)})") from None


def head_metadata(s3, bucket: str, key: str) -> dict | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise StepFailed(f"s3://{bucket}/{key}: cannot read its metadata ({_code(exc)})") from None


# --- staging lifetime: a lifecycle rule per run prefix ------------------------------------

def _rules(s3, bucket: str) -> list[dict]:
    try:
        return s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as exc:
        if _code(exc) in ("NoSuchLifecycleConfiguration",):
            return []
        raise


def set_expiry(s3, bucket: str, prefix: str, *, rule_id: str, days: int) -> str:
    """A lifecycle rule that expires the staged copies of one run after `days` and aborts its
    incomplete uploads after one day. The bucket's other rules are kept (the API replaces the
    whole configuration). Returns 'set', or 'unsupported' for an endpoint without lifecycle."""
    rule = {"ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": prefix},
            "Expiration": {"Days": days}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
    try:
        rules = [r for r in _rules(s3, bucket) if r.get("ID") != rule_id] + [rule]
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    except ClientError as exc:
        if _code(exc) in LIFECYCLE_UNSUPPORTED:
            return "unsupported"
        raise StepFailed(f"bucket {bucket}: cannot set the staging expiry ({_code(exc)})") from None
    return "set"


def remove_expiry(s3, bucket: str, *, rule_id: str) -> str:
    try:
        rules = _rules(s3, bucket)
        kept = [r for r in rules if r.get("ID") != rule_id]
        if len(kept) == len(rules):
            return "absent"
        if kept:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": kept})
        else:
            s3.delete_bucket_lifecycle(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) in LIFECYCLE_UNSUPPORTED:
            return "unsupported"
        raise StepFailed(f"bucket {bucket}: cannot remove the staging expiry ({_code(exc)})") from None
    return "removed"


def expiry_rules(s3, bucket: str) -> list[dict]:
    try:
        return _rules(s3, bucket)
    except ClientError as exc:
        if _unsupported(exc):
            return []
        raise
