#!/usr/bin/env python3
"""Writes the weight-file fixtures of tests/test_safetensors.c and tests/test_torchbin.c
into tests/data/ (next to this script). Everything is made by torch and the reference
`safetensors` package, never by qbert:

    /usr/bin/python3 tests/data/make_io_fixtures.py     (needs torch >= 1.6 and safetensors)

Committed files were made with Debian's torch 1.13.1 and safetensors 0.8.0; running the script
again gives byte-identical files.

io_values.safetensors   one tensor of every dtype qbert reads (F64 F32 F16 BF16 I64 I32 I8 U8,
                        ranks 0 to 4, one empty), element i of tensor k given by the formulas in
                        value_f() / value_i() below (the C test recomputes them), and metadata.
io_torch.bin            torch.save of a module state dict (OrderedDict with _metadata) plus
                        f16, bf16, f64, int64/int32/uint8/int8 tensors, a tied pair sharing one
                        storage, a view at a storage offset, transposed / permuted (strided)
                        tensors, a 0-d scalar, an empty tensor and an nn.Parameter.
io_torch_ref.safetensors  the same tensors, contiguous, floats as F32: the reference values.
io_torch_nested.bin     {"epoch": 3, "state_dict": {...}} saved with pickle protocol 4
                        (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL); values as in the ref.
io_torch_model.bin      {"model": {...}}, protocol 2.
io_torch_crafted.bin    a hand-built archive with a "little" byteorder entry: {"w": [1, 2, 3]}.
io_torch_zip64.bin      the same state dict in a zip64 archive (every field in its 64-bit form).
io_bad_*.bin            archives that must be rejected, each for one reason (see BAD below).
"""
import collections
import io
import os
import pickle
import pickletools
import struct
import zipfile
import zlib

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def out(name):
    return os.path.join(HERE, name)


# ---- io_values.safetensors: values the C test can recompute exactly -------------------
# (name, torch dtype, shape); element i of the k-th tensor is value_f(k, i) or value_i(k, i).
VALUES = [
    ("f32", torch.float32, (2, 3)),
    ("f16", torch.float16, (5,)),
    ("bf16", torch.bfloat16, (2, 2, 2)),
    ("f64", torch.float64, (3,)),
    ("i64", torch.int64, (2, 2)),
    ("i32", torch.int32, (4,)),
    ("i8", torch.int8, (3, 1)),
    ("u8", torch.uint8, (6,)),
    ("scalar", torch.float32, ()),
    ("empty", torch.float32, (0, 3)),
    ("rank4", torch.float16, (1, 2, 1, 3)),
]


def value_f(k, i):
    # multiples of 1/8 in [-1.375, 1.375]: exact in f16, bf16, f32 and f64
    return ((i * 7 + k * 3) % 23 - 11) * 0.125


def value_i(k, i, dtype):
    base = (i * 7 + k * 3) % 23 - 11
    if dtype == torch.int64:
        return base * (1 << 33) + i  # needs all 64 bits
    if dtype == torch.int32:
        return base * 65536 + i
    if dtype == torch.uint8:
        return base + 128 + i
    return base  # int8


def make_values():
    tensors = {}
    for k, (name, dtype, shape) in enumerate(VALUES):
        n = 1
        for d in shape:
            n *= d
        if dtype.is_floating_point:
            vals = [value_f(k, i) for i in range(n)]
            t = torch.tensor(vals, dtype=torch.float64).to(dtype)
        else:
            t = torch.tensor([value_i(k, i, dtype) for i in range(n)], dtype=dtype)
        tensors[name] = t.reshape(shape)
    # one metadata key: the safetensors package writes several in hash order (not reproducible)
    save_file(tensors, out("io_values.safetensors"), metadata={"qbert.note": "io fixture \"quoted\" ünïcode"})


# ---- torch.save state dicts -------------------------------------------------------------
def make_state_dict():
    torch.manual_seed(1234)
    sd = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3)).state_dict()
    sd["f16"] = torch.randn(5).half()
    sd["bf16"] = torch.randn(2, 3).bfloat16()
    sd["f64"] = torch.randn(2, 2, dtype=torch.float64)
    sd["position_ids"] = torch.arange(7).unsqueeze(0)  # int64 buffer, as in older BERT checkpoints
    sd["i32"] = torch.tensor([-5, 0, 7, 2**31 - 1], dtype=torch.int32)
    sd["u8"] = torch.tensor([0, 128, 255], dtype=torch.uint8)
    sd["i8"] = torch.tensor([-128, -1, 127], dtype=torch.int8)
    tied = torch.randn(3, 2)
    sd["tied.a"] = tied  # two names, one storage (tied weights)
    sd["tied.b"] = tied
    base = torch.randn(12)
    sd["base"] = base
    sd["view"] = base[3:9].view(2, 3)  # storage offset 3 into base's storage
    sd["transposed"] = torch.randn(3, 4).t()  # (4, 3), stride (1, 4)
    sd["permuted4d"] = torch.randn(2, 3, 4, 2).permute(3, 0, 2, 1)[:, :, 1:3]  # (2, 2, 2, 3), offset 3
    sd["f16_transposed"] = torch.randn(3, 2).half().t()
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.randn(2))  # pickled through _rebuild_parameter
    assert not sd["transposed"].is_contiguous() and not sd["permuted4d"].is_contiguous()
    assert sd["view"].storage_offset() == 3 and sd["permuted4d"].storage_offset() > 0
    return sd


def reference(sd):
    ref = {}
    for k, v in sd.items():
        v = v.detach()
        v = v.float() if v.is_floating_point() else v
        ref[k] = v.contiguous().clone()  # own storage each: save_file refuses shared tensors
    return ref


