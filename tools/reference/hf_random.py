"""Small random `BitNetForCausalLM` checkpoints in both published forms, made and computed by
Hugging Face transformers itself, for `cargo test` (bitnet/tests/hf_random.rs) to check
`bitnet-infer convert` and the engine against without torch.

    TORCH_COMPILE_DISABLE=1 target/train/venv/bin/python tools/reference/hf_random.py \
        --out fixtures/hf-random --bin target/release/bitnet-infer

Seeded and deterministic (CPU, one thread). Writes, into OUT/bf16 and OUT/packed:
  config.json, model.safetensors, tokenizer.json, tokenizer_config.json
      bf16: master weights as `microsoft/bitnet-b1.58-2B-4T-bf16` (save_pretrained, which
            also writes generation_config.json; quantization_config autobitlinear/online:
            transformers ternarises at run time);
      packed: the same model as `microsoft/bitnet-b1.58-2B-4T` (uint8 `[out/4, in]` from
            transformers' `pack_weights` of the trits transformers' `WeightQuant` gives, a bf16
            `weight_scale` = 1/beta that `BitLinear` divides by, quantization_config
            bitlinear/offline, Llama 3's pre-tokenizer split).
  expected-logits.npy  float32 [n_prompt, vocab]: transformers' logits of the prompt, one
                       token at a time through its KV cache, the model loaded back with
                       `AutoModelForCausalLM.from_pretrained` (so `BitLinear` or
                       `AutoBitLinear` computes).
  expected.json        prompt ids (`tokenizers`), 16 greedy ids (token by token), near-tie
                       counts, provenance.

Near-ties (hf_ties.py): the engine converts each checkpoint (`--bin`), runs with
BITNET_DUMP_TIES, and transformers takes the engine's code where the engine's `x * s` is
within 5e-4 of a rounding tie; expected.json counts how many of those codes differed from
transformers' own rounding, and how often transformers' batched and token-by-token paths
round differently from each other.
"""

import argparse
import codecs
import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")  # transformers' quant ops are @torch.compile

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import AutoModelForCausalLM, BitNetConfig, BitNetForCausalLM  # noqa: E402
from transformers.integrations.bitnet import (  # noqa: E402
    AutoBitLinear, BitLinear, WeightQuant, pack_weights, unpack_weights)
from transformers.models.bitnet.modeling_bitnet import BitNetRMSNorm  # noqa: E402

from hf_ties import (  # noqa: E402
    Codes, Ties, differ, engine_ties, greedy_incremental, incremental_logits)

