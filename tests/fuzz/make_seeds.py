#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses into tests/fuzz/seeds/<harness>/ (committed;
run again after a format change). Standard library only. Seeds are small valid inputs,
and a few near-valid ones, of each parser:

  config      config.json: the golden tiny model's, a minimal one, one with labels
  train_ini   the trainer's INI: configs/train_defaults.ini, the experiments' trainer files,
              one with every section and a long path
  dataset     two option bytes (see fuzz_dataset.c) + TSV / CSV text: headers, quotes, CRLF,
              a bare CR, a BOM, label names and integers, a TSV with a header
  tokenize    texts: Indonesian, accents, CJK, control characters, invalid UTF-8
  words       the same texts, and one that repeats its words
  eda         two option bytes (see fuzz_eda.c) + splits: the sample data's three, a CSV,
              two splits that share texts, rows without a text or a label
  vocab       vocab.txt: the golden tiny model's, with CRLF ends, with a duplicate
  safetensors a micro model's weights; tests/data/io_values.safetensors (every dtype)
  torchbin    tests/data's smaller torch.save archives
  model_dir   a micro BERT (hidden 4, one layer) as config | vocab | safetensors parts
"""
import json
import os
import random
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
SEEDS = os.path.join(HERE, "seeds")
MARK = b"\n--qbert-fuzz--\n"


def put(harness, name, data):
    d = os.path.join(SEEDS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def read(*path):
    with open(os.path.join(ROOT, *path), "rb") as f:
        return f.read()


def safetensors(tensors, metadata=None):
    """tensors: [(name, shape, floats)] as F32."""
    header, blobs, off = {}, [], 0
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def micro_model():
    """config.json, vocab.txt and model.safetensors of a 1-layer BERT of hidden 4."""
    V, C, I, P, L = 12, 4, 8, 16, 3
    rng = random.Random(7)
    config = {"model_type": "bert", "vocab_size": V, "hidden_size": C, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": I, "max_position_embeddings": P,
              "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
              "id2label": {"0": "positive", "1": "neutral", "2": "negative"}}
    vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nsaya\nsuka\nbuku\nini\ntidak\nbagus\n!\n"

    def t(name, *shape):
        n = 1
        for s in shape:
            n *= s
        ones = name.endswith("LayerNorm.weight")
        return (name, list(shape), [1.0 if ones else rng.uniform(-0.1, 0.1) for _ in range(n)])
    w = [t("bert.embeddings.word_embeddings.weight", V, C), t("bert.embeddings.position_embeddings.weight", P, C),
         t("bert.embeddings.token_type_embeddings.weight", 2, C), t("bert.embeddings.LayerNorm.weight", C),
         t("bert.embeddings.LayerNorm.bias", C)]
    pre = "bert.encoder.layer.0."
    for lin, n_out, n_in in (("attention.self.query", C, C), ("attention.self.key", C, C),
                             ("attention.self.value", C, C), ("attention.output.dense", C, C),
                             ("intermediate.dense", I, C), ("output.dense", C, I)):
        w += [t(pre + lin + ".weight", n_out, n_in), t(pre + lin + ".bias", n_out)]
    for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
        w += [t(pre + ln + ".weight", C), t(pre + ln + ".bias", C)]
    w += [t("bert.pooler.dense.weight", C, C), t("bert.pooler.dense.bias", C), t("classifier.weight", L, C),
          t("classifier.bias", L)]
    return json.dumps(config, indent=1).encode(), vocab.encode(), safetensors(w)


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    config, vocab, weights = micro_model()

    put("config", "tiny.json", read("tests", "golden", "tiny", "config.json"))
    put("config", "micro.json", config)
    put("config", "minimal.json", '{"model_type": "bert", "vocab_size": 5, "hidden_size": 2, '
        '"num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 2}')

    put("train_ini", "defaults.ini", read("configs", "train_defaults.ini"))
    for name in ("smsa_finetune.ini", "smsa_qat_int8.ini", "smsa_qat_int4.ini"):
        put("train_ini", name, read("experiments", name))
    put("train_ini", "long.ini", "[model]\npreset = bert-tiny\n[data]\ntrain = /data/" + "x" * 300 + ".tsv\n"
        "labels = positive, neutral, negative\n[train]\nseeds = 1,2,3\nlearning_rate = 0.001\n"
        "[qat]\nenabled = true\nweight_bits = 4\n[device]\ntype = cpu\n[output]\ndir = runs/a\n")
    # the first campaign's findings: a 0x02 byte passed for a shortened line's value;
    put("train_ini", "finding-placeholder.ini", "[qat]\nobserver = ema\npercentile = \x029.99\n")
    # the second: a value beginning with ';' was written back as a comment
    put("train_ini", "finding-semicolon.ini", "[data]\ntrain =;./ shared\nlabels =;a,b\n")
    # the third: a long line of spaces before '=' was shortened into a longer one
    put("train_ini", "finding-padded-key.ini", "[train]\nepochs" + " " * 200 + "= 3\n")
    # the fourth (a long line with no key was shortened into a continuation line)
    put("train_ini", "finding-no-key.ini", "[data]\ntrain = a.tsv\n=;" + " " * 200 + "x\n")
    # the fifth (CI, 2026-12-05): a line after a \r was not taken for indented, and inih glued it
    # to the value above, " ;" and all, which the write-back could not reproduce
    put("train_ini", "finding-cr-indent.ini", "[data]\ntrain = a.tsv\n\rmax;   ;x = tsv\n")

    tsv = b"text\tlabel\nsaya suka buku ini\tpositive\ntidak bagus\tnegative\nbiasa saja\tneutral\n"
    csv = (b'\xef\xbb\xbf"id","text","label"\r\n1,"saya ""suka"", buku",positive\r\n2,"dua\nbaris",negative\r\n'
           b'3,biasa,neutral')
    put("dataset", "tsv-names", b"\x05\x00" + tsv)
    put("dataset", "tsv-header", b"\x05\x02" + tsv)
    put("dataset", "tsv-ints", b"\x01\x00" + b"text\tlabel\nsaya suka\t0\ntidak\t2\n")
    put("dataset", "csv-names", b"\x06\x00" + csv)
    put("dataset", "csv-cr", b"\x0e\x00" + b"text,label\rsatu,0\rdua,1\r")
    put("dataset", "sample", b"\x7d\x00" + read("data", "sample", "train.tsv")[:1500])

    for i, text in enumerate(["Saya suka makan nasi goreng, tapi TIDAK pedas!!", "caf\u00e9 \u00e9t\u00e9 "
                              "\u4e2d\u6587 \u0627\u0644", "tab\there\x00nul\x1bctl\r\n", "\u00c0\u0301\u0323"]):
        put("tokenize", "text%d" % i, text)
        put("words", "text%d" % i, text)
    put("tokenize", "invalid", b"ok \xff\xfe \xc3 \xe4\xb8 \xf0\x9f\x98 end")
    put("words", "invalid", b"ok \xff\xfe \xc3 \xe4\xb8 \xf0\x9f\x98 end")
    put("words", "repeats", "enak, enak sekali... tapi mahal; enak_enak 2 kali 2")

    sample = [read("data", "sample", name) for name in ("train.tsv", "valid.tsv", "test.tsv")]
    put("eda", "sample", b"\x40\x2a" + sample[0][:1200] + MARK + sample[1][:600] + MARK + sample[2][:600])
    put("eda", "csv-fixed", b"\x45\x03" + csv)
    put("eda", "shared", b"\x48\x10" + tsv + MARK + tsv)
    put("eda", "missing", b"\x62\x05" + b"text\tlabel\nsatu\t\ndua\tpositive\n\tneutral\nTIGA\tnetral\n")

    put("vocab", "tiny.txt", read("tests", "golden", "tiny", "vocab.txt"))
    put("vocab", "crlf.txt", vocab.replace(b"\n", b"\r\n"))
    put("vocab", "duplicate.txt", vocab + b"saya\n")

    put("safetensors", "micro.safetensors", weights)
    put("safetensors", "values.safetensors", read("tests", "data", "io_values.safetensors"))
    for name in ("io_torch_crafted.bin", "io_torch_model.bin", "io_torch_nested.bin", "io_torch_zip64.bin"):
        put("torchbin", name, read("tests", "data", name))

    put("model_dir", "micro", config + MARK + vocab + MARK + weights)


if __name__ == "__main__":
    main()
