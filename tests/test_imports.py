"""Import weight and the public API: the engine's inference side never loads Lightning."""

import subprocess
import sys

import pytest

from tests.ceiling import CEILING_S

INFERENCE_MODULES = ["fm_engine.inverse", "fm_engine.checkpoints", "fm_engine.predict", "fm_engine.cards"]


def run_python(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=CEILING_S)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", INFERENCE_MODULES)
def test_inference_modules_do_not_load_lightning(module):
    run_python(f"import sys, {module}; loaded = [m for m in ('lightning', 'pytorch_lightning', 'fm_engine.training') "
               "if m in sys.modules]; assert not loaded, loaded")  # fmt: skip


def test_the_public_api_is_imported_on_first_use_as_the_real_objects():
    run_python(
        "import inspect, sys, fm_engine\n"
        "assert 'fm_engine.checkpoints' not in sys.modules and 'torch' not in sys.modules\n"
        "parameters = inspect.signature(fm_engine.load_checkpoint).parameters\n"
        "assert list(parameters) == ['path', 'map_location'], parameters\n"
        "import fm_engine.checkpoints as checkpoints\n"
        "assert fm_engine.load_checkpoint is checkpoints.load_checkpoint\n"
        "assert fm_engine.LoadedCheckpoint is checkpoints.LoadedCheckpoint\n"
        "assert set(fm_engine.__all__) <= set(dir(fm_engine))\n"
        "try:\n    fm_engine.nothing\nexcept AttributeError as error:\n    assert 'nothing' in str(error)\n"
        "else:\n    raise AssertionError('fm_engine.nothing exists')\n"
    )
