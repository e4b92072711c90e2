"""Training tests run tiny models on the CPU; one intra-op thread keeps them fast on a shared 2-core box."""
import pytest


@pytest.fixture(autouse=True)
def _single_thread():
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
