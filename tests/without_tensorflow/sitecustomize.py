"""On PYTHONPATH, makes a Python without TensorFlow or Keras: importing either fails, as in the CPU
image. The tests serve with it (tests/conftest.py) to prove that serving needs neither."""

import importlib.abc
import sys

ABSENT = ("tensorflow", "keras", "tf_keras")


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r} (this environment has no TensorFlow)", name=name)
        return None


sys.meta_path.insert(0, Absent())
