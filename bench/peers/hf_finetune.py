#!/usr/bin/python3
"""Hugging Face Trainer peer for the qbert fine-tuning benchmark (SmSA, 3 classes).

Runs with the Debian system interpreter (torch 1.13.1, transformers 4.40.2).
Trainer needs `accelerate`, which Debian lacks; installed with:
    /usr/bin/python3 -m pip install --break-system-packages --no-deps accelerate==0.29.3
(0.29.3 is contemporary with transformers 4.40 (needs >=0.21) and still accepts
torch>=1.10; its other requirements -- numpy, packaging, psutil, pyyaml,
huggingface-hub, safetensors -- are already there as Debian packages, so
--no-deps keeps pip from pulling a new torch.) scikit-learn is not needed.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone

import numpy as np
import torch
import transformers
from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                          DataCollatorWithPadding, Trainer, TrainerCallback,
                          TrainingArguments, set_seed)

LABELS = ["positive", "neutral", "negative"]  # ids 0, 1, 2 as in qbert


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="HF model dir (bench/peers/get_minilm.sh)")
    p.add_argument("--train", required=True)
    p.add_argument("--valid", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N train lines")
    p.add_argument("--group-by-length", action="store_true",
                   help="Trainer's LengthGroupedSampler (length-bucketed batches; default random order)")
    p.add_argument("--out", help="write the result JSON here")
    return p.parse_args()


def read_tsv(path, limit=0):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            text, label = line.rsplit("\t", 1)  # the label is the last field
            texts.append(text)
            labels.append(LABELS.index(label))
            if limit and len(texts) == limit:
                break
    return texts, labels


def encode(tok, path, max_length, limit=0):
    # No padding here: DataCollatorWithPadding pads each batch to its longest row.
    texts, labels = read_tsv(path, limit)
    enc = tok(texts, truncation=True, max_length=max_length)
    return [{**{k: v[i] for k, v in enc.items()}, "labels": labels[i]} for i in range(len(texts))]


def weighted_prf(y_true, y_pred):
    """accuracy and support-weighted precision/recall/F1, identical to sklearn's
    precision_recall_fscore_support(average="weighted", zero_division=0)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.union1d(y_true, y_pred)  # sklearn's default label set
    tp = np.array([np.sum((y_pred == c) & (y_true == c)) for c in labels], float)
    n_pred = np.array([np.sum(y_pred == c) for c in labels], float)
    support = np.array([np.sum(y_true == c) for c in labels], float)
    div = lambda a, b: np.divide(a, b, out=np.zeros_like(a), where=b > 0)  # 0/0 -> 0
    prec, rec = div(tp, n_pred), div(tp, support)
    f1 = div(2 * tp, n_pred + support)  # = 2PR/(P+R), 0 when tp == 0
    w = support / support.sum()
    return {"accuracy": float(np.mean(y_true == y_pred)), "precision": float(w @ prec),
            "recall": float(w @ rec), "f1": float(w @ f1)}


def compute_metrics(pred):
    return weighted_prf(pred.label_ids, np.argmax(pred.predictions, axis=-1))


