"""The S3-compatible server of the snapshot tests, reused for cross-daemon resume."""

from tests.snapshot.conftest import ACCESS_KEY, SECRET_KEY, s3_bucket, s3_client, s3_endpoint  # noqa: F401
