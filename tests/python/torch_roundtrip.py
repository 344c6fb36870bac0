#!/usr/bin/python3
"""Python's side of the torch.save round-trip tests of tests/io (test_torch_file.cpp, test_rotation_set.cpp).

    torch_roundtrip.py save-tensors DIR        Python writes tensors (<name>.pt) and their values (<name>.expect)
    torch_roundtrip.py check-tensors DIR       checks our <name>.pt against <name>.expect with
                                               torch.load(weights_only=True) and torch.load; then torch.saves the
                                               same tensor, built from the .expect values, as py_<name>.pt
    torch_roundtrip.py pickle-cases DIR        pickle.dumps of fixed objects: <case>.p2 (protocol 2) and
                                               <case>.p4 (protocol 4)
    torch_roundtrip.py dump-rotation PATH OUT [PATH OUT ...]
                                               checks each rotation file's exact schema (weights_only=True)
                                               and dumps it as text for the C++ side to compare
    torch_roundtrip.py save-rotations DIR      Python-written rotation files, valid and malformed
    torch_roundtrip.py save-formula-rotation PATH FORMAT HEADS D LAYERS OBJECTIVE [PATH ...]
                                               torch.save of rotation dicts built from the formula below

.expect format: line 1 dtype name, line 2 the shape (space separated, empty for a 0-d tensor), then one value
per line as float.hex(). Formula rotation files use
    rotation[l][h][i][j] = ((7 l + 3 h + 5 i + j) % 11 - 5) / 8,   eigenvalues[l][h][i] = l + h / 2 + i / 8
(exact in float32), the same formula the C++ tests use. Exit 0 on success, 1 with a message otherwise.
Runs with the Debian python (/usr/bin/python3, torch 1.13).
"""
import collections
import os
import pickle
import sys

import torch

DTYPES = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float64": torch.float64, "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def write_expect(path, tensor):
    values = tensor.contiguous().reshape(-1).double().tolist()
    with open(path, "w") as out:
        out.write(DTYPE_NAMES[tensor.dtype] + "\n")
        out.write(" ".join(str(s) for s in tensor.shape) + "\n")
        for v in values:
            out.write(float(v).hex() + "\n")


def read_expect(path):
    with open(path) as f:
        lines = f.read().split("\n")
    dtype = DTYPES[lines[0]]
    shape = [int(s) for s in lines[1].split()]
    values = [float.fromhex(v) for v in lines[2:] if v]
    return dtype, shape, values


