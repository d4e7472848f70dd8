"""The shared fixtures themselves: real binaries, a real S3 server that enforces credentials."""

import pytest

from tests.conftest import S3_RO_KEY, S3_RO_SECRET


def test_pinned_binaries_installed_and_verified(litestream_bins):
    from backupctl.litestream.binary import cached

    for version in litestream_bins:
        found = cached(version)
        assert found is not None and found.verified
        assert found.path == litestream_bins[version]


def test_s3_server_enforces_credentials(s3_server, s3_bucket):
    from botocore.exceptions import ClientError

    s3_server.client().put_object(Bucket=s3_bucket, Key="a", Body=b"x")
    ro = s3_server.client(S3_RO_KEY, S3_RO_SECRET)
    assert ro.get_object(Bucket=s3_bucket, Key="a")["Body"].read() == b"x"
    with pytest.raises(ClientError) as denied:
        ro.put_object(Bucket=s3_bucket, Key="b", Body=b"y")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as wrong:
        s3_server.client("testkey", "wrong").list_objects_v2(Bucket=s3_bucket)
    assert wrong.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
