#!/usr/bin/env python3
"""Independent reference fixtures for qbert, made with Hugging Face transformers.

Run from anywhere (it writes next to itself, under tests/golden/):

    /usr/bin/python3 tests/golden/make_golden.py

Deterministic (fixed seeds, CPU, FP32, eval mode), a few seconds. See README.md for
the package versions and for what every file and tensor is.
"""

import copy
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (BertConfig, BertForPreTraining, BertForSequenceClassification,
                          BertTokenizer)

HERE = os.path.dirname(os.path.abspath(__file__))
T = 16  # padded sequence length of the reference batch

# WordPiece vocab: specials first (the ids the C side expects), then Indonesian words and
# suffixes, then single letters / digits with and without "##" so any ASCII word can be
# spelled (an out-of-vocab word still becomes pieces, not [UNK]), then punctuation.
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """
saya aku kamu kami mereka ini itu yang dan di ke dari tapi juga tidak sangat sekali
akan lagi pasti sudah belum saja biasa suka senang kecewa puas bagus baik buruk jelek
enak makan minum harga mahal murah kualitas barang produk pengiriman cepat lambat
rusak sesuai pesanan tempat nyaman bersih kotor kafe kembali pelayan film hari terima
kasih beli toko rasa
""".split()
SUFFIXES = "##nya ##an ##kan ##i ##lah ##kah ##pun ##mu ##ku".split()
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
DIGITS = [str(d) for d in range(10)]
PUNCT = list(".,!?:;'\"()-/&%")
# dict.fromkeys drops repeats (e.g. "##i" is a suffix and a letter piece), keeping order.
VOCAB = list(dict.fromkeys(SPECIALS + WORDS + SUFFIXES + LETTERS + DIGITS
                           + ["##" + c for c in LETTERS] + ["##" + d for d in DIGITS] + PUNCT))

# Real short reviews. Row 0 is longer than T and is truncated; row 1 has an accented
# word ("Kafé" -> "kafe" after lowercase + accent strip); row 2 has "€50" (the euro sign
# is a symbol, not punctuation, so "€50" is one word with no pieces: [UNK]); row 3 is
# short (lots of padding) and "Mantap" is not in the vocab, so it is spelled from pieces.
TEXTS = [
    "Makanannya enak sekali, pelayanannya juga cepat! Saya pasti akan kembali lagi ke tempat ini.",
    "Kafé ini nyaman dan bersih, tapi harganya mahal.",
    "Harga €50 tidak sesuai, barang rusak :(",
    "Mantap sekali!",
]
PAIR_ROW = 2  # the row that gets token_type_ids = 1 on its second half (a sentence pair)

LABELS = {0: "positive", 1: "neutral", 2: "negative"}


def tiny_config(**extra):
    return BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
        layer_norm_eps=1e-12, hidden_act="gelu", hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, **extra)