def make_torch_files():
    sd = make_state_dict()
    torch.save(sd, out("io_torch.bin"))
    save_file(reference(sd), out("io_torch_ref.safetensors"))
    small = collections.OrderedDict((k, sd[k]) for k in ("0.weight", "f16", "tied.a", "tied.b", "view"))
    torch.save({"epoch": 3, "state_dict": small}, out("io_torch_nested.bin"), pickle_protocol=4)
    torch.save({"model": {"bf16": sd["bf16"], "transposed": sd["transposed"]}}, out("io_torch_model.bin"))
    return sd


# ---- hostile and broken archives ----------------------------------------------------------
class FakeStorage:
    """Pickled as the persistent id torch.save writes for a storage."""

    def __init__(self, storage_type, key, numel):
        self.storage_type, self.key, self.numel = storage_type, key, numel


class FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class StoragePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def dumps(obj):
    buf = io.BytesIO()
    StoragePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_archive(name, pkl, storages, byteorder=None):
    """A torch.save-like zip; fixed timestamps so that the output is reproducible."""
    with zipfile.ZipFile(out(name), "w") as z:
        entries = ([("archive/data.pkl", pkl)] if pkl is not None else [])
        entries += [("archive/data/" + k, b) for k, b in storages.items()]
        entries.append(("archive/version", b"3\n"))
        if byteorder is not None:
            entries.append(("archive/byteorder", byteorder))
        for ename, data in entries:
            z.writestr(zipfile.ZipInfo(ename, date_time=(1980, 1, 1, 0, 0, 0)), data)


FOUR_FLOATS = torch.arange(4, dtype=torch.float32).numpy().tobytes()

# os.system("echo pwned") written by hand: GLOBAL 'os system', the argument tuple, REDUCE.
EVIL_PICKLE = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03."

BAD = {
    # name: (pickle bytes or None, storages, byteorder entry or None)
    "io_bad_os_system.bin": (EVIL_PICKLE, {}),
    "io_bad_big_endian.bin": (dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "0", 4), 0, (4,), (1,))}),
                              {"0": FOUR_FLOATS}, b"big"),
    "io_bad_list.bin": (dumps([FakeTensor(FakeStorage(torch.FloatStorage, "0", 4), 0, (4,), (1,))]),
                        {"0": FOUR_FLOATS}),
    "io_bad_int.bin": (dumps(5), {}),
    "io_bad_entry_int.bin": (dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "0", 4), 0, (4,), (1,)),
                                    "n": 5}), {"0": FOUR_FLOATS}),
    "io_bad_missing_storage.bin": (dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "7", 4), 0, (4,), (1,))}),
                                   {"0": FOUR_FLOATS}),
    "io_bad_small_storage.bin": (dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "0", 4), 0, (2, 3), (3, 1))}),
                                 {"0": FOUR_FLOATS}),
    "io_bad_no_pkl.bin": (None, {"0": FOUR_FLOATS}),
}


def make_crafted_file():
    """A valid archive not written by torch: a "little" byteorder entry (torch >= 2.1),
    and a view at storage offset 1 of a 4-float storage: w == [1, 2, 3]."""
    pkl = dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "0", 4), 1, (3,), (1,))})
    write_archive("io_torch_crafted.bin", pkl, {"0": FOUR_FLOATS}, b"little")
    write_zip64("io_torch_zip64.bin", [("archive/data.pkl", pkl), ("archive/data/0", FOUR_FLOATS),
                                       ("archive/version", b"3\n")])


def write_zip64(name, entries):
    """A stored zip in which every size, offset and count is in zip64 form (the 32-bit
    fields hold 0xFFFFFFFF / 0xFFFF and the values sit in zip64 extra fields, the zip64
    end of central directory record and its locator), as large archives are written."""
    body, central = b"", b""
    for ename, data in entries:
        n, crc, offset = ename.encode(), zlib.crc32(data), len(body)
        local_extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                            len(n), len(local_extra)) + n + local_extra + data
        central_extra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF,
                               0xFFFFFFFF, len(n), len(central_extra), 0, 0, 0, 0, 0xFFFFFFFF) + n + central_extra
    eocd64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(central),
                         len(body))
    locator = struct.pack("<IIQI", 0x07064B50, 0, len(body) + len(central), 1)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(out(name), "wb") as f:
        f.write(body + central + eocd64 + locator + eocd)
    with zipfile.ZipFile(out(name)) as z:  # Python's zip reader agrees
        assert [(i.filename, z.read(i)) for i in z.infolist()] == list(entries)


def make_bad_files():
    for name, (pkl, storages, *byteorder) in BAD.items():
        if pkl is not None:
            pickletools.dis(pkl, out=io.StringIO())  # well-formed pickle (disassembled, never loaded)
        write_archive(name, pkl, storages, *byteorder)
    assert b"cos\nsystem\n" in EVIL_PICKLE
    # the real io_torch.bin re-zipped with deflate
    with zipfile.ZipFile(out("io_torch.bin")) as z:
        entries = {i.filename: z.read(i.filename) for i in z.infolist()}
    with zipfile.ZipFile(out("io_bad_deflate.bin"), "w", zipfile.ZIP_DEFLATED) as z:
        for ename, data in entries.items():
            info = zipfile.ZipInfo(ename, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)


def main():
    make_values()
    sd = make_torch_files()
    make_crafted_file()
    make_bad_files()
    # self-check: torch reads back what it wrote, and the references match it
    back = torch.load(out("io_torch.bin"))
    assert list(back.keys()) == list(sd.keys())
    assert back["tied.a"].data_ptr() == back["tied.b"].data_ptr()
    for name in sorted(os.listdir(HERE)):
        if name.startswith("io_"):
            print(f"{os.path.getsize(out(name)):6d}  {name}")
    print("ok")


if __name__ == "__main__":
    main()
