"""`make test-images`: the images `make image` built survive a registry round trip byte for byte.

Starts Debian's `docker-registry` on 127.0.0.1 (a free port, storage and config in a temporary
directory), pushes both images with podman (`--tls-verify=false`: a plain-HTTP registry on loopback),
then reads them back over the registry's HTTP API as Istio's agent would — manifest, then layer blobs,
each checked against its digest — and extracts `/plugin.wasm` from the filter image and `/fledge` from
the controller image. Their sha256 must equal the built files'.

usage: image_roundtrip.py FILTER_IMAGE FILTER_WASM CONTROLLER_IMAGE CONTROLLER_BIN
"""

import hashlib
import io
import json
import pathlib
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read(), r.headers


def start_registry(tmp):
    port = free_port()
    config = tmp / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    log = open(tmp / "registry.log", "w")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            get(f"http://127.0.0.1:{port}/v2/")
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"registry did not start:\n{(tmp / 'registry.log').read_text()}")
            time.sleep(0.05)


def pull_file(base, repo, tag, path):
    """Reads `path` out of image repo:tag through the registry API (later layers win)."""
    raw, headers = get(f"{base}/v2/{repo}/manifests/{tag}", MANIFEST_TYPES)
    manifest = json.loads(raw)
    found = None
    for layer in manifest["layers"]:
        blob, _ = get(f"{base}/v2/{repo}/blobs/{layer['digest']}")
        assert "sha256:" + sha256(blob) == layer["digest"], f"layer {layer['digest']} does not match its digest"
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == path.lstrip("/") and member.isfile():
                    found = tar.extractfile(member).read()
    if found is None:
        raise SystemExit(f"{repo}:{tag} has no {path} (layers: {[l['digest'] for l in manifest['layers']]})")
    return found, manifest


def main(filter_image, filter_wasm, controller_image, controller_bin):
    with tempfile.TemporaryDirectory() as t:
        tmp = pathlib.Path(t)
        proc, port = start_registry(tmp)
        try:
            base = f"http://127.0.0.1:{port}"
            checks = [(filter_image, "/plugin.wasm", filter_wasm), (controller_image, "/fledge", controller_bin)]
            for image, path, built in checks:
                name, tag = image.rsplit(":", 1)
                remote = f"127.0.0.1:{port}/{name}:{tag}"
                subprocess.run(["podman", "push", "--tls-verify=false", "--quiet", image, remote], check=True)
                data, manifest = pull_file(base, name, tag, path)
                want = sha256(pathlib.Path(built).read_bytes())
                got = sha256(data)
                if got != want:
                    raise SystemExit(f"{image}{path}: sha256 {got}, built file {want}")
                print(f"ok   {image} pushed to {remote}, pulled back: {path} sha256 {got} = {built} "
                      f"({manifest.get('mediaType', 'docker v2')}, {len(manifest['layers'])} layer(s))")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print("image round trip: 2 passed, 0 failed")


def check_static(path):
    """Exits non-zero unless `path` is an ELF executable without an interpreter (PT_INTERP), i.e. one that
    runs in a `FROM scratch` image with no libc to load."""
    import struct
    b = pathlib.Path(path).read_bytes()
    if b[:4] != b"\x7fELF" or b[4] != 2:
        raise SystemExit(f"{path} is not a 64-bit ELF file")
    phoff, = struct.unpack_from("<Q", b, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", b, 0x36)
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", b, phoff + i * phentsize)
        if p_type == 3:
            raise SystemExit(f"{path} is dynamically linked (has an ELF interpreter)")
    print(f"ok   {path} is statically linked")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-static":
        check_static(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