def pattern(numel, scale, modulus, dtype):
    values = [((i * 7) % modulus - modulus // 2) * scale for i in range(numel)]
    return torch.tensor(values, dtype=torch.float64).to(dtype)


def save_tensors(directory):
    g = torch.Generator().manual_seed(1234)
    tensors = {
        "bf16": pattern(60, 0.25, 17, torch.bfloat16).reshape(5, 3, 4),
        "fp16": pattern(112, 1 / 16, 31, torch.float16).reshape(7, 2, 8),
        "fp32": torch.randn(3, 4, generator=g),
        "fp64": torch.randn(4, generator=g, dtype=torch.float64),
        "int32": torch.tensor([6, 100, 2048, 7], dtype=torch.int32),
        "int64": torch.tensor([[1, -2, 3], [2**40, -(2**40), 0]], dtype=torch.int64),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "bf16_big": pattern(20000 * 8, 0.5, 13, torch.bfloat16).reshape(20000, 8),
    }
    base = torch.arange(60, dtype=torch.float32) * 0.5
    tensors["view_offset"] = base[12:36].view(4, 6)  # torch.save keeps all 60 elements, offset 12
    grad = torch.ones(2, 2, requires_grad=True)
    tensors["requires_grad"] = grad
    for name, tensor in tensors.items():
        torch.save(tensor, os.path.join(directory, name + ".pt"))
        write_expect(os.path.join(directory, name + ".expect"), tensor.detach())
    # Same tensor through pickle protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, ...).
    torch.save(tensors["bf16"], os.path.join(directory, "proto4.pt"), pickle_protocol=4)
    write_expect(os.path.join(directory, "proto4.expect"), tensors["bf16"])
    # Not C-contiguous: must be refused.
    torch.save(base.view(6, 10).t(), os.path.join(directory, "transposed.pt"))
    # A one-element dict (LibTorch's pickle_load cannot read these).
    torch.save({"only": tensors["fp32"]}, os.path.join(directory, "dict1.pt"))
    write_expect(os.path.join(directory, "dict1.expect"), tensors["fp32"])


def check_tensors(directory):
    names = sorted(f[:-len(".expect")] for f in os.listdir(directory) if f.endswith(".expect"))
    if not names:
        fail(f"no .expect files in {directory}")
    for name in names:
        dtype, shape, values = read_expect(os.path.join(directory, name + ".expect"))
        path = os.path.join(directory, name + ".pt")
        for weights_only in (True, False):
            tensor = torch.load(path, weights_only=weights_only)
            if not isinstance(tensor, torch.Tensor):
                fail(f"{path}: loaded a {type(tensor).__name__}")
            if tensor.dtype != dtype or list(tensor.shape) != shape:
                fail(f"{path}: {tensor.dtype} {list(tensor.shape)}, expected {dtype} {shape}")
            if not tensor.is_contiguous() or tensor.requires_grad:
                fail(f"{path}: not a plain contiguous tensor")
            got = tensor.reshape(-1).double().tolist()
            if got != values:
                fail(f"{path}: values differ")
        expected = torch.tensor(values, dtype=torch.float64).to(dtype).reshape(shape)
        torch.save(expected, os.path.join(directory, "py_" + name + ".pt"))
    print(f"checked {len(names)} tensors")


def pickle_cases():
    many_strings = [f"s{i}" for i in range(300)]
    many_strings += [many_strings[0], many_strings[299]]  # BINGET and LONG_BINGET of the same objects
    shared = tuple(range(5))  # built at run time: no other constant tuple can be merged with it
    return {
        "scalars": {"a": 1, "b": -1, "c": 255, "d": 256, "e": 65535, "f": 65536, "g": -2**31, "h": 2**31 - 1,
                    "i": 2**31, "j": -2**31 - 1, "k": 2**40, "l": -2**40, "m": 2**63 - 1, "n": -2**63,
                    "o": 128, "p": -128, "q": 2**47, "r": -(2**47), "s": 2.5, "t": -0.1, "u": None,
                    "v": True, "w": False, "x": "a", "y": "é", "z": ""},
        "containers": {"tuples": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)), "list": [1, [2, [3]]],
                       "one": {"k": 1}, "empty": {}, "empty_list": [], "shared": [shared, shared]},
        "batches": {"ints": list(range(1001)), "dict": {i: i for i in range(2001)}, "list1": [5],
                    "list2000": list(range(2000)), "dict1000": {i: -i for i in range(1000)}, "dict2": {1: 2, 3: 4},
                    "ordered1001": collections.OrderedDict((i, i) for i in range(1001)),
                    "ordered1": collections.OrderedDict([(1, 1)])},
        "memo": many_strings,
        "ordered": collections.OrderedDict([("x", 1), ("y", 2)]),
        "int_keys": {0: "zero", 1: "one", 35: "x"},
    }


def write_pickle_cases(directory):
    for name, value in pickle_cases().items():
        with open(os.path.join(directory, name + ".p2"), "wb") as f:
            f.write(pickle.dumps(value, protocol=2))
        with open(os.path.join(directory, name + ".p4"), "wb") as f:
            f.write(pickle.dumps(value, protocol=4))


def dump_rotation(path, out_path):
    data = torch.load(path, weights_only=True)
    plain = torch.load(path)
    if not isinstance(data, dict) or list(data.keys()) != ["format_version", "objective", "source_grouping", "layers"]:
        fail(f"{path}: top-level keys {list(data.keys()) if isinstance(data, dict) else type(data)}")
    version = data["format_version"]
    if type(version) is not int or version not in (1, 2):
        fail(f"{path}: format_version {version!r}")
    if type(data["objective"]) is not str or type(data["source_grouping"]) is not str:
        fail(f"{path}: objective/source_grouping are not str")
    if data["source_grouping"] != ("layer" if version == 1 else "per_kv_head"):
        fail(f"{path}: source_grouping {data['source_grouping']!r} for format {version}")
    layers = data["layers"]
    if type(layers) is not dict or not layers:
        fail(f"{path}: layers is {type(layers).__name__}")
    if list(layers.keys()) != sorted(layers.keys()):
        fail(f"{path}: layers not ascending")
    lines = [f"format_version {version}", f"objective {data['objective']}", f"source_grouping {data['source_grouping']}"]
    for key, layer in layers.items():
        if type(key) is not int:
            fail(f"{path}: layer key {key!r} is not an int")
        if type(layer) is not dict or list(layer.keys()) != ["layer_id", "rotation", "eigenvalues"]:
            fail(f"{path}: layer {key} keys {list(layer.keys())}")
        if type(layer["layer_id"]) is not int or layer["layer_id"] != key:
            fail(f"{path}: layer {key} layer_id {layer['layer_id']!r}")
        rotation, eigenvalues = layer["rotation"], layer["eigenvalues"]
        for name, tensor in (("rotation", rotation), ("eigenvalues", eigenvalues)):
            if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32 or not tensor.is_contiguous():
                fail(f"{path}: layer {key} {name} is not a contiguous float32 tensor")
            if tensor.storage_offset() != 0 or tensor.requires_grad:
                fail(f"{path}: layer {key} {name} is a view or requires grad")
            if not torch.equal(tensor, plain["layers"][key][name]):
                fail(f"{path}: layer {key} {name} differs between weights_only and plain torch.load")
        d = rotation.shape[-1]
        heads = 1 if version == 1 else rotation.shape[0]
        expected_rotation = [d, d] if version == 1 else [heads, d, d]
        expected_eigen = [d] if version == 1 else [heads, d]
        if list(rotation.shape) != expected_rotation or list(eigenvalues.shape) != expected_eigen:
            fail(f"{path}: layer {key} shapes {list(rotation.shape)} {list(eigenvalues.shape)}")
        lines.append(f"layer {key} {heads} {d}")
        lines.append(" ".join(float(v).hex() for v in rotation.reshape(-1).tolist()))
        lines.append(" ".join(float(v).hex() for v in eigenvalues.reshape(-1).tolist()))
    with open(out_path, "w") as out:
        out.write("\n".join(lines) + "\n")


