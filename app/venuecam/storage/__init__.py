"""Uploads to the object store (Cloudflare R2 over the S3 API).

`keys` and `urls` are pure; `client` builds the boto3 client (boto3 is imported lazily: it
costs 40-50 MB of RSS and only the upload worker needs it); `multipart` is the resumable
uploader; `service` uploads one video's three objects.
"""
