"""One local Ray cluster (2 CPUs, bound to 127.0.0.1) shared by every test of this folder, and a few dozen test
images made from the packaged VOC samples."""

from __future__ import annotations

import os

import numpy as np
import pytest

from zsseg_rt.assets import sample_images


def pytest_collection_modifyitems(config, items):
    """Every test of this folder in one pytest-xdist group (tools/run_tests.sh runs ``--dist loadgroup``): one worker
    starts the session's Ray cluster and server, not each worker its own on a 2-core machine."""
    here = os.path.dirname(__file__)
    for item in items:
        if os.path.dirname(str(item.path)) == here:
            item.add_marker(pytest.mark.xdist_group("ray_cluster"))


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster for the session: 2 CPUs, every service on 127.0.0.1, no dashboard."""
    from zsseg_rt.scale import LOOPBACK_ENV, init_ray

    os.environ[LOOPBACK_ENV] = "0"  # before the first import of ray: every service on 127.0.0.1
    ray = pytest.importorskip("ray", reason="the scale tests need the 'scale' extra (ray[data,serve])")
    os.environ.pop("RAY_ADDRESS", None)
    init_ray(num_cpus=2)
    assert [node["NodeManagerAddress"] for node in ray.nodes()] == ["127.0.0.1"]
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """24 small JPEG/PNG images (crops and flips of the 4 VOC samples, 40-120 px) in two sub-folders."""
    import cv2

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    count = 0
    for path in sample_images():
        photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
        for k in range(6):
            h, w = (int(v) for v in rng.integers(40, 121, size=2))
            y, x = int(rng.integers(0, photo.shape[0] - h)), int(rng.integers(0, photo.shape[1] - w))
            crop = photo[y : y + h, x : x + w]
            crop = crop[:, ::-1] if k % 2 else crop
            sub = root / ("a" if count % 2 else "b")
            sub.mkdir(exist_ok=True)
            ext = ".png" if k == 5 else ".jpg"
            cv2.imwrite(str(sub / f"{path.stem}_{k}{ext}"), np.ascontiguousarray(crop))
            count += 1
    return str(root)


SERVER_MAX_PIXELS = 2_000_000  # the test server's pixel limit (its body limit follows: 3 bytes/pixel + 1 MiB)
SERVER_MAX_QUEUED = 4  # the test server admits 8 + 4 POST /segment requests at once (its replica's bound)


@pytest.fixture(scope="session")
def server(ray_cluster, tiny_bundle):
    """``zsseg serve``'s deployment on the shared cluster, HTTP on a free 127.0.0.1 port, with a 2 MP pixel limit
    (so over-limit bodies are small to send) and a bound of 12 requests (so a burst over it is small to send);
    yields its base URL; shut down at the end of the session."""
    import socket

    from ray import serve
    from support import VOCAB10

    from zsseg_rt.scale.serve import run_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_server(
        tiny_bundle,
        VOCAB10,
        host="127.0.0.1",
        port=port,
        cpus_per_replica=0.5,
        max_batch_size=8,
        batch_wait_s=0.05,
        backend="onnxruntime",
        max_pixels=SERVER_MAX_PIXELS,
        max_queued=SERVER_MAX_QUEUED,
    )
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="session")
def photos():
    """(encoded PNG bytes, decoded BGR) of the 4 packaged samples, shrunk to 160 px wide to keep the tests quick."""
    import cv2

    out = []
    for path in sample_images():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        image = cv2.resize(image, (160, int(round(160 * image.shape[0] / image.shape[1]))))
        ok, data = cv2.imencode(".png", image)
        assert ok
        out.append((data.tobytes(), image))
    return out