SEED = 1158
VOCAB = 384
# The smallest 2B4T-shaped model the engine loads: every BitLinear input width (hidden,
# q_dim, ffn) must be a multiple of 128, I2_S's block (formats.md section 2).
HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 128, 256, 2, 4, 2
# transformers' default 0.02 leaves a random model nearly inert: logits = embedding . normed
# state have std ~0.02 * sqrt(128) = 0.23 (every token almost equally likely, so greedy
# argmax margins are tiny), and q.k / sqrt(head_dim) ~1e-2, so attention is uniform and RoPE
# has nothing to move. With 0.25 the logits' std is ~2-3 and attention scores spread over
# a few units: softmax, RoPE and the argmax all matter. Ternarisation itself is
# scale-free (beta = mean|W|), so the trits' distribution does not depend on it.
INIT_STD = 0.25
PROMPT = "Now is better than never; errors should never pass."
N_GREEDY = 16
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def corpus():
    """The Zen of Python (the standard library's `this`, rot13 in its source): a fixed text
    every Python has, enough for a few dozen merges."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")


def tokenizer(form):
    """Byte-level BPE trained by `tokenizers`: GPT-2's split for bf16 (as tools/train), Llama
    3's Split + ByteLevel for packed (as the 2B4T repository's tokenizer.json)."""
    tok = Tokenizer(models.BPE())
    if form == "packed":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([corpus()], trainer)
    if tok.get_vocab_size() != VOCAB:
        raise SystemExit(f"{form}: tokenizer has {tok.get_vocab_size()} tokens, want {VOCAB}")
    assert (tok.token_to_id(BOS), tok.token_to_id(EOS)) == (0, 1)
    return tok


def write_tokenizer(tok, out):
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": BOS, "eos_token": EOS, "add_bos_token": True,
                   "add_eos_token": False, "model_max_length": 128,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)


def random_model():
    """transformers' own init (normal(0, INIT_STD) for every linear and the embedding), then
    RMSNorm weights drawn from U(0.5, 1.5) instead of all ones, so that a norm read from the
    wrong tensor changes the logits. Returned in bf16: the master weights as stored."""
    torch.manual_seed(SEED)
    cfg = BitNetConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, hidden_act="relu2",
        max_position_embeddings=128, rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=1,
        tie_word_embeddings=True, initializer_range=INIT_STD,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    model = BitNetForCausalLM(cfg)
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, BitNetRMSNorm):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
    return model.to(torch.bfloat16).eval()


def ternarise(w):
    """Trits and transformers' scale s (beta = 1/s) of master weights `w`, computed as
    `WeightQuant` does; checked against it."""
    w = w.float()
    s = 1.0 / w.abs().mean().clamp_(min=1e-5)
    trits = (w * s).round().clamp(-1, 1)
    assert torch.equal(trits / s, WeightQuant.apply(w)), "not WeightQuant's ternarisation"
    return trits, s


def write_bf16(model, out):
    model.config.quantization_config = {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                        "quantization_mode": "online"}
    model.save_pretrained(out, safe_serialization=True)


def write_packed(model, out):
    """The 2B4T repository's layout: projections packed by transformers' `pack_weights`, a
    bf16 `weight_scale` [1] beside each (BitLinear computes `y / (input_scale *
    weight_scale)`, so weight_scale = s = 1/beta), everything else bf16, no lm_head (tied)."""
    sd = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        base = name[:-len(".weight")]
        if base.endswith(PROJ):
            trits, s = ternarise(t)
            packed = pack_weights(trits.clone())
            assert torch.equal(unpack_weights(packed, dtype=torch.float32), trits)
            sd[name] = packed.contiguous()
            sd[base + ".weight_scale"] = s.reshape(1).to(torch.bfloat16)
        else:
            sd[name] = t.contiguous()
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": "bitlinear",
                                  "quantization_mode": "offline"}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def load(out, form):
    """The checkpoint as transformers loads it, in float32, with every tensor used."""
    model, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32,
                                                       output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"{out}: from_pretrained: {bad}")
    want = BitLinear if form == "packed" else AutoBitLinear
    linears = [m for m in model.modules() if isinstance(m, (BitLinear, AutoBitLinear))]
    assert len(linears) == 7 * LAYERS and all(type(m) is want for m in linears), form
    if form == "bf16":
        assert all(m.online_quant for m in linears)
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="fixtures/hf-random")
    ap.add_argument("--bin", default="target/release/bitnet-infer")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    tmp = tempfile.mkdtemp()
    master = random_model()
    for form in ("bf16", "packed"):
        out = os.path.join(a.out, form)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        tok = tokenizer(form)
        write_tokenizer(tok, out)
        (write_bf16 if form == "bf16" else write_packed)(master, out)
        if form == "packed":
            # transformers reads back the trits and scales the bf16 form ternarises to.
            pk, mb = load(out, "packed"), load(os.path.join(a.out, "bf16"), "bf16")
            for (n1, m1), (n2, m2) in zip(pk.named_modules(), mb.named_modules()):
                if isinstance(m1, BitLinear):
                    trits, s = ternarise(m2.weight)
                    assert n1 == n2 and torch.equal(unpack_weights(m1.weight, torch.float32), trits)
                    assert float(m1.weight_scale) == float(s.detach().to(torch.bfloat16)), n1

        gguf = os.path.join(tmp, f"{form}.gguf")
        subprocess.run([a.bin, "convert", out, "-o", gguf], check=True, capture_output=True)
        prompt = [0] + tok.encode(PROMPT).ids
        assert 16 <= len(prompt) <= 20, f"{form}: prompt is {len(prompt)} tokens"

        # transformers alone: a batched pass and one token at a time, its own codes recorded.
        plain = load(out, form)
        rec = Codes()
        rec.install(plain)
        with torch.no_grad():
            batch = plain(input_ids=torch.tensor([prompt])).logits[0].float().numpy()
        batch_rows, rec.rows = rec.rows, {}
        own, _ = incremental_logits(plain, prompt, rec)
        code_diff, code_pos = differ(batch_rows, rec.rows)
        logit_pos = [int(i) for i in np.nonzero(np.abs(own - batch).max(1) > 1e-3)[0]]

        # transformers with the engine's codes at the engine's near-ties.
        hooked = load(out, form)
        ties = Ties()
        ties.install(hooked)
        ties.load(engine_ties(a.bin, gguf, prompt, N_GREEDY))
        rows = []
        greedy = greedy_incremental(hooked, prompt, N_GREEDY, ties, rows)
        rows = np.stack(rows)
        logits = rows[:len(prompt)]
        prompt_seen = sum(1 for k in ties.seen if k[1] < len(prompt))
        prompt_taken = sum(1 for k in ties.taken if k[1] < len(prompt))
        moved = [int(i) for i in np.nonzero(np.abs(own - logits).max(1) > 1e-3)[0]]
        # Greedy steps are rows len(prompt)-1 .. +N_GREEDY-1; a top-2 gap near the test's
        # tolerance would make the comparison a coin toss.
        steps = rows[len(prompt) - 1:len(prompt) - 1 + N_GREEDY]
        top2 = np.sort(steps, axis=1)[:, -2:]
        margin = float((top2[:, 1] - top2[:, 0]).min())
        if margin < 1e-2:
            raise SystemExit(f"{form}: greedy top-2 margin {margin} is too small to test")
        with torch.no_grad():
            # The mask is explicit: generate() would infer one masking BOS, as its id is
            # the pad id it is given (there is no pad token).
            gen = plain.generate(torch.tensor([prompt]), max_new_tokens=N_GREEDY,
                                 attention_mask=torch.ones(1, len(prompt)), do_sample=False,
                                 eos_token_id=None, pad_token_id=0)
        np.save(os.path.join(out, "expected-logits.npy"), logits.astype(np.float32))

        linear = "BitLinear, packed offline" if form == "packed" else "AutoBitLinear online"
        doc = {
            "form": form,
            "source": f"transformers {transformers.__version__} BitNetForCausalLM ({linear}),"
                      f" float32, torch {torch.__version__}, tokenizers {tokenizers.__version__},"
                      f" safetensors {safetensors.__version__}",
            "generator": "tools/reference/hf_random.py",
            "seed": SEED,
            "init_std": INIT_STD,
            "prompt_text": PROMPT,
            "prompt_ids": prompt,
            "greedy_ids": greedy,
            "greedy_ids_generate": gen[0, len(prompt):].tolist(),
            "greedy_min_top2_margin": margin,
            "logits_std": float(logits.std(axis=1).mean()),
            "near_ties": {
                "prompt_seen": prompt_seen,
                "prompt_taken_from_engine": prompt_taken,
                "prompt_positions_moved_by_taken": moved,
                "greedy_seen": len(ties.seen),
                "greedy_taken_from_engine": len(ties.taken),
            },
            "batch_vs_incremental": {
                "codes_differ": code_diff,
                "positions_with_codes_differing": code_pos,
                "positions_with_logits_differing": logit_pos,
            },
        }
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(doc, f, indent=1)
        print(form, json.dumps({k: doc[k] for k in ("prompt_ids", "greedy_ids", "near_ties",
                                                    "batch_vs_incremental", "logits_std",
                                                    "greedy_min_top2_margin")}), flush=True)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
