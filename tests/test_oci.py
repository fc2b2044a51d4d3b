"""tasks/oci.py: manifests and configs, image layouts, layers unpacked with whiteouts, hostile layers refused or
kept inside the rootfs, the rootfs cached by digest."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import oci, tools
from tests import images
from tests.images import device, directory, file, hardlink, opaque, symlink, tar_layer, whiteout

DIGEST = "sha256:" + "a" * 64


def unpacked(tmp_path: Path, *layers: bytes) -> Path:
    root = tmp_path / "rootfs"
    root.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        oci.unpack_layer(io.BytesIO(layer), root)
    return root


def test_manifests_of_both_kinds_and_indexes_parse() -> None:
    layer = {"mediaType": oci.DOCKER_LAYER, "digest": DIGEST, "size": 3}
    docker = json.dumps({"schemaVersion": 2, "mediaType": oci.DOCKER_MANIFEST,
                         "config": {"mediaType": oci.DOCKER_CONFIG, "digest": DIGEST, "size": 2},
                         "layers": [layer]}).encode()
    found = oci.parse_manifest(docker)
    assert isinstance(found, oci.Manifest) and found.media_type == oci.DOCKER_MANIFEST
    assert found.layers[0].size == 3
    # an OCI manifest may leave out mediaType: the Content-Type says it
    bare = json.dumps({"schemaVersion": 2, "config": layer, "layers": []}).encode()
    assert oci.parse_manifest(bare, oci.OCI_MANIFEST + "; charset=utf-8").media_type == oci.OCI_MANIFEST
    index = oci.parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": oci.DOCKER_LIST, "manifests": [
        {"mediaType": oci.DOCKER_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "riscv"}},
        {"mediaType": oci.DOCKER_MANIFEST, "digest": DIGEST, "size": 1,
         "platform": {"os": "linux", "architecture": oci.host_arch()}}]}).encode())
    assert isinstance(index, oci.Index) and index.select().digest == DIGEST
    with pytest.raises(oci.ImageError, match="no manifest for linux/s390"):
        index.select("s390")


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"),
    (b'{"schemaVersion": 1, "fsLayers": []}', "schemaVersion must be 2"),
    (b'{"schemaVersion": 2, "mediaType": "text/plain"}', "unsupported manifest media type"),
    (b'{"schemaVersion": 2, "config": {"digest": "md5:x", "size": 1}, "layers": []}', "not a sha256 digest"),
    (b'{"schemaVersion": 2, "config": {"digest": "' + DIGEST.encode() + b'", "size": -1}, "layers": []}',
     "non-negative"),
])
def test_bad_manifests_are_refused_with_the_reason(raw: bytes, message: str) -> None:
    with pytest.raises(oci.ImageError, match=message):
        oci.parse_manifest(raw)


def test_the_config_says_how_to_run() -> None:
    config = oci.ImageConfig.parse(json.dumps({"architecture": "amd64", "os": "linux", "config": {
        "Env": ["PATH=/bin", "EMPTY", "A=b=c"], "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"],
        "WorkingDir": "/srv", "User": "65534:65534"}}).encode())
    assert config.environment == {"PATH": "/bin", "EMPTY": "", "A": "b=c"}
    assert config.argv() == ["/bin/sh", "-c", "echo hi"]
    assert config.argv(command=["exit 3"]) == ["/bin/sh", "-c", "exit 3"]
    assert config.argv(entrypoint=["/bin/true"]) == ["/bin/true"]  # Docker's way: Cmd goes with the entrypoint
    assert (config.working_dir, config.user) == ("/srv", "65534:65534")
    assert oci.ImageConfig.parse(b'{"config": null}') == oci.ImageConfig()
    with pytest.raises(oci.ImageError, match="Env must be a list of strings"):
        oci.ImageConfig.parse(b'{"config": {"Env": [1]}}')


def test_an_image_layout_round_trips_and_unpacks_into_a_cached_rootfs(tmp_path: Path) -> None:
    layout = images.busybox_image(tmp_path / "layout", {"Cmd": ["sh", "-c", "exit 3"], "WorkingDir": "/tmp"},
                                  [tar_layer([directory("srv"), file("srv/hello.txt", "hi\n")], "zstd")])
    assert json.loads((tmp_path / "layout" / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    digest, manifest = layout.manifest("latest")
    assert len(manifest.layers) == 2
    config = oci.ImageConfig.parse(layout.blob(manifest.config.digest))
    assert config.argv() == ["sh", "-c", "exit 3"] and config.working_dir == "/tmp"
    blobs = [layout.blob_path(d.digest) for d in manifest.layers]
    started = time.perf_counter()
    root = oci.unpack(digest, blobs, tmp_path / "cache")
    elapsed = time.perf_counter() - started
    print(f"\nunpack: {elapsed * 1000 / len(blobs):.1f} ms per layer ({len(blobs)} layers, busybox + zstd)")
    assert root == tmp_path / "cache" / digest.split(":")[1]
    assert os.path.samefile(root / "bin" / "busybox", root / "bin" / "busybox")
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert (root / "bin" / "busybox").stat().st_mode & 0o111
    assert (root / "srv" / "hello.txt").read_text() == "hi\n"
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o777
    # cached: a second unpack does nothing (the layers may be gone by then)
    assert oci.unpack(digest, [tmp_path / "missing"], tmp_path / "cache") == root


def test_concurrent_unpacks_of_one_image_agree_and_leave_no_scratch(tmp_path: Path) -> None:
    layers = [tmp_path / f"l{i}" for i in range(3)]
    for i, path in enumerate(layers):
        path.write_bytes(tar_layer([file(f"f{i}", str(i) * 1000), directory(f"d{i}")]))
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(oci.unpack(DIGEST, layers, tmp_path / "cache"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["a" * 64]
    assert (results[0] / "f2").read_text() == "2" * 1000


def test_whiteouts_remove_what_the_layers_below_hold(tmp_path: Path) -> None:
    lower = tar_layer([directory("etc"), file("etc/keep", "k"), file("etc/gone", "g"), directory("var"),
                       directory("var/cache"), file("var/cache/old", "o"), directory("var/cache/sub"),
                       file("top", "t")])
    upper = tar_layer([whiteout("etc/gone"), file("var/cache/new", "n"), opaque("var/cache"), whiteout("top"),
                       whiteout("never/was")])
    root = unpacked(tmp_path, lower, upper)
    assert sorted(os.listdir(root / "etc")) == ["keep"]
    assert sorted(os.listdir(root / "var" / "cache")) == ["new"]  # this layer's own entry survives its opaque
    assert not (root / "top").exists()
    assert not any(name.startswith(".wh.") for _, dirs, files in os.walk(root) for name in dirs + files)


def test_a_layer_replaces_a_file_with_a_directory_and_back(tmp_path: Path) -> None:
    root = unpacked(tmp_path, tar_layer([file("x", "file"), directory("y"), file("y/inner")]),
                    tar_layer([directory("x"), file("x/in", "now a dir"), file("y", "now a file")]))
    assert (root / "x" / "in").read_text() == "now a dir" and (root / "y").read_text() == "now a file"


def test_whiteouts_of_dot_names_are_refused(tmp_path: Path) -> None:
    for name in (".wh..", ".wh...", "a/.wh...", ".wh."):
        with pytest.raises(oci.ImageError, match="whiteout of no file"):
            unpacked(tmp_path / "x", tar_layer([directory("a"), file(name)]))
    assert sorted(os.listdir(tmp_path / "x")) == ["rootfs"]


def test_uncompressed_and_zstd_layers_unpack_like_gzip(tmp_path: Path) -> None:
    entries = [directory("a"), file("a/b", "same")]
    for compression in ("none", "gzip", "zstd"):
        root = unpacked(tmp_path / compression, tar_layer(entries, compression))
        assert (root / "a" / "b").read_text() == "same"


def test_what_is_not_a_layer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(oci.ImageError, match="not a tar archive"):
        unpacked(tmp_path, b"\x00garbage" * 100)


# -- hostile layers ---------------------------------------------------------------------------------------------------


def test_dot_dot_entries_are_refused(tmp_path: Path) -> None:
    with pytest.raises(oci.ImageError, match="climbs out"):
        unpacked(tmp_path, tar_layer([file("../../escaped", "x")]))
    with pytest.raises(oci.ImageError, match="climbs out"):
        unpacked(tmp_path, tar_layer([directory("a"), file("a/../../escaped", "x")]))
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_absolute_entries_land_inside_the_rootfs(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    root = unpacked(tmp_path, tar_layer([file(str(outside / "abs.txt"), "x")]))
    assert not outside.exists()
    assert (root / str(outside).lstrip("/") / "abs.txt").read_text() == "x"


def test_writes_through_escaping_symlinks_stay_inside_the_rootfs(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = unpacked(tmp_path, tar_layer([
        symlink("abs", str(outside)),  # absolute: the rootfs's own path once it is /
        symlink("up", "../../../../../../.."),  # relative, climbing: stops at the rootfs
        file("abs/through-abs", "1"), file("up/through-up", "2"),
    ]), tar_layer([file("abs/next-layer", "3"), symlink("abs2", str(outside / "f")), file("abs2", "replaced")]))
    assert list(outside.iterdir()) == []
    inside = root / str(outside).lstrip("/")
    assert (inside / "through-abs").read_text() == "1" and (inside / "next-layer").read_text() == "3"
    assert (root / "through-up").read_text() == "2"
    assert os.readlink(root / "abs") == str(outside)  # kept as written: it means the rootfs's own path
    assert not (root / "abs2").is_symlink() and (root / "abs2").read_text() == "replaced"


def test_hard_links_must_name_a_file_inside_the_rootfs(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    root = unpacked(tmp_path, tar_layer([file("a", "in"), hardlink("b", "a")]))
    assert os.path.samefile(root / "a", root / "b")
    for i, hostile in enumerate(([hardlink("h", str(secret))],
                    [symlink("s", str(secret)), hardlink("h", "s")],
                    [symlink("d", str(tmp_path)), hardlink("h", "d/secret")],
                    [hardlink("h", "../secret")])):
        with pytest.raises(oci.ImageError):
            unpacked(tmp_path / str(i), tar_layer(hostile))
    assert os.stat(secret).st_nlink == 1


def test_device_nodes_are_skipped_and_setuid_bits_dropped(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    stats = oci.unpack_layer(io.BytesIO(tar_layer([device("null"), file("suid", "x", 0o4755),
                                                   directory("sgid", 0o2775)])), root)
    assert stats.skipped == ["null"] and not os.path.lexists(root / "null")
    assert stat.S_IMODE((root / "suid").stat().st_mode) == 0o755
    assert not (root / "sgid").stat().st_mode & stat.S_ISGID


def test_the_python_image_runs_its_interpreter_with_awslambdaric_under_bwrap(tmp_path: Path) -> None:
    try:
        bwrap = tools.bwrap_path()
    except tools.ToolMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"bwrap is required in CI: {exc}")
        pytest.skip(str(exc))
    layout = images.python_image(tmp_path / "img", {"app.py": "def handler(event, context):\n    return event\n"})
    digest, manifest = layout.manifest()
    config = oci.ImageConfig.parse(layout.blob(manifest.config.digest))
    assert config.argv() == ["/opt/python/bin/python3", "-m", "awslambdaric", "app.handler"]
    started = time.perf_counter()
    root = oci.unpack(digest, [layout.blob_path(d.digest) for d in manifest.layers], tmp_path / "cache")
    print(f"\nunpack of the Python image: {time.perf_counter() - started:.2f} s ({len(manifest.layers)} layers)")
    out = subprocess.run([str(bwrap), "--unshare-user", "--uid", "65534", "--gid", "65534", "--bind", str(root), "/",
                          "--proc", "/proc", "--dev", "/dev", "--chdir", config.working_dir, "--clearenv",
                          "--setenv", "PATH", config.environment["PATH"], "python3", "-c",
                          "import awslambdaric.bootstrap, json, ssl, app; print(json.dumps(app.handler([1], None)))"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1]"


def test_an_image_of_one_static_binary_runs_under_bwrap(tmp_path: Path) -> None:
    try:
        bwrap = tools.bwrap_path()
    except tools.ToolMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"bwrap is required in CI: {exc}")
        pytest.skip(str(exc))
    binary = images.busybox_binary()  # static; it runs the applet its first argument names
    layout = images.binary_image(tmp_path / "img", binary, ["sh", "-c", "exit 3"])
    digest, manifest = layout.manifest()
    config = oci.ImageConfig.parse(layout.blob(manifest.config.digest))
    root = oci.unpack(digest, [layout.blob_path(d.digest) for d in manifest.layers], tmp_path / "cache")
    assert sorted(os.listdir(root)) == [binary.name]
    out = subprocess.run([str(bwrap), "--unshare-user", "--uid", "0", "--bind", str(root), "/", "--proc", "/proc",
                          "--dev", "/dev", *config.argv()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                     | st.sampled_from([DIGEST, oci.OCI_MANIFEST, oci.OCI_INDEX, oci.DOCKER_LIST, 2]),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "manifests",
                                                        "digest", "size", "platform", "annotations", "Env", "Cmd",
                                                        "Entrypoint", "WorkingDir", "User"]), inner, max_size=6),
                     max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_any_json_is_a_manifest_or_config_or_an_image_error(document: object) -> None:
    raw = json.dumps(document).encode()
    for parse in (oci.parse_manifest, oci.ImageConfig.parse):
        try:
            parse(raw)  # type: ignore[operator]
        except oci.ImageError:
            pass


_PARTS = st.sampled_from(["a", "b", "..", ".", "", "etc", ".wh.a", ".wh..wh..opq", ".wh..", ".wh...", ".wh."])
_PATHS = st.lists(_PARTS, min_size=1, max_size=4).map("/".join) | st.sampled_from(["/a", "/etc/x", "a/../../x"])


def _entries(outside: str) -> st.SearchStrategy[list[images.Entry]]:
    targets = _PATHS | st.sampled_from([outside, outside + "/f", "/", "../../..", "../" * 8 + outside.lstrip("/")])
    entry = st.one_of(
        st.builds(lambda p: file(p, "x"), _PATHS), st.builds(directory, _PATHS),
        st.builds(symlink, _PATHS, targets), st.builds(hardlink, _PATHS, targets), st.builds(device, _PATHS))
    return st.lists(entry, min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_no_layer_writes_outside_its_rootfs(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    base = tmp_path_factory.mktemp("hostile")
    outside = base / "outside"
    outside.mkdir()
    (outside / "f").write_text("host")
    layers = [tar_layer(data.draw(_entries(str(outside)))) for _ in range(data.draw(st.integers(1, 2)))]
    root = base / "rootfs"
    root.mkdir()
    for layer in layers:
        try:
            oci.unpack_layer(io.BytesIO(layer), root)
        except oci.ImageError:
            break
    assert sorted(os.listdir(base)) == ["outside", "rootfs"]
    assert os.listdir(outside) == ["f"] and (outside / "f").read_text() == "host"
    assert os.stat(outside / "f").st_nlink == 1
