"""Facts about the staging bucket, for preflight: region, default encryption, public access
block and versioning.

S3 answers "not configured" with an error (no encryption configuration, no public access
block): those codes mean the setting is absent. Any other error (AccessDenied first of all)
means it could not be read, which is not the same thing and must not pass for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import cloud
from migrate.facts import Fact

NOT_CONFIGURED = {
    "encryption": "ServerSideEncryptionConfigurationNotFoundError",
    "public_access_block": "NoSuchPublicAccessBlockConfiguration",
}
PICK = {
    "region": lambda r: r.get("LocationConstraint"),
    "encryption": lambda r: r["ServerSideEncryptionConfiguration"]["Rules"][0]
    ["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
    "public_access_block": lambda r: r["PublicAccessBlockConfiguration"],
    "versioning": lambda r: r.get("Status"),
}


@dataclass(frozen=True)
class BucketSettings(Fact):
    """The spec's staging bucket. Unreachable: StepFailed."""

    def read(self, inv) -> dict[str, dict]:
        s3 = cloud.client(inv)
        cloud.head_bucket(inv, s3)
        return cloud.bucket_settings(s3, inv.spec.storage.bucket)

    def process(self, raw: dict[str, dict]) -> dict:
        """Each setting's value (None: not configured), and `unreadable`: setting -> error code."""
        found: dict = {"unreadable": {}}
        for name, pick in PICK.items():
            code = raw[name].get("Error", {}).get("Code")
            found[name] = pick(raw[name]) if code is None else None
            if code is not None and code != NOT_CONFIGURED.get(name):
                found["unreadable"][name] = code
        return found
