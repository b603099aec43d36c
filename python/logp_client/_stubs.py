"""The protobuf and gRPC modules of proto/logp/v1, found or generated.

Generated stubs are never committed. They come, in this order, from:
  1. an importable ``logp.v1`` package (e.g. the build's ``build/python`` on PYTHONPATH, which
     the CMake target ``logp_python_stubs`` writes);
  2. the directory named by ``$LOGP_PYTHON_STUBS``;
  3. ``build/python`` of the source tree this package sits in, if it holds them;
  4. a fresh temporary directory, generated now with ``protoc`` and Debian's
     ``grpc_python_plugin`` from the source tree's ``proto/`` (removed at exit).
"""
import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

PROTOS = ("records", "dataset_service", "job_service", "conditional", "model_service",
          "compare")
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate(out_dir, proto_dir=None, protoc="protoc", plugin=None):
    """Writes logp/v1/*_pb2.py and *_pb2_grpc.py for the protos in proto_dir into out_dir."""
    proto_dir = proto_dir or os.path.join(_SOURCE_ROOT, "proto")
    if not os.path.isfile(os.path.join(proto_dir, "logp", "v1", "records.proto")):
        raise ImportError(f"no generated logp.v1 stubs and no protos in {proto_dir} to make them "
                          "from: put build/python on PYTHONPATH or set LOGP_PYTHON_STUBS")
    plugin = plugin or shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run(
        [protoc, f"--proto_path={proto_dir}", f"--python_out={out_dir}",
         f"--grpc_python_out={out_dir}", f"--plugin=protoc-gen-grpc_python={plugin}"]
        + [os.path.join(proto_dir, "logp", "v1", p + ".proto") for p in PROTOS],
        check=True)


def _has_stubs(directory):
    return os.path.isfile(os.path.join(directory, "logp", "v1", "model_service_pb2_grpc.py"))


def _import_all():
    return {name: importlib.import_module(f"logp.v1.{name}")
            for p in PROTOS for name in (p + "_pb2", p + "_pb2_grpc")}


def load():
    """Returns {module name: module} for every generated module."""
    try:
        return _import_all()
    except ImportError:
        pass
    directory = os.environ.get("LOGP_PYTHON_STUBS")
    if not directory or not _has_stubs(directory):
        directory = os.path.join(_SOURCE_ROOT, "build", "python")
    if not _has_stubs(directory):
        directory = tempfile.mkdtemp(prefix="logp-stubs.")
        atexit.register(shutil.rmtree, directory, True)
        generate(directory)
    sys.path.insert(0, directory)
    # A namespace package `logp` found before the path was added would hide the new one.
    for name in [n for n in sys.modules if n == "logp" or n.startswith("logp.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return _import_all()

