"""Object storage through boto3. Credentials come from the file the spec names, never from
the process environment (ansible-runner would record it)."""

from __future__ import annotations

import configparser
import hashlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from migrate.adapters import guard
from migrate.config import Inventory
from migrate.errors import ConfigError, StepFailed

CHUNK = 8 * 1024 * 1024


def client(inv: Inventory):
    st = inv.spec.storage
    if st.endpoint_url:
        guard.check(inv, urlsplit(st.endpoint_url).hostname or "", "storage.endpoint_url")
    cfg = Config(region_name=st.region, retries={"max_attempts": 5, "mode": "standard"},
                 s3={"addressing_style": st.addressing},
                 request_checksum_calculation=st.checksum_mode,
                 response_checksum_validation=st.checksum_mode,
                 connect_timeout=10, read_timeout=60)
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


def put_stream(inv: Inventory, s3, stream: BinaryIO, key: str, *, metadata: dict | None = None) -> Stored:
    reader = HashingReader(stream)
    extra = {**encryption_args(inv), "Metadata": metadata or {}}
    try:
        s3.upload_fileobj(reader, inv.spec.storage.bucket, key, ExtraArgs=extra,
                          Config=TransferConfig(multipart_chunksize=CHUNK, max_concurrency=4))
    except (BotoCoreError, ClientError) as exc:
        raise StepFailed(f"upload of {key} failed: {exc}") from None
    return Stored(key, reader.size, reader.sha256.hexdigest())


def iter_object(s3, bucket: str, key: str) -> Iterator[bytes]:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        raise StepFailed(f"download of {key} failed: {exc.response['Error'].get('Code')}") from None
    yield from body.iter_chunks(CHUNK)


def object_sha256(s3, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in iter_object(s3, bucket, key):
        digest.update(chunk)
    return digest.hexdigest()


def delete_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete every version and delete marker under prefix, and abort its unfinished uploads."""
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        batch = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                 for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for i in range(0, len(batch), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch[i:i + 1000], "Quiet": True})
        deleted += len(batch)
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return deleted


def count_prefix(s3, bucket: str, prefix: str) -> int:
    total = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        total += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
    return total


def head_bucket(inv: Inventory, s3) -> None:
    try:
        s3.head_bucket(Bucket=inv.spec.storage.bucket)
    except (BotoCoreError, ClientError) as exc:
        raise StepFailed(f"bucket {inv.spec.storage.bucket}: not reachable ({exc})") from None
