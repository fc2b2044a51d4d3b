"""S3: buckets and objects through boto3's ``s3`` client, the AWS CLI and presigned URLs.

Bytes live in JetStream (stream ``KAMBDA_S3``, one subject per blob, read with :mod:`kambda.bus.chunks`);
metadata (buckets, object versions, multipart uploads, bucket configuration) in the SQL store
(:mod:`kambda.sql`: SQLite under the state dir, PostgreSQL for clusters), which answers listings in key order.
:mod:`objects.store` is the engine, :mod:`objects.api` the S3 operations on the front door,
:mod:`objects.notifications` the bucket notifications that trigger functions.
"""
