"""The built-in registry (tasks/registry.py) through its HTTP API on a real platform: pushes and pulls with urllib
(monolithic and chunked uploads, ranges, tags, the catalog, deletes), the distribution spec's errors, skopeo
copying an image in and out; ECR's API (tasks/ecr.py) with boto3, and its tokens on a platform with credentials."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import nats
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from kambda.bus import IMAGES_BUCKET, chunks
from tasks import oci
from tasks.ecr import ExternalImage, resolve
from tasks.images import PullError, pull
from tasks.registry import CHUNK, UPLOAD_TTL_S, ImageStore, RegistryError
from tasks.tools import skopeo_path
from tests import images
from tests.conftest import Platform, invoke_json, make_zip, unique
from tests.images import directory, error_codes, file, request, tar_layer


def repo_name(prefix: str = "team/app") -> str:
    return unique(prefix)


def test_the_version_check_answers_with_the_api_version(platform: Platform) -> None:
    status, headers, body = request("GET", platform.url + "/v2/")
    assert status == 200 and json.loads(body) == {}
    assert headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_an_image_pushed_is_pulled_back_by_tag_and_digest(platform: Platform, tmp_path: Path) -> None:
    url, repo = platform.url, repo_name()
    layout = images.busybox_image(tmp_path / "img", {"Cmd": ["sh", "-c", "exit 3"]},
                                  [tar_layer([directory("srv"), file("srv/a.txt", "hello")])])
    digest = images.push(url, repo, "v1", layout)
    for reference in ("v1", digest):
        status, headers, body = request("GET", f"{url}/v2/{repo}/manifests/{reference}")
        assert status == 200 and body == layout.blob(digest)
        assert headers["Docker-Content-Digest"] == digest
        assert headers["Content-Type"] == oci.OCI_MANIFEST
    status, headers, body = request("HEAD", f"{url}/v2/{repo}/manifests/v1")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(layout.blob(digest))
    _, manifest = layout.manifest()
    for descriptor in (manifest.config, *manifest.layers):
        status, headers, body = request("GET", f"{url}/v2/{repo}/blobs/{descriptor.digest}")
        assert status == 200 and oci.digest_of(body) == descriptor.digest
        status, headers, body = request("HEAD", f"{url}/v2/{repo}/blobs/{descriptor.digest}")
        assert status == 200 and int(headers["Content-Length"]) == descriptor.size and body == b""
    images.push(url, repo, "v2", layout)
    status, _, body = request("GET", f"{url}/v2/{repo}/tags/list")
    assert json.loads(body) == {"name": repo, "tags": ["v1", "v2"]}
    status, _, body = request("GET", f"{url}/v2/{repo}/tags/list?n=1")
    assert json.loads(body)["tags"] == ["v1"]
    status, _, body = request("GET", f"{url}/v2/_catalog")
    assert status == 200 and repo in json.loads(body)["repositories"]


def test_a_chunked_upload_with_content_ranges_and_a_range_read(platform: Platform) -> None:
    url, repo = platform.url, repo_name("chunks")
    data = os.urandom(1_300_000)
    status, headers, _ = request("POST", f"{url}/v2/{repo}/blobs/uploads/", b"")
    assert status == 202
    location = url + headers["Location"]
    sent = 0
    for size in (400_000, 600_001, 299_999):
        status, headers, body = request("PATCH", location, data[sent:sent + size], {
            "Content-Type": "application/octet-stream", "Content-Range": f"{sent}-{sent + size - 1}"})
        assert status == 202, body
        sent += size
        assert headers["Range"] == f"0-{sent - 1}"
    status, headers, _ = request("GET", location)
    assert status == 204 and headers["Range"] == f"0-{len(data) - 1}"
    # a chunk that does not follow on is refused
    status, _, _ = request("PATCH", location, b"x", {"Content-Range": "5-5"})
    assert status == 416
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, body = request("PUT", f"{location}?digest={digest}", b"")
    assert status == 201, body
    assert headers["Docker-Content-Digest"] == digest
    status, headers, body = request("GET", f"{url}/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=1000-1999"})
    assert status == 206 and body == data[1000:2000]
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    status, _, body = request("GET", f"{url}/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    for bad in ("bytes=oops", "bytes=5-2", f"bytes={len(data)}-"):
        assert request("GET", f"{url}/v2/{repo}/blobs/{digest}", headers={"Range": bad})[0] == 416, bad
    # the session is gone once completed
    assert error_codes(request("GET", location)[2]) == ["BLOB_UPLOAD_UNKNOWN"]
    # a monolithic POST ?digest= and a mount of a blob that exists
    small = b"monolithic"
    small_digest = oci.digest_of(small)
    status, headers, _ = request("POST", f"{url}/v2/{repo}/blobs/uploads/?digest={small_digest}", small)
    assert status == 201 and headers["Docker-Content-Digest"] == small_digest
    other = repo_name("mounted")
    status, headers, _ = request("POST", f"{url}/v2/{other}/blobs/uploads/?mount={digest}&from={repo}", b"")
    assert status == 201 and headers["Docker-Content-Digest"] == digest


def test_the_distribution_errors(platform: Platform, tmp_path: Path) -> None:
    url, repo = platform.url, repo_name("errors")
    missing = "sha256:" + "0" * 64
    status, _, body = request("GET", f"{url}/v2/{repo}/blobs/{missing}")
    assert status == 404 and error_codes(body) == ["BLOB_UNKNOWN"]
    status, _, body = request("GET", f"{url}/v2/{repo}/manifests/latest")
    assert status == 404 and error_codes(body) == ["NAME_UNKNOWN"]
    status, _, body = request("GET", f"{url}/v2/{repo}/tags/list")
    assert status == 404 and error_codes(body) == ["NAME_UNKNOWN"]
    status, _, body = request("GET", f"{url}/v2/{repo}/blobs/md5:abc")
    assert status == 400 and error_codes(body) == ["DIGEST_INVALID"]
    status, _, body = request("GET", f"{url}/v2/Upper/blobs/{missing}")
    assert status == 400 and error_codes(body) == ["NAME_INVALID"]
    # the bytes are not the digest they are completed as: nothing is kept
    status, headers, _ = request("POST", f"{url}/v2/{repo}/blobs/uploads/", b"")
    status, _, body = request("PUT", f"{url}{headers['Location']}?digest={missing}", b"not zeros")
    assert status == 400 and error_codes(body) == ["DIGEST_INVALID"]
    assert request("HEAD", f"{url}/v2/{repo}/blobs/{missing}")[0] == 404
    # a manifest naming a blob nobody pushed
    layer = tar_layer([file("x", "y")])
    manifest = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                           "config": {"mediaType": oci.OCI_CONFIG, "digest": missing, "size": 2},
                           "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "digest": oci.digest_of(layer),
                                       "size": len(layer)}]}).encode()
    status, _, body = request("PUT", f"{url}/v2/{repo}/manifests/v1", manifest,
                              {"Content-Type": oci.OCI_MANIFEST})
    assert status == 404 and error_codes(body) == ["MANIFEST_BLOB_UNKNOWN"]
    status, _, body = request("PUT", f"{url}/v2/{repo}/manifests/v1", b"{not json",
                              {"Content-Type": oci.OCI_MANIFEST})
    assert status == 400 and error_codes(body) == ["MANIFEST_INVALID"]
    # pushed as a digest it is not
    layout = images.busybox_image(tmp_path / "img")
    images.push(url, repo, "v1", layout)
    digest, _ = layout.manifest()
    status, _, body = request("PUT", f"{url}/v2/{repo}/manifests/{missing}", layout.blob(digest),
                              {"Content-Type": oci.OCI_MANIFEST})
    assert status == 400 and error_codes(body) == ["DIGEST_INVALID"]
    status, _, body = request("GET", f"{url}/v2/{repo}/manifests/{missing}")
    assert status == 404 and error_codes(body) == ["MANIFEST_UNKNOWN"]


def test_a_large_manifest_arrives_whole_and_a_too_large_one_is_refused(platform: Platform, tmp_path: Path) -> None:
    url, repo = platform.url, repo_name("large")
    layout = images.busybox_image(tmp_path / "img")
    digest, manifest = layout.manifest()
    for descriptor in (manifest.config, *manifest.layers):
        images.push_blob(url, repo, layout.blob(descriptor.digest))
    doc = json.loads(layout.blob(digest))
    doc["annotations"] = {f"note.{i}": "x" * 100 for i in range(3000)}  # ~330 KB
    raw = json.dumps(doc).encode()
    status, headers, body = request("PUT", f"{url}/v2/{repo}/manifests/big", raw, {"Content-Type": oci.OCI_MANIFEST})
    assert status == 201, body
    assert headers["Docker-Content-Digest"] == oci.digest_of(raw)
    assert request("GET", f"{url}/v2/{repo}/manifests/big")[2] == raw
    doc["annotations"] = {f"note.{i}": "x" * 1000 for i in range(4200)}
    status, _, body = request("PUT", f"{url}/v2/{repo}/manifests/huge", json.dumps(doc).encode(),
                              {"Content-Type": oci.OCI_MANIFEST})
    assert status == 400 and error_codes(body) == ["SIZE_INVALID"]


def test_manifests_are_deleted_by_tag_and_by_digest(platform: Platform, tmp_path: Path) -> None:
    url, repo = platform.url, repo_name("deletes")
    layout = images.busybox_image(tmp_path / "img")
    digest = images.push(url, repo, "a", layout)
    images.push(url, repo, "b", layout)
    assert request("DELETE", f"{url}/v2/{repo}/manifests/a")[0] == 202
    assert json.loads(request("GET", f"{url}/v2/{repo}/tags/list")[2])["tags"] == ["b"]
    assert request("GET", f"{url}/v2/{repo}/manifests/{digest}")[0] == 200
    assert request("DELETE", f"{url}/v2/{repo}/manifests/{digest}")[0] == 202
    status, _, body = request("GET", f"{url}/v2/{repo}/manifests/b")
    assert status == 404 and error_codes(body) == ["MANIFEST_UNKNOWN"]
    assert error_codes(request("DELETE", f"{url}/v2/{repo}/manifests/{digest}")[2]) == ["MANIFEST_UNKNOWN"]


def test_a_50_mb_layer_is_pushed_and_pulled_streaming(platform: Platform) -> None:
    url, repo = platform.url, repo_name("big")
    data = os.urandom(50 * 1024 * 1024)
    started = time.perf_counter()
    digest = images.push_blob(url, repo, data)
    pushed = time.perf_counter() - started
    started = time.perf_counter()
    status, _, body = request("GET", f"{url}/v2/{repo}/blobs/{digest}")
    pulled = time.perf_counter() - started
    assert status == 200 and len(body) == len(data) and body == data
    print(f"\n50 MB layer: push {50 / pushed:.0f} MB/s, pull {50 / pulled:.0f} MB/s")


def _skopeo() -> Path:
    found = skopeo_path()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("skopeo is required in CI (scripts/install-container-tools.sh)")
        pytest.skip("skopeo is not installed (scripts/install-container-tools.sh)")
    return found


def test_skopeo_copies_an_image_in_and_out(platform: Platform, tmp_path: Path) -> None:
    skopeo = _skopeo()
    host = platform.url.removeprefix("http://")
    repo = repo_name("skopeo/busybox")
    layout = images.busybox_image(tmp_path / "img", {"Cmd": ["sh"], "Env": ["A=1"]},
                                  [tar_layer([file("hello", "from skopeo")], "zstd")])
    digest, _ = layout.manifest()
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run([str(skopeo), "copy", "--quiet", "--dest-tls-verify=false", f"oci:{tmp_path / 'img'}:latest",
                    f"docker://{host}/{repo}:v1"], check=True, env=env, timeout=120)
    status, headers, _ = request("GET", f"{platform.url}/v2/{repo}/manifests/v1")
    assert status == 200 and headers["Docker-Content-Digest"] == digest  # copied as it was
    out = subprocess.run([str(skopeo), "inspect", "--tls-verify=false", f"docker://{host}/{repo}:v1"],
                         check=True, env=env, timeout=120, capture_output=True, text=True)
    assert json.loads(out.stdout)["Env"] == ["A=1"]
    subprocess.run([str(skopeo), "copy", "--quiet", "--src-tls-verify=false", f"docker://{host}/{repo}:v1",
                    f"oci:{tmp_path / 'back'}:latest"], check=True, env=env, timeout=120)
    back = oci.Layout(tmp_path / "back")
    back_digest, manifest = back.manifest("latest")
    root = oci.unpack(back_digest, [back.blob_path(d.digest) for d in manifest.layers], tmp_path / "cache")
    assert (root / "hello").read_text() == "from skopeo" and (root / "bin" / "busybox").is_file()


# -- ECR's API (boto3's ecr client) and its tokens on the registry ----------------------------------------------------


def ecr_client(platform: Platform, key: str = "x", secret: str = "x") -> Any:
    return boto3.client("ecr", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_ecr_repositories_are_created_described_and_deleted(platform: Platform, tmp_path: Path) -> None:
    ecr = ecr_client(platform)
    name = repo_name("ecr/app")
    made = ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")["repository"]
    assert made["repositoryName"] == name and made["imageTagMutability"] == "IMMUTABLE"
    assert made["repositoryArn"] == f"arn:aws:ecr:us-east-1:{made['registryId']}:repository/{name}"
    assert made["repositoryUri"] == f"{made['registryId']}.dkr.ecr.us-east-1.amazonaws.com/{name}"
    assert resolve(made["repositoryUri"] + ":v1") == (name, "v1")
    with pytest.raises(ClientError) as exc:
        ecr.create_repository(repositoryName=name)
    assert code_of(exc) == "RepositoryAlreadyExistsException"
    with pytest.raises(ClientError) as exc:
        ecr.create_repository(repositoryName="Bad_Name")
    assert code_of(exc) == "InvalidParameterException"
    described = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert [r["repositoryName"] for r in described] == [name]
    assert name in [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    with pytest.raises(ClientError) as exc:
        ecr.describe_repositories(repositoryNames=[name + "-nope"])
    assert code_of(exc) == "RepositoryNotFoundException"
    images.push(platform.url, name, "v1", images.busybox_image(tmp_path / "img"))
    with pytest.raises(ClientError) as exc:
        ecr.delete_repository(repositoryName=name)
    assert code_of(exc) == "RepositoryNotEmptyException"
    assert ecr.delete_repository(repositoryName=name, force=True)["repository"]["repositoryName"] == name
    with pytest.raises(ClientError) as exc:
        ecr.list_images(repositoryName=name)
    assert code_of(exc) == "RepositoryNotFoundException"
    assert request("GET", f"{platform.url}/v2/{name}/manifests/v1")[0] == 404


def test_ecr_images_are_listed_described_fetched_and_deleted(platform: Platform, tmp_path: Path) -> None:
    ecr = ecr_client(platform)
    name = repo_name("ecr/images")
    ecr.create_repository(repositoryName=name)
    first = images.busybox_image(tmp_path / "a")
    second = images.busybox_image(tmp_path / "b", {"Cmd": ["true"]})
    one = images.push(platform.url, name, "v1", first)
    images.push(platform.url, name, "latest", first)
    two = images.push(platform.url, name, "v2", second)
    ids = ecr.list_images(repositoryName=name)["imageIds"]
    assert sorted((i["imageDigest"], i["imageTag"]) for i in ids) == sorted(
        [(one, "latest"), (one, "v1"), (two, "v2")])
    details = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": "v1"}])["imageDetails"]
    assert details[0]["imageDigest"] == one and details[0]["imageTags"] == ["latest", "v1"]
    assert details[0]["imageManifestMediaType"] == oci.OCI_MANIFEST
    assert details[0]["imageSizeInBytes"] == sum(d.size for d in first.manifest()[1].layers)
    assert details[0]["artifactMediaType"] == oci.OCI_CONFIG
    with pytest.raises(ClientError) as exc:
        ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": "nope"}])
    assert code_of(exc) == "ImageNotFoundException"
    got = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v2"}, {"imageTag": "nope"}])
    assert got["images"][0]["imageId"] == {"imageDigest": two, "imageTag": "v2"}
    assert got["images"][0]["imageManifest"].encode() == second.blob(two)
    assert got["failures"][0]["failureCode"] == "ImageNotFound"
    # a tag removed; the image stays while another tag names it, and goes with its last one
    deleted = ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert deleted["imageIds"] == [{"imageDigest": one, "imageTag": "v1"}] and deleted["failures"] == []
    assert len(ecr.describe_images(repositoryName=name)["imageDetails"]) == 2
    ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "latest"}])
    assert [d["imageDigest"] for d in ecr.describe_images(repositoryName=name)["imageDetails"]] == [two]
    deleted = ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageDigest": two}, {"imageDigest": one}])
    assert deleted["imageIds"] == [{"imageDigest": two, "imageTag": "v2"}]
    assert deleted["failures"][0]["failureCode"] == "ImageNotFound"
    assert ecr.list_images(repositoryName=name)["imageIds"] == []


def test_ecr_put_image_tags_a_manifest_and_keeps_immutable_tags(platform: Platform, tmp_path: Path) -> None:
    ecr = ecr_client(platform)
    name = repo_name("ecr/put")
    ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
    first, second = images.busybox_image(tmp_path / "a"), images.busybox_image(tmp_path / "b", {"Cmd": ["true"]})
    one = images.push(platform.url, name, "v1", first)
    two_digest, _ = second.manifest()
    images.push(platform.url, name, two_digest, second)  # by digest: untagged
    put = ecr.put_image(repositoryName=name, imageManifest=second.blob(two_digest).decode(), imageTag="v2")
    assert put["image"]["imageId"] == {"imageDigest": two_digest, "imageTag": "v2"}
    with pytest.raises(ClientError) as exc:
        ecr.put_image(repositoryName=name, imageManifest=second.blob(two_digest).decode(), imageTag="v2")
    assert code_of(exc) == "ImageAlreadyExistsException"
    with pytest.raises(ClientError) as exc:
        ecr.put_image(repositoryName=name, imageManifest=second.blob(two_digest).decode(), imageTag="v1")
    assert code_of(exc) == "ImageTagAlreadyExistsException"
    assert ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])["images"][0]["imageId"][
        "imageDigest"] == one
    with pytest.raises(ClientError) as exc:
        ecr.put_image(repositoryName=name, imageManifest=json.dumps({
            "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": {
                "mediaType": oci.OCI_CONFIG, "digest": "sha256:" + "1" * 64, "size": 1}, "layers": []}))
    assert code_of(exc) == "LayersNotFoundException"


def test_references_resolve_to_the_built_in_registry_or_say_they_are_elsewhere() -> None:
    assert resolve("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v3") == ("team/app", "v3")
    digest = "sha256:" + "c" * 64
    assert resolve(f"123456789012.dkr.ecr.us-east-1.amazonaws.com/app@{digest}") == ("app", digest)
    assert resolve("app") == ("app", "latest")
    assert resolve("127.0.0.1:8042/ns/app:1.0") == ("ns/app", "1.0")
    assert resolve("kambda.internal:5000/app:x", local_hosts=["kambda.internal:5000"]) == ("app", "x")
    with pytest.raises(ExternalImage, match="public.ecr.aws"):
        resolve("public.ecr.aws/lambda/python:3.12")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state = tmp_path_factory.mktemp("kambda-registry-auth")
    creds = state / "credentials.json"
    only_pull = {"Statement": [{"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                                              "ecr:GetAuthorizationToken"], "Resource": "*"}]}
    creds.write_text(json.dumps({"credentials": [
        {"accessKeyId": "ADMIN", "secretAccessKey": "ADMIN-secret", "role": "admin"},
        {"accessKeyId": "PULLER", "secretAccessKey": "PULLER-secret", "policy": only_pull}]}))
    running = Platform(state / "state", ["--credentials", str(creds)]).start()
    yield running
    running.stop()


def _login(platform: Platform, key: str) -> tuple[str, str]:
    data = ecr_client(platform, key, f"{key}-secret").get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == platform.url  # what docker login is given
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS"
    return user, password


def test_with_credentials_the_registry_wants_an_ecr_token(secured: Platform, tmp_path: Path) -> None:
    url = secured.url
    status, headers, body = request("GET", url + "/v2/")
    assert status == 401 and error_codes(body) == ["UNAUTHORIZED"]
    assert headers["WWW-Authenticate"].startswith("Basic")
    admin = _login(secured, "ADMIN")
    assert request("GET", url + "/v2/", auth=admin)[0] == 200
    assert request("GET", url + "/v2/", auth=("AWS", admin[1][:-4] + "0000"))[0] == 401
    assert request("GET", url + "/v2/", auth=("AWS", "garbage"))[0] == 401
    repo = repo_name("secured")
    layout = images.busybox_image(tmp_path / "img")
    digest = images.push(url, repo, "v1", layout, auth=admin)
    puller = _login(secured, "PULLER")
    status, _, body = request("GET", f"{url}/v2/{repo}/manifests/v1", auth=puller)
    assert status == 200 and oci.digest_of(body) == digest
    status, _, body = request("POST", f"{url}/v2/{repo}/blobs/uploads/", b"", auth=puller)
    assert status == 403 and error_codes(body) == ["DENIED"]
    assert request("GET", f"{url}/v2/{repo}/manifests/v1")[0] == 401


# -- pulling for the runners (tasks/images.py) ---------------------------------------------------------------------


async def test_pull_unpacks_an_image_of_the_registry_once(platform: Platform, tmp_path: Path) -> None:
    name = repo_name("pulled")
    layout = images.busybox_image(tmp_path / "img", {"Cmd": ["sh", "-c", "exit 3"], "Env": ["A=1"]},
                                  [tar_layer([file("etc/motd", "pulled")])])
    digest = images.push(platform.url, name, "v1", layout)
    nc = await nats.connect(platform.nats_url())
    try:
        js = nc.jetstream()
        uri = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:v1"
        rootfs, config = await pull(js, uri, tmp_path / "cache")
        assert rootfs == tmp_path / "cache" / "rootfs" / digest.split(":")[1]
        assert (rootfs / "etc" / "motd").read_text() == "pulled" and (rootfs / "bin" / "busybox").is_file()
        assert config.argv() == ["sh", "-c", "exit 3"] and config.environment == {"A": "1"}
        assert sorted(p.name for p in (tmp_path / "cache" / "blobs").iterdir()) == sorted(
            d.digest.split(":")[1] for d in layout.manifest()[1].layers)
        assert await pull(js, f"{name}@{digest}", tmp_path / "cache") == (rootfs, config)
        with pytest.raises(PullError, match="MANIFEST_UNKNOWN"):
            await pull(js, f"{name}:nope", tmp_path / "cache")
        with pytest.raises(PullError, match="NAME_UNKNOWN"):
            await pull(js, repo_name("never-pushed"), tmp_path / "cache")
        with pytest.raises(PullError, match="registry docker.io, not kambda's"):
            await pull(js, "docker.io/library/busybox:latest", tmp_path / "cache")
    finally:
        await nc.close()


async def test_docker_manifests_and_an_index_are_served_and_pulled_for_this_platform(platform: Platform,
                                                                                     tmp_path: Path) -> None:
    url, name = platform.url, repo_name("docker")
    layout = images.busybox_image(tmp_path / "img", {"Cmd": ["sh"]})
    digest, manifest = layout.manifest()
    for descriptor in (manifest.config, *manifest.layers):
        images.push_blob(url, name, layout.blob(descriptor.digest))
    docker = json.dumps({"schemaVersion": 2, "mediaType": oci.DOCKER_MANIFEST,
                         "config": {"mediaType": oci.DOCKER_CONFIG, "digest": manifest.config.digest,
                                    "size": manifest.config.size},
                         "layers": [{"mediaType": oci.DOCKER_LAYER, "digest": d.digest, "size": d.size}
                                    for d in manifest.layers]}).encode()
    status, headers, body = request("PUT", f"{url}/v2/{name}/manifests/{oci.digest_of(docker)}", docker,
                                    {"Content-Type": oci.DOCKER_MANIFEST})
    assert status == 201, body
    index = json.dumps({"schemaVersion": 2, "mediaType": oci.DOCKER_LIST, "manifests": [
        {"mediaType": oci.DOCKER_MANIFEST, "digest": oci.digest_of(docker), "size": len(docker),
         "platform": {"os": "linux", "architecture": oci.host_arch()}}]}).encode()
    missing_child = index.replace(oci.digest_of(docker).encode(), b"sha256:" + b"9" * 64)
    status, _, body = request("PUT", f"{url}/v2/{name}/manifests/multi", missing_child,
                              {"Content-Type": oci.DOCKER_LIST})
    assert status == 404 and error_codes(body) == ["MANIFEST_UNKNOWN"]
    assert request("PUT", f"{url}/v2/{name}/manifests/multi", index, {"Content-Type": oci.DOCKER_LIST})[0] == 201
    status, headers, body = request("GET", f"{url}/v2/{name}/manifests/multi")
    assert headers["Content-Type"] == oci.DOCKER_LIST and body == index
    nc = await nats.connect(platform.nats_url())
    try:
        rootfs, config = await pull(nc.jetstream(), f"{name}:multi", tmp_path / "cache")
    finally:
        await nc.close()
    assert rootfs.name == oci.digest_of(docker).split(":")[1] and (rootfs / "bin" / "busybox").is_file()
    assert config.cmd == ("sh",)


async def test_an_upload_begun_on_one_gateway_is_finished_on_another(platform: Platform) -> None:
    """The running digest lives in the gateway that began the upload; another one recomputes it from the chunks."""
    data = os.urandom(CHUNK * 2 + 17)
    digest = oci.digest_of(data)

    async def body(piece: bytes) -> AsyncIterator[bytes]:
        yield piece

    nc = await nats.connect(platform.nats_url())
    try:
        first, second = ImageStore(nc.jetstream()), ImageStore(nc.jetstream())
        session = await first.start_upload("handover")
        await first.append(session, body(data[:CHUNK + 5]))
        await second.append(session, body(data[CHUNK + 5:]))
        await first.finish(session, digest)
        info = await second.info(f"blobs/{digest}")
        assert info is not None and info.size == len(data)
        assert b"".join([c async for c in second.chunks_of(info)]) == data
        # and a wrong digest is refused there too, its chunks purged
        session = await second.start_upload("handover")
        await second.append(session, body(b"abc"))
        with pytest.raises(RegistryError, match="did not match"):
            await first.finish(session, "sha256:" + "0" * 64)
    finally:
        await nc.close()


@pytest.mark.parametrize("method, path, body, headers", [
    ("PATCH", "/v2/odd/blobs/uploads/nope", b"x", {}),
    ("PUT", "/v2/odd/blobs/uploads/nope?digest=sha256:" + "0" * 64, b"", {}),
    ("DELETE", "/v2/odd/blobs/uploads/nope", b"", {}),
    ("PUT", "/v2/odd/manifests/bad%20tag", b"{}", {"Content-Type": "application/json"}),
    ("PUT", "/v2/odd/manifests/v1", b"\xff\xfe", {"Content-Type": "application/json"}),
    ("PUT", "/v2/odd/manifests/v1", b'{"schemaVersion": 2, "manifests": [{"digest": 1}]}', {}),
    ("PUT", "/v2/odd/manifests/v1", b'[1, 2]', {}),
    ("GET", "/v2/odd/manifests/sha256:short", b"", {}),
    ("GET", "/v2/odd/blobs/sha256:" + "0" * 64, b"", {"Range": "bytes=oops"}),
    ("DELETE", "/v2/odd/blobs/sha256:" + "0" * 64, b"", {}),
    ("POST", "/v2/odd/blobs/uploads/?mount=nope&from=x", b"", {}),
    ("POST", "/v2/odd/blobs/uploads/?digest=md5:1", b"abc", {}),
    ("GET", "/v2/_catalog?n=x&last=", b"", {}),
    ("GET", "/v2/" + "a/" * 200 + "tags/list", b"", {}),
])
def test_a_users_mistake_gets_a_4xx_never_a_500(platform: Platform, method: str, path: str, body: bytes,
                                                headers: dict[str, str]) -> None:
    status, _, answer = request(method, platform.url + path, body, headers)
    assert status < 500, answer


async def test_abandoned_uploads_are_swept_with_their_chunks(platform: Platform) -> None:
    now = [1_000_000.0]

    async def body(piece: bytes) -> AsyncIterator[bytes]:
        yield piece

    nc = await nats.connect(platform.nats_url())
    try:
        js = nc.jetstream()
        store = ImageStore(js, clock=lambda: now[0])
        old = await store.start_upload("swept")
        await store.append(old, body(b"abandoned bytes"))
        nuid = (await store.upload(old))[0]["nuid"]
        now[0] += UPLOAD_TTL_S - 10
        fresh = await store.start_upload("swept")  # swept first (its first upload here), nothing old enough yet
        assert (await store.upload(old))[0]["size"] == len(b"abandoned bytes")
        now[0] += 20
        assert await store.sweep() == 1
        with pytest.raises(RegistryError, match="unknown"):
            await store.upload(old)
        assert (await store.upload(fresh))[0]["size"] == 0
        leftover = [c async for c in chunks.read(js, chunks.object_stream(IMAGES_BUCKET),
                                                 chunks.chunk_subject(IMAGES_BUCKET, nuid))]
        assert leftover == []
        await store.cancel(fresh)
    finally:
        await nc.close()


async def test_a_streamed_patch_without_a_length_as_docker_sends_it(platform: Platform) -> None:
    pieces = [os.urandom(300_000) for _ in range(4)]
    digest = oci.digest_of(b"".join(pieces))

    async def stream() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async with aiohttp.ClientSession(platform.url) as session:
        async with session.post("/v2/streamed/blobs/uploads/") as started:
            assert started.status == 202
            location = started.headers["Location"]
        async with session.patch(location, data=stream()) as patched:  # Transfer-Encoding: chunked
            assert patched.status == 202 and patched.headers["Range"] == f"0-{sum(map(len, pieces)) - 1}"
        async with session.put(f"{location}?digest={digest}") as finished:
            assert finished.status == 201
        async with session.get(f"/v2/streamed/blobs/{digest}") as got:
            assert await got.read() == b"".join(pieces)


CALLS_THE_REGISTRY = """
import json, os, urllib.error, urllib.request
def handler(event, context):
    try:
        with urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL_LAMBDA"] + "/v2/_catalog", timeout=10) as response:
            return {"status": response.status}
    except urllib.error.HTTPError as err:
        return {"status": err.code, "body": json.loads(err.read())}
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox applies only when kambda runs as root")
def test_a_sandboxed_function_is_refused_by_the_registry(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = Path(tempfile.mkdtemp(prefix="kambda-registry-sandbox-"))
    running = Platform(tmp_path_factory.mktemp("kambda-registry-sandbox"), env={
        "KAMBDA_SANDBOX": "true", "KAMBDA_SANDBOX_DIR": str(root)}).start()
    try:
        lam = running.lambda_client()
        name = unique("registry-probe")
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": CALLS_THE_REGISTRY})}, Timeout=30)
        response, out = invoke_json(lam, name)
        assert "FunctionError" not in response, out
        assert isinstance(out, dict) and out["status"] == 403, out
        assert error_codes(json.dumps(out["body"]).encode()) == ["DENIED"]
        assert request("GET", running.url + "/v2/_catalog")[0] == 200  # the operator, on loopback, still may
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_boto3_ecr_in_a_function_reaches_kambda(platform: Platform, lam: Any, create: Any) -> None:
    code = (
        "import boto3, botocore\n"
        "def handler(event, context):\n"
        "    ecr = boto3.client('ecr', config=botocore.config.Config(retries={'max_attempts': 1}))\n"
        "    try:\n"
        "        ecr.describe_repositories()\n"
        "        answer = 'served'\n"
        "    except botocore.exceptions.ClientError as exc:\n"
        "        answer = exc.response['Error']['Code']\n"
        "    return {'answer': answer, 'endpoint': ecr.meta.endpoint_url}\n"
    )
    body = invoke_json(lam, create(code, Timeout=20))[1]
    # signed with the execution role's credentials, which grant nothing: kambda answered, not AWS
    assert body == {"answer": "AccessDeniedException", "endpoint": platform.url}