class Timer(TrainerCallback):
    """Per-epoch training wall time. In transformers 4.40 _inner_training_loop calls
    on_epoch_end *before* _maybe_log_save_evaluate (evaluation + checkpoint save),
    so [on_epoch_begin, on_epoch_end] covers data loading + forward/backward/step
    only. on_evaluate hands us the valid metrics of the epoch just trained."""

    def __init__(self):
        self.train_seconds, self.valid = [], []

    def on_epoch_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kw):
        self.train_seconds.append(time.perf_counter() - self.t0)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        self.valid.append({k[5:]: v for k, v in metrics.items()
                           if k[5:] in ("accuracy", "precision", "recall", "f1", "loss")})


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def blas_libs():
    """BLAS actually mapped into this process. Debian's torch 1.13 uses whatever
    libblas.so.3 resolves to; the default (netlib reference BLAS) is ~20x slower
    than OpenBLAS -- see README.md for the LD_LIBRARY_PATH switch."""
    with open("/proc/self/maps") as f:
        paths = {l.split()[-1] for l in f if "blas" in l.rsplit("/", 1)[-1]}
    return sorted(os.path.realpath(p) for p in paths)


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)  # also sets OpenMP threads (OpenBLAS-openmp follows)
    blas = blas_libs()
    print("BLAS:", " ".join(blas))
    if not any("openblas" in p or "mkl" in p or "blis" in p for p in blas):
        print("WARNING: reference BLAS in use; timings are not representative", file=sys.stderr)
    set_seed(a.seed)  # before from_pretrained: seeds the fresh classifier head init

    tok = AutoTokenizer.from_pretrained(a.model)
    train = encode(tok, a.train, a.max_length, a.train_limit)
    valid = encode(tok, a.valid, a.max_length)
    test = encode(tok, a.test, a.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(
        a.model, num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})

    tmp = tempfile.TemporaryDirectory(prefix="hf_finetune_")
    targs = TrainingArguments(
        output_dir=tmp.name,
        num_train_epochs=a.epochs,
        learning_rate=a.lr,
        per_device_train_batch_size=a.batch,
        per_device_eval_batch_size=a.batch,
        weight_decay=a.weight_decay,     # HF skips biases and LayerNorm weights
        warmup_steps=0,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        optim="adamw_torch",             # betas (0.9, 0.999), eps 1e-8
        seed=a.seed,                     # also data_seed: the shuffling sampler
        evaluation_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",        # one train-loss log line per epoch
        load_best_model_at_end=True,
        metric_for_best_model="f1",      # compute_metrics' "f1" -> eval_f1
        greater_is_better=True,
        save_total_limit=1,              # + the best one, kept by Trainer
        save_only_model=True,            # no optimizer state: less disk I/O between epochs
        use_cpu=True,                    # 4.40 name; no_cuda is deprecated
        report_to=[],
        disable_tqdm=True,
        group_by_length=a.group_by_length,  # shuffled mega-batches of 50x16 sorted by length
    )
    timer = Timer()
    trainer = Trainer(model=model, args=targs, train_dataset=train, eval_dataset=valid,
                      tokenizer=tok, data_collator=DataCollatorWithPadding(tok),
                      compute_metrics=compute_metrics, callbacks=[timer])

    t0 = time.perf_counter()
    trainer.train()
    train_wall = time.perf_counter() - t0  # includes evals, checkpoint saves, best reload

    # Best epoch = epoch of the eval log entry whose step is the best checkpoint's.
    best_step = int(trainer.state.best_model_checkpoint.rsplit("-", 1)[1])
    best_epoch = next(round(h["epoch"]) for h in trainer.state.log_history
                      if "eval_f1" in h and h["step"] == best_step)
    train_loss = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    t0 = time.perf_counter()
    pred = trainer.predict(test)  # the best model was loaded by load_best_model_at_end
    test_seconds = time.perf_counter() - t0
    test_m = {k: pred.metrics["test_" + k] for k in ("accuracy", "precision", "recall", "f1", "loss")}

    epochs = [{"epoch": i + 1, "train_seconds": s, "samples_per_second": len(train) / s,
               "train_loss": train_loss[i] if i < len(train_loss) else None, "valid": v}
              for i, (s, v) in enumerate(zip(timer.train_seconds, timer.valid))]
    res = {
        "tool": "hf-trainer", "transformers": transformers.__version__,
        "torch": torch.__version__, "python": platform.python_version(),
        "model": os.path.abspath(a.model), "train_file": a.train,
        "train_samples": len(train), "valid_samples": len(valid), "test_samples": len(test),
        "epochs": epochs, "best_epoch": best_epoch, "test": test_m,
        "train_seconds_total": sum(timer.train_seconds),  # training only, no eval
        "trainer_train_wall_seconds": train_wall, "test_seconds": test_seconds,
        "threads": torch.get_num_threads(), "blas": blas,
        "hyperparameters": {"lr": a.lr, "batch": a.batch, "epochs": a.epochs,
                            "weight_decay": a.weight_decay, "warmup_steps": 0,
                            "max_grad_norm": 1.0, "max_length": a.max_length,
                            "seed": a.seed, "schedule": "linear", "optimizer": "adamw_torch",
                            "adam_betas": [0.9, 0.999], "adam_eps": 1e-8,
                            "padding": "dynamic (per batch)",
                            "group_by_length": a.group_by_length},
        "cpu": cpu_name(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

    print(f"\n{'epoch':>5} {'train s':>9} {'samples/s':>9} {'loss':>7} "
          f"{'val acc':>7} {'val P':>7} {'val R':>7} {'val F1':>7} {'val loss':>8}")
    for e in epochs:
        v = e["valid"]
        print(f"{e['epoch']:>5} {e['train_seconds']:>9.1f} {e['samples_per_second']:>9.2f} "
              f"{e['train_loss'] or float('nan'):>7.4f} {v['accuracy']:>7.4f} {v['precision']:>7.4f} "
              f"{v['recall']:>7.4f} {v['f1']:>7.4f} {v['loss']:>8.4f}")
    print(f"best epoch {best_epoch}; test acc {test_m['accuracy']:.4f} P {test_m['precision']:.4f} "
          f"R {test_m['recall']:.4f} F1 {test_m['f1']:.4f}")
    print(f"train {res['train_seconds_total']:.1f} s (Trainer.train wall {train_wall:.1f} s), "
          f"{len(train)} samples, {res['threads']} threads, {res['cpu']}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
        print("wrote", a.out)
    tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
