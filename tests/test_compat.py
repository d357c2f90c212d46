import subprocess
import sys


def test_timm_imports_and_builds_a_model():
    # In a fresh interpreter: the compatibility step must run before torchvision is imported.
    code = (
        "import torch\n"
        "from musetag._compat import import_timm\n"
        "timm = import_timm()\n"
        "import torchvision\n"
        "m = timm.create_model('efficientnet_b0', pretrained=False, num_classes=3, in_chans=1)\n"
        "out = m(torch.randn(2, 1, 64, 96))\n"
        "assert out.shape == (2, 3), out.shape\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_compat_is_idempotent():
    from musetag._compat import ensure_torchvision

    first = ensure_torchvision()
    assert ensure_torchvision() == first