def perturb(model, seed):
    """BERT's init (N(0, 0.02) weights, zero biases, LayerNorm 1/0) gives near-identical
    hidden states and logits near 0, so a wrong C kernel could still pass. Re-draw every
    parameter so that every tensor matters: matrices N(0, 0.15), biases N(0, 0.05),
    LayerNorm weight 1 + N(0, 0.1) and bias N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif "LayerNorm.bias" in name:
                p.copy_(0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.05 * noise)
            else:
                p.copy_(0.15 * noise)


def write_tokenizer(dirname):
    os.makedirs(dirname, exist_ok=True)
    vocab_path = os.path.join(dirname, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(tok + "\n" for tok in VOCAB))
    tok = BertTokenizer(vocab_path, do_lower_case=True, model_max_length=64)
    # Writes tokenizer_config.json (+ special_tokens_map.json) the way HF does; vocab.txt
    # is rewritten with the same content (checked below).
    tok.save_pretrained(dirname)
    with open(vocab_path, encoding="utf-8") as f:
        assert f.read().split("\n")[:-1] == VOCAB, "BertTokenizer changed vocab.txt"
    return tok


TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def fresh_dir(name, copy_from=None):
    """Empties HERE/name; with copy_from, copies config.json and the tokenizer files of
    that directory into it (a weight file is then saved beside them)."""
    d = os.path.join(HERE, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    if copy_from:
        for f in ("config.json",) + TOKENIZER_FILES:
            shutil.copy(os.path.join(copy_from, f), d)
    return d


def encode(tok):
    enc = tok(TEXTS, padding="max_length", truncation=True, max_length=T, return_tensors="pt")
    ids = enc["input_ids"]
    mask = enc["attention_mask"]
    types = enc["token_type_ids"].clone()
    assert types.abs().sum() == 0
    # Second half of the real tokens of PAIR_ROW is segment B (type 1), as in a pair.
    n = int(mask[PAIR_ROW].sum())
    types[PAIR_ROW, n // 2:n] = 1
    return enc, ids, mask, types


def forward(model, ids, mask, types):
    """Returns (logits or None, hidden_states tuple, pooled) in FP32."""
    with torch.no_grad():
        if isinstance(model, BertForSequenceClassification):
            out = model(input_ids=ids, attention_mask=mask, token_type_ids=types,
                        output_hidden_states=True)
            base = model.bert(input_ids=ids, attention_mask=mask, token_type_ids=types)
            return out.logits, out.hidden_states, base.pooler_output
        base = model.bert(input_ids=ids, attention_mask=mask, token_type_ids=types,
                          output_hidden_states=True)
        return None, base.hidden_states, base.pooler_output


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def i32(t):
    return t.detach().to(torch.int32).contiguous()


def assert_close(a, b, what, tol=0.0):
    err = float((a.float() - b.float()).abs().max())
    assert err <= tol, f"{what}: max abs diff {err} > {tol}"


# Labels of the reference batch, and the AdamW run: Trainer's defaults (torch AdamW,
# betas 0.9/0.999, eps 1e-8; no decay on biases and LayerNorm weights; linear warm-up then
# linear decay; clip_grad_norm_; loss / grad_accum before backward). The learning rate and
# weight decay are much larger than a real fine-tune's so that a missing decay, a wrong
# bias correction or a wrong schedule moves the weights by far more than the tolerance.
LABELS_REF = [0, 2, 2, 1]
ADAM = dict(lr=5e-3, weight_decay=0.1, warmup_steps=2, steps=6, grad_accum=2,
            max_grad_norm=2.5, beta1=0.9, beta2=0.999, eps=1e-8)
# Micro-batches (rows of TEXTS) in order, each dynamically padded to its longest row.
MICRO = [[0, 1], [2, 3], [3, 1], [0, 2], [1], [2, 3, 0], [3], [1, 0], [2, 1], [0, 3], [1, 2], [3, 0, 1, 2]]


def train_fixture(tiny, ids, mask, types, made_by):
    """tiny_train.safetensors: labels, loss and grad.NAME on the reference batch (eval mode,
    i.e. dropout off), and for the AdamW run: adamw.hparams, its micro-batches
    adamw.{input_ids,attention_mask,token_type_ids,labels}.I, the lr and the (pre-clip)
    gradient norm of every step, and adamw.NAME = every parameter after the last step."""
    model = BertForSequenceClassification.from_pretrained(tiny).eval()
    labels = torch.tensor(LABELS_REF)
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    out.loss.backward()
    fix = {"labels": i32(labels), "loss": f32(out.loss.reshape(1))}
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, f"{name}: no gradient"
        fix["grad." + name] = f32(p.grad)

    model = BertForSequenceClassification.from_pretrained(tiny).eval()
    a = ADAM
    decay = transformers.trainer_pt_utils.get_parameter_names(
        model, transformers.pytorch_utils.ALL_LAYERNORM_LAYERS)
    decay = [n for n in decay if "bias" not in n]
    groups = [
        {"params": [p for n, p in model.named_parameters() if n in decay],
         "weight_decay": a["weight_decay"]},
        {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"])
    sched = transformers.get_linear_schedule_with_warmup(opt, a["warmup_steps"], a["steps"])
    assert len(MICRO) == a["steps"] * a["grad_accum"]
    lrs, norms = [], []
    for i, rows in enumerate(MICRO):
        n = int(mask[rows].sum(dim=1).max())
        b = {"input_ids": ids[rows, :n], "attention_mask": mask[rows, :n],
             "token_type_ids": types[rows, :n], "labels": torch.tensor([LABELS_REF[r] for r in rows])}
        for k, v in b.items():
            fix[f"adamw.{k}.{i}"] = i32(v)
        loss = model(**b).loss / a["grad_accum"]
        loss.backward()
        if (i + 1) % a["grad_accum"] == 0:
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), a["max_grad_norm"])))
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            opt.zero_grad()
    # Some steps must clip and some not, so that both branches are checked.
    assert min(norms) < a["max_grad_norm"] < max(norms), f"grad norms {norms}"
    fix["adamw.hparams"] = torch.tensor([a[k] for k in ADAM], dtype=torch.float32)
    fix["adamw.lr"] = torch.tensor(lrs, dtype=torch.float32)
    fix["adamw.grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    for name, p in model.named_parameters():
        fix["adamw." + name] = f32(p)
    save_file(fix, os.path.join(HERE, "tiny_train.safetensors"),
              metadata={"generator": made_by + " model=tiny training"})
    print(f"loss {float(out.loss):.6f}; adamw lr {lrs}; grad norms {[round(x, 4) for x in norms]}")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one thread: the same summation order every run

    # 1. The tiny classifier, FP32: safetensors in tiny/, torch .bin in tiny_bin/.
    tiny = fresh_dir("tiny")
    tok = write_tokenizer(tiny)
    config = tiny_config(num_labels=3, id2label=LABELS,
                         label2id={v: k for k, v in LABELS.items()})
    model = BertForSequenceClassification(config).eval()
    perturb(model, seed=1)
    model.save_pretrained(tiny, safe_serialization=True)

    tiny_bin = fresh_dir("tiny_bin", copy_from=tiny)
    torch.save(model.state_dict(), os.path.join(tiny_bin, "pytorch_model.bin"))

    # 2. The reference batch.
    enc, ids, mask, types = encode(tok)
    logits, hidden, pooled = forward(model, ids, mask, types)
    probs = torch.softmax(logits, dim=-1)

    # F16 / BF16 copies. Their reference logits come from the rounded weights cast back
    # to FP32 (what the C loader does), read back from the saved files.
    low = {}
    for name, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        d = fresh_dir("tiny_" + name, copy_from=tiny)  # config.json is then rewritten
        copy.deepcopy(model).to(dtype).save_pretrained(d, safe_serialization=True)
        sd = load_file(os.path.join(d, "model.safetensors"))
        assert all(v.dtype == dtype for v in sd.values()), f"{name}: not all tensors {dtype}"
        m = BertForSequenceClassification.from_pretrained(d, torch_dtype=dtype).float().eval()
        low[name] = forward(m, ids, mask, types)[0]
        # Sanity: rounding the weights moves the logits a little, not a lot.
        assert_close(low[name], logits, f"{name} vs f32 logits", tol=0.1)
        assert not torch.equal(low[name], logits), f"{name}: rounding changed nothing"

    fwd = {
        "input_ids": i32(ids), "attention_mask": i32(mask), "token_type_ids": i32(types),
        "raw_input_ids": i32(enc["input_ids"]), "raw_attention_mask": i32(enc["attention_mask"]),
        "raw_token_type_ids": i32(enc["token_type_ids"]),
        "logits": f32(logits), "probabilities": f32(probs), "pooled": f32(pooled),
        "logits_f16": f32(low["f16"]), "logits_bf16": f32(low["bf16"]),
    }
    for i, h in enumerate(hidden):
        fwd[f"hidden_states.{i}"] = f32(h)
    # One metadata key only: safetensors writes several keys in hash order, which would make
    # the file bytes differ between runs.
    made_by = (f"tests/golden/make_golden.py transformers={transformers.__version__} "
               f"torch={torch.__version__}")
    save_file(fwd, os.path.join(HERE, "tiny_forward.safetensors"),
              metadata={"generator": made_by + " model=tiny"})
    with open(os.path.join(HERE, "tiny_texts.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(t + "\n" for t in TEXTS))

    # 3. A pre-training checkpoint (MLM + NSP heads, no classifier), another seed.
    pre = fresh_dir("pretrained_only")
    shutil.copy(os.path.join(tiny, "vocab.txt"), pre)
    pmodel = BertForPreTraining(tiny_config()).eval()
    perturb(pmodel, seed=2)
    pmodel.tie_weights()  # decoder weight shares the word embeddings, as in real BERT
    pmodel.save_pretrained(pre, safe_serialization=True)
    _, phidden, ppooled = forward(pmodel, ids, mask, types)
    pfwd = {f"hidden_states.{i}": f32(h) for i, h in enumerate(phidden)}
    pfwd["pooled"] = f32(ppooled)
    save_file(pfwd, os.path.join(HERE, "pretrained_only_forward.safetensors"),
              metadata={"generator": made_by + " model=pretrained_only"})

    # 4. Training: loss and every gradient on the reference batch, then the weights after
    # ADAMW_STEPS optimizer steps done the way Trainer does them (see train_fixture).
    train_fixture(tiny, ids, mask, types, made_by)

    # 5. Sanity: every saved directory reloads to the same outputs.
    ref = load_file(os.path.join(HERE, "tiny_forward.safetensors"))
    assert torch.equal(ref["input_ids"], i32(ids))
    for d in ("tiny", "tiny_bin"):
        m = BertForSequenceClassification.from_pretrained(os.path.join(HERE, d)).eval()
        lg, hs, pl = forward(m, ids, mask, types)
        assert_close(lg, ref["logits"], d + " logits")
        assert_close(pl, ref["pooled"], d + " pooled")
        for i, h in enumerate(hs):
            assert_close(h, ref[f"hidden_states.{i}"], f"{d} hidden_states.{i}")
    for name, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        m = BertForSequenceClassification.from_pretrained(
            os.path.join(HERE, "tiny_" + name)).float().eval()
        assert_close(forward(m, ids, mask, types)[0], ref["logits_" + name], name + " logits")
    # The pre-training checkpoint reloaded as itself and as a classifier (whose new head
    # HF initialises randomly, as the C loader must): the encoder outputs are the same.
    pref = load_file(os.path.join(HERE, "pretrained_only_forward.safetensors"))
    for cls in (BertForPreTraining, BertForSequenceClassification):
        _, hs, pl = forward(cls.from_pretrained(pre).eval(), ids, mask, types)
        assert_close(pl, pref["pooled"], "pretrained_only pooled")
        for i, h in enumerate(hs):
            assert_close(h, pref[f"hidden_states.{i}"], f"pretrained_only hidden_states.{i}")
    names = load_file(os.path.join(pre, "model.safetensors")).keys()
    assert any(k.startswith("cls.predictions.") for k in names)
    assert any(k.startswith("cls.seq_relationship.") for k in names)
    assert not any(k.startswith("classifier.") for k in names)
    # The tokenizer reloaded from the directory gives the same ids.
    tok2 = BertTokenizer.from_pretrained(tiny)
    assert torch.equal(encode(tok2)[1], ids)

    # The fixtures must be sensitive: outputs are not saturated or constant.
    p = probs.numpy()
    assert p.min() > 0.01 and p.max() < 0.99, f"probabilities saturated: {p}"
    assert np.std(logits.numpy(), axis=0).min() > 0.05, "logits nearly equal across rows"

    for i in range(len(TEXTS)):
        n = int(mask[i].sum())
        print(f"row {i}: {n:2d} tokens {tok.convert_ids_to_tokens(ids[i, :n].tolist())}")
    print("logits:\n", logits.numpy())
    print("probabilities:\n", p)
    print(f"ok: transformers {transformers.__version__}, torch {torch.__version__}, "
          f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