def formula_layer(layer, heads, d, per_head, dtype=torch.float32):
    rotation = torch.tensor([[[((7 * layer + 3 * h + 5 * i + j) % 11 - 5) / 8 for j in range(d)] for i in range(d)]
                             for h in range(heads)], dtype=dtype)
    eigenvalues = torch.tensor([[layer + h / 2 + i / 8 for i in range(d)] for h in range(heads)], dtype=dtype)
    if not per_head:
        rotation, eigenvalues = rotation[0].clone(), eigenvalues[0].clone()
    return rotation, eigenvalues


def formula_rotation(version, heads, d, num_layers, objective, key=int, dtype=torch.float32):
    layers = {}
    for layer in range(num_layers):
        rotation, eigenvalues = formula_layer(layer, heads, d, version == 2, dtype)
        layers[key(layer)] = {"layer_id": layer, "rotation": rotation, "eigenvalues": eigenvalues}
    return {"format_version": version, "objective": objective,
            "source_grouping": "layer" if version == 1 else "per_kv_head", "layers": layers}


def save_rotations(directory):
    def save(name, value):
        torch.save(value, os.path.join(directory, name + ".pt"))

    save("str_keys_fp64", formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr", key=str, dtype=torch.float64))
    save("per_head", formula_rotation(2, 2, 4, 3, "sst_r_h_pbr"))
    # Malformed ones: each breaks one rule.
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["layers"][1]["rotation"] = torch.zeros(8, 4)
    save("bad_nonsquare", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    del bad["layers"][2]["rotation"]
    save("bad_missing_rotation", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["layers"][0]["rotation"] = bad["layers"][0]["rotation"].to(torch.bfloat16)
    save("bad_bf16", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["layers"][1]["eigenvalues"] = torch.zeros(7)
    save("bad_eigen_shape", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["layers"] = list(bad["layers"].values())
    save("bad_layers_list", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["format_version"] = 3
    save("bad_version", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["layers"][2]["rotation"], bad["layers"][2]["eigenvalues"] = formula_layer(2, 1, 4, False)
    save("bad_inconsistent", bad)
    save("bad_root_tensor", torch.zeros(3))
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["layers"]["abc"] = bad["layers"].pop(1)
    save("bad_layer_key", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["layers"][0]["rotation"] = bad["layers"][0]["rotation"].t()
    save("bad_transposed", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["source_grouping"] = "per_kv_head"
    save("bad_grouping", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    del bad["objective"]
    save("bad_no_objective", bad)
    bad = formula_rotation(1, 1, 8, 3, "qqt_r_h_pbr")
    bad["layers"][1]["layer_id"] = 5
    save("bad_layer_id", bad)


def main(argv):
    if len(argv) < 2:
        fail(__doc__)
    command, args = argv[1], argv[2:]
    if command == "save-tensors" and len(args) == 1:
        save_tensors(args[0])
    elif command == "check-tensors" and len(args) == 1:
        check_tensors(args[0])
    elif command == "pickle-cases" and len(args) == 1:
        write_pickle_cases(args[0])
    elif command == "dump-rotation" and args and len(args) % 2 == 0:
        for i in range(0, len(args), 2):
            dump_rotation(args[i], args[i + 1])
    elif command == "save-rotations" and len(args) == 1:
        save_rotations(args[0])
    elif command == "save-formula-rotation" and args and len(args) % 6 == 0:
        for i in range(0, len(args), 6):
            path, version, heads, d, layers, objective = args[i:i + 6]
            torch.save(formula_rotation(int(version), int(heads), int(d), int(layers), objective), path)
    else:
        fail(f"bad command line {argv[1:]}")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except SystemExit:
        raise
    except BaseException as error:  # one line, and a non-zero exit the C++ test sees
        print(f"FAIL: {type(error).__name__}: {error}")
        sys.exit(1)
