"""Framework-free code shared by the backends (nin_torch, nin_mxnet, nin_tf), in four layers:

- the core, this package's own modules: the architecture as data (`spec`), its arithmetic
  (`shapes`, `resources`), the backend registry and contract (`backends`, `api`), the
  Fashion-MNIST reader (`data`), the training loop (`training`, `distributed`), the weight
  interchange and ONNX formats (`weights`, `onnx`), the NumPy reference (`reference`, `trace`)
  and table formatting (`report`);
- `platform`: CPU threads, memory policy, atomic writes, the worker launcher, the machine;
- `tools`: what runs whole jobs (run folders, checkpoints, compare, sweep, exercises, bench,
  plots, `nin check`);
- `cli`: the ``nin`` command.

Backends import only the core and the platform; the core never imports the tools or the
CLI; nothing here imports a deep-learning framework (tests/test_layers.py checks all three).

Core layer.
"""

from .spec import Spec, alexnet_spec, make_spec, nin_spec

__all__ = ["Spec", "alexnet_spec", "make_spec", "nin_spec"]
