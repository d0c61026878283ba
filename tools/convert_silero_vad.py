#!/usr/bin/env python3
"""Converts Silero VAD v6 (PyPI `silero-vad`, MIT licence) into u2serve's VAD model directory:

  vad.json          {"format": "u2serve-vad", "type": "silero_vad", "sample_rate": 16000,
                     "window": 512, "context": 64, "version": "6.2.3"}
  vad.safetensors   the 16 kHz network's weights, float32, under their ONNX names:
                     model.stft.forward_basis_buffer   (258, 1, 256)  STFT as a convolution (real | imag)
                     model.encoder.{0..3}.reparam_conv.{weight,bias}   Conv1d k=3, pad 1, strides 1,2,2,1
                     model.decoder.rnn.{weight_ih,weight_hh,bias_ih,bias_hh}   LSTMCell(128, 128), gates i,f,g,o
                     model.decoder.decoder.2.{weight,bias}   Conv1d(128 -> 1, k=1)

The weights come from the initializers of the wheel's `silero_vad_16k_op15.onnx` (the ONNX model
silero's own runtime uses); the wheel's safetensors file holds different weights and is not used.
src/u2/vad/silero_vad.h runs the network; tests/python/test_vad.py checks it against onnxruntime
running silero's `silero_vad.onnx`.

Usage: .venv/bin/python tools/convert_silero_vad.py --out models/silero_vad
       (needs `pip install --no-deps silero-vad onnx`, which scripts/setup.sh does)
"""
import argparse
import json
import os
import sys

import numpy as np

EXPECTED = {
    "model.stft.forward_basis_buffer": (258, 1, 256),
    "model.encoder.0.reparam_conv.weight": (128, 129, 3),
    "model.encoder.0.reparam_conv.bias": (128,),
    "model.encoder.1.reparam_conv.weight": (64, 128, 3),
    "model.encoder.1.reparam_conv.bias": (64,),
    "model.encoder.2.reparam_conv.weight": (64, 64, 3),
    "model.encoder.2.reparam_conv.bias": (64,),
    "model.encoder.3.reparam_conv.weight": (128, 64, 3),
    "model.encoder.3.reparam_conv.bias": (128,),
    "model.decoder.rnn.weight_ih": (512, 128),
    "model.decoder.rnn.weight_hh": (512, 128),
    "model.decoder.rnn.bias_ih": (512,),
    "model.decoder.rnn.bias_hh": (512,),
    "model.decoder.decoder.2.weight": (1, 128, 1),
    "model.decoder.decoder.2.bias": (1,),
}


def silero_onnx_path(name="silero_vad_16k_op15.onnx"):
    import silero_vad
    path = os.path.join(os.path.dirname(silero_vad.__file__), "data", name)
    if not os.path.exists(path):
        sys.exit(f"{path} not found: install PyPI silero-vad (pip install --no-deps silero-vad)")
    return path


def read_weights(onnx_path):
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(onnx_path).graph
    weights = {init.name: numpy_helper.to_array(init).astype(np.float32) for init in graph.initializer}
    for name, shape in EXPECTED.items():
        if name not in weights:
            sys.exit(f"{onnx_path}: no initializer {name}: not the Silero VAD v6 16 kHz network")
        if weights[name].shape != shape:
            sys.exit(f"{onnx_path}: {name} has shape {weights[name].shape}, expected {shape}")
    return {name: weights[name] for name in EXPECTED}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", default="", help="the 16 kHz ONNX model (default: the silero-vad wheel's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from safetensors.numpy import save_file
    import importlib.metadata
    weights = read_weights(args.onnx or silero_onnx_path())
    os.makedirs(args.out, exist_ok=True)
    save_file(weights, os.path.join(args.out, "vad.safetensors"))
    try:
        version = importlib.metadata.version("silero-vad")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    config = dict(format="u2serve-vad", type="silero_vad", sample_rate=16000, window=512, context=64,
                  version=version, licence="MIT (github.com/snakers4/silero-vad)")
    with open(os.path.join(args.out, "vad.json"), "w") as f:
        json.dump(config, f, indent=1)
    print(f"wrote {args.out}/vad.safetensors ({sum(w.size for w in weights.values())} parameters) and vad.json")


if __name__ == "__main__":
    main()
