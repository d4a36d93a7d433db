"""Independent float64 reference of /work/shared/design/formats.md (sections 1-5).

Written from the spec, not from the Rust sources, so that the engine can be checked against a
second implementation. Only numpy + stdlib. Slow on purpose: every step is spelled out.

    python3 bitnet_ref.py MODEL.gguf 256,72,101,108 [f16]   # prints argmax per position
"""

import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------------------------
# GGUF v3 container
# ---------------------------------------------------------------------------------------------

F32, F16, Q8_0, TQ1_0, TQ2_0, BF16, I2_S = 0, 1, 8, 34, 35, 30, 36
BITNET_ARCHS = ("bitnet-b1.58", "bitnet-25", "bitnet")
# `llama` with ternary linears (Falcon3-*-1.58bit, Llama3-8B-1.58 as llama.cpp converts them):
# Llama's layer, no sub-norms, SiLU, and llama.cpp's NORM RoPE (adjacent pairs) on q/k rows
# that its converter permuted from the Hugging Face order. Type 36 is not I2_S here.
ARCHS = BITNET_ARCHS + ("llama",)

# metadata value type id -> struct format (8 = string, 9 = array are handled apart)
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise ValueError(f"string of {n} bytes at offset {self.pos} runs past end of file")
        s = self.buf[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, vtype):
        if vtype in _SCALAR:
            return self.take(_SCALAR[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, n = self.take("<I"), self.take("<Q")
            return [self.value(etype) for _ in range(n)]
        raise ValueError(f"unknown metadata value type {vtype} at offset {self.pos}")


class Gguf:
    """meta: dict key -> value; tensors: dict name -> (dims ne0..., type id, absolute offset)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        r = Reader(self.buf)
        if self.buf[:4] != b"GGUF":
            raise ValueError(f"{path}: magic {self.buf[:4]!r}, expected b'GGUF'")
        r.pos = 4
        version = r.take("<I")
        if version != 3:
            raise ValueError(f"{path}: GGUF version {version}, expected 3")
        n_tensors, n_kv = r.take("<Q"), r.take("<Q")
        self.meta = {}
        for _ in range(n_kv):
            key = r.string()
            self.meta[key] = r.value(r.take("<I"))
        infos = []
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.take("<Q") for _ in range(r.take("<I"))]
            infos.append((name, dims, r.take("<I"), r.take("<Q")))
        align = self.meta.get("general.alignment", 32)
        data = (r.pos + align - 1) // align * align
        self.arch = self.meta["general.architecture"]
        self.tensors = {n: (d, t, data + off) for n, d, t, off in infos}

    def raw(self, name, nbytes):
        _, _, off = self.tensors[name]
        if off + nbytes > len(self.buf):
            raise ValueError(f"tensor {name}: {nbytes} bytes at {off} run past end of file")
        return np.frombuffer(self.buf, np.uint8, nbytes, off)

    def ternary(self, name):
        """(trits int8 [N, K], scale): scale is a float (I2_S beta) or [N, K/256] block d's."""
        dims, t, _ = self.tensors[name]
        k, n = dims[0], int(np.prod(dims[1:]))
        if t == I2_S:
            if self.arch not in BITNET_ARCHS:
                raise ValueError(f"tensor {name}: type 36 is I2_S only for bitnet archs, "
                                 f"not {self.arch!r}")
            trits, beta = i2_s(self.raw(name, n * k // 4 + 32), n * k)
            return trits.reshape(n, k), beta
        if t in (TQ1_0, TQ2_0):
            size = 54 if t == TQ1_0 else 66
            blocks = self.raw(name, n * k // 256 * size).reshape(-1, size)
            trits, d = (tq1_0 if t == TQ1_0 else tq2_0)(blocks)
            return trits.reshape(n, k), d.reshape(n, k // 256)
        raise ValueError(f"tensor {name}: type {t} is not ternary (expected 34, 35 or 36)")

    def dense(self, name):
        """Any supported type dequantized to float64, shape [ne_last, ..., ne0]."""
        dims, t, _ = self.tensors[name]
        n = int(np.prod(dims))
        shape = tuple(reversed(dims))
        if t == F32:
            return self.raw(name, 4 * n).view("<f4").astype(np.float64).reshape(shape)
        if t == F16:
            return self.raw(name, 2 * n).view("<f2").astype(np.float64).reshape(shape)
        if t == BF16:
            hi = self.raw(name, 2 * n).view("<u2").astype(np.uint32) << 16
            return hi.view(np.float32).astype(np.float64).reshape(shape)
        if t == Q8_0:
            b = self.raw(name, n // 32 * 34).reshape(-1, 34)
            d = b[:, :2].copy().view("<f2").astype(np.float64)
            return (d * b[:, 2:].view(np.int8)).reshape(shape)
        trits, scale = self.ternary(name)
        if np.isscalar(scale):
            return (trits * scale).reshape(shape)
        return (trits.reshape(-1, 256) * scale.reshape(-1, 1)).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Ternary layouts (formats.md sections 2 and 3); all return trits in {-1, 0, 1}
# ---------------------------------------------------------------------------------------------

def i2_s(b, n):
    """n/4 bytes of 128-element / 32-byte blocks, then a 32-byte tail whose first f32 is beta."""
    packed = b[:n // 4].reshape(-1, 32)                       # [n/128, g]
    # byte g = c[g]<<6 | c[32+g]<<4 | c[64+g]<<2 | c[96+g]  ->  element 32*j + g at shift 6-2j
    c = np.stack([(packed >> (6 - 2 * j)) & 3 for j in range(4)], axis=1)  # [n/128, j, g]
    if (c == 3).any():
        raise ValueError("I2_S code 3 found (never written by bitnet.cpp)")
    beta = float(b[n // 4:n // 4 + 4].view("<f4")[0])
    return c.reshape(-1).astype(np.int8) - 1, beta


def tq2_0(blocks):
    """66-byte blocks: qs[64], f16 d. Element 128h + 32l + m in qs[32h + m] bits 2l..2l+1."""
    qs = blocks[:, :64].reshape(-1, 2, 32)                    # [blk, h, m]
    c = np.stack([(qs >> (2 * l)) & 3 for l in range(4)], axis=2)  # [blk, h, l, m]
    d = blocks[:, 64:66].copy().view("<f2").astype(np.float64)[:, 0]
    return c.reshape(-1, 256).astype(np.int8) - 1, d


def _base3_digits(b, ndig):
    """Digit n of a TQ1_0 byte: q = byte * 3^n (wrapping u8), then (q * 3) >> 8. [..., n]."""
    return np.stack([((b.astype(np.uint16) * 3 ** k % 256) * 3) >> 8 for k in range(ndig)], -1)


def tq1_0(blocks):
    """54-byte blocks: qs[48], qh[4], f16 d (layout in formats.md section 3)."""
    c = np.empty((len(blocks), 256), np.int16)
    c[:, :160] = _base3_digits(blocks[:, :32], 5).transpose(0, 2, 1).reshape(-1, 160)  # m + 32n
    c[:, 160:240] = _base3_digits(blocks[:, 32:48], 5).transpose(0, 2, 1).reshape(-1, 80)
    c[:, 240:] = _base3_digits(blocks[:, 48:52], 4).transpose(0, 2, 1).reshape(-1, 16)
    d = blocks[:, 52:54].copy().view("<f2").astype(np.float64)[:, 0]
    return c.astype(np.int8) - 1, d


# ---------------------------------------------------------------------------------------------
# Model math (formats.md sections 4 and 5), float64 throughout
# ---------------------------------------------------------------------------------------------

def rmsnorm(x, w, eps):
    """x / sqrt(mean(x^2) + eps) * w, per row."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def act_quant(x):
    """Per-token absmax int8: s = 127 / max(max|x|, 1e-5), q = clamp(rint(x * s), -128, 127)."""
    s = 127.0 / np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-5)
    return np.clip(np.rint(x * s), -128, 127).astype(np.int64), s


# An f32 engine's x * s (up to 127) differs from this f64 one by up to ~2e-5 in the fixtures: a
# value that close to a .5 tie may round either way, and one code moves the logits by up to
# ~0.5. With BITNET_DUMP_TIES set the engine writes the codes it chose within 1e-3 of a tie
# (read_ties); Model.forward takes them at its own near-ties within TIE_WINDOW. Half the
# engine's band: a near-tie here is then always in the dump unless the two values are more
# than TIE_WINDOW apart, which is reported, not noise.
TIE_WINDOW = 5e-4
# The same for an f16 KV cache: a key or value close to the midpoint of two f16s may be stored
# as either (enough to flip later activation codes). The engine's f32 keys are off by up to
# ~5e-7 of the largest |element| of their row (the position's kv_dim keys, or values): its
# RoPE mixes pairs in f32 with an f32 angle. So the band is relative to that row maximum;
# BITNET_DUMP_KV_TIES records the engine's f16 within 1e-5 of it, twice this band.
KV_TIE_WINDOW = 5e-6


def read_ties(path):
    """The engine's BITNET_DUMP_TIES (or BITNET_DUMP_KV_TIES) file: {(site, pos, elem): code}.
    Lines are `<site> <pos> <elem> <x> <code>`: code is the int8 the engine stored (or the
    f16 value, exactly); x is only informative (the engine's f32 x*s, or key / value)."""
    observed = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            try:
                site, pos, elem, _, code = parts
                observed[(site, int(pos), int(elem))] = float(code)
            except ValueError:
                raise ValueError(f"{path}:{n}: expected '<site> <pos> <elem> <x*s> <code>', "
                                 f"got {line.rstrip()!r}") from None
    return observed


class BitLinear:
    """W1.58 A8: y = acc * beta / s (per tensor) or sum_b acc_b * d_b / s (per 256-block)."""

    def __init__(self, g, name):
        self.trits, self.scale = g.ternary(name + ".weight")
        self.trits = self.trits.astype(np.int64)              # [N, K]
        extra = name + ".scale"
        self.out_scale = float(g.dense(extra).reshape(-1)[0]) if extra in g.tensors else 1.0

    def __call__(self, qs):                      # (q [T, K] int, s [T, 1]) -> y [T, N]
        q, s = qs
        if np.isscalar(self.scale):
            y = (q @ self.trits.T) * self.scale / s           # exact int64 acc, then f64
        else:
            n, k = self.trits.shape
            acc = np.einsum("tbk,nbk->tnb", q.reshape(len(q), k // 256, 256),
                            self.trits.reshape(n, k // 256, 256))  # [T, N, blocks]
            y = (acc * self.scale).sum(-1) / s
        return y * self.out_scale


def rope_norm(x, n_rot, theta):
    """x [T, H, hd]; pairs (2i, 2i + 1), angle pos * theta^(-2i/n_rot); dims >= n_rot kept."""
    half = n_rot // 2
    inv = theta ** (-2.0 * np.arange(half) / n_rot)
    ang = np.arange(x.shape[0])[:, None] * inv[None, :]        # [T, half]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    out = x.copy()
    out[..., 0:n_rot:2] = a * cos - b * sin
    out[..., 1:n_rot:2] = a * sin + b * cos
    return out


def rope_neox(x, n_rot, theta):
    """x [T, H, hd]; pairs (i, i + n_rot/2), angle pos * theta^(-2i/n_rot); dims >= n_rot kept."""
    half = n_rot // 2
    inv = theta ** (-2.0 * np.arange(half) / n_rot)
    ang = np.arange(x.shape[0])[:, None] * inv[None, :]        # [T, half]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., :half], x[..., half:n_rot]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos, x[..., n_rot:]], axis=-1)


class Model:
    def __init__(self, path):
        g = self.g = Gguf(path)
        a, m = g.arch, g.meta
        if a not in ARCHS:
            raise ValueError(f"{path}: architecture {a!r} is not one of {ARCHS}")
        self.n_layer = m[f"{a}.block_count"]
        self.n_embd = m[f"{a}.embedding_length"]
        self.n_head = m[f"{a}.attention.head_count"]
        self.n_kv = m.get(f"{a}.attention.head_count_kv", self.n_head)
        self.head_dim = m.get(f"{a}.attention.key_length", self.n_embd // self.n_head)
        self.eps = m[f"{a}.attention.layer_norm_rms_epsilon"]
        self.theta = m.get(f"{a}.rope.freq_base", 500000.0 if a in ("bitnet-b1.58", "bitnet-25")
                           else 10000.0)
        self.rope = rope_norm if a == "llama" else rope_neox
        # BitNet's extra norms before o_proj and down_proj; llama quantizes the raw input.
        self.sub_norms = a in BITNET_ARCHS
        self.n_rot = m.get(f"{a}.rope.dimension_count", self.head_dim)
        acts = {"relu2": lambda v: np.maximum(v, 0) ** 2, "silu": lambda v: v / (1 + np.exp(-v))}
        self.act_name = m.get(f"{a}.hidden_act", "silu" if a in ("bitnet", "llama") else "relu2")
        if self.act_name not in acts:
            raise ValueError(f"{path}: {a}.hidden_act = {self.act_name!r}, expected one of "
                             f"{sorted(acts)}")
        self.act = acts[self.act_name]
        self.embd = g.dense("token_embd.weight")               # [n_vocab, n_embd]
        self.head = g.dense("output.weight") if "output.weight" in g.tensors else self.embd
        self.output_norm = g.dense("output_norm.weight")
        self.layers = []
        for i in range(self.n_layer):
            p = f"blk.{i}."
            norms = ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm") \
                if self.sub_norms else ("attn_norm", "ffn_norm")
            L = {w: g.dense(p + w + ".weight") for w in norms}
            L.update({w: BitLinear(g, p + w) for w in ("attn_q", "attn_k", "attn_v",
                                                       "attn_output", "ffn_gate", "ffn_up",
                                                       "ffn_down")})
            self.layers.append(L)

    def norm_quant(self, i, w, x):
        """rmsnorm(x) * blk.i.w, quantized for the BitLinear(s) that read it."""
        return self.quant(f"blk.{i}.{w}", rmsnorm(x, self.layers[i][w], self.eps))

    def sub_quant(self, i, norm, proj, x):
        """The input of projection `proj`: rmsnorm(x) * blk.i.norm (BitNet's sub-norm), or x
        itself for llama; the tie-dump site is then named after the projection."""
        if self.sub_norms:
            return self.norm_quant(i, norm, x)
        return self.quant(f"blk.{i}.{proj}", x)

    def quant(self, site, x):
        """x quantized per token. At a near-tie (x*s within TIE_WINDOW of k + 0.5) the
        engine's code from self.observed is used when there is one; every near-tie is
        recorded in self.ties as ((site, pos, elem), x*s, own code, observed code or None)."""
        q, s = act_quant(x)
        v = x * s
        dist = np.abs(v - np.floor(v) - 0.5)
        for t, j in zip(*np.nonzero(dist <= TIE_WINDOW)):
            key = (site, int(t), int(j))
            own, seen = int(q[t, j]), self.observed.get(key)
            # Only the two neighbours of the tie are f32 noise; any other code is a real
            # disagreement between engine and reference and must not be papered over.
            if seen is not None and seen not in (np.floor(v[t, j]), np.floor(v[t, j]) + 1):
                raise ValueError(f"{key}: observed engine code {seen:g}, but x*s = "
                                 f"{v[t, j]:.9f} here: not a neighbour of the tie")
            self.ties.append((key, float(v[t, j]), own, seen))
            if seen is not None:
                q[t, j] = int(seen)
        return q, s

    def f16_cache(self, site, x):
        """x [T, ...] as an f16 KV cache stores it: rounded to nearest-even f16 from the f32
        value the engine computed (hence through float32 here too). At a near-tie (within
        KV_TIE_WINDOW * max|row| of a midpoint) the engine's f16 from self.observed is used
        when there is one; near-ties are recorded in self.ties like norm_quant's, with values
        and codes in f16 ulps of the value's binade: 2^(max(e, -14) - 10) for
        2^e <= |x| < 2^(e+1), so the midpoints are at k + 0.5."""
        flat = x.reshape(len(x), -1)
        h = flat.astype(np.float32).astype(np.float16).astype(np.float64)
        _, e = np.frexp(flat)                                 # |x| = m 2^e, 0.5 <= m < 1
        ulp = np.exp2(np.maximum(e - 1, -14) - 10)
        v = flat / ulp
        band = KV_TIE_WINDOW * np.abs(flat).max(-1, keepdims=True) / ulp   # [T, kv_dim]
        dist = np.abs(v - np.floor(v) - 0.5)
        for t, j in zip(*np.nonzero(dist <= band)):
            key = (site, int(t), int(j))
            seen = self.observed.get(key)
            seen_ulps = None if seen is None else seen / ulp[t, j]
            # The engine rounds a value within the band of this one: its f16 is at most
            # 0.5 + band ulps away (several ulps for an element far below its row's max).
            if seen is not None and abs(seen_ulps - v[t, j]) > 0.5 + band[t, j]:
                raise ValueError(f"{key}: observed engine f16 {seen!r} is {seen_ulps:g} ulps, "
                                 f"but the value is {v[t, j]:.9f} ulps here, more than "
                                 f"0.5 + {band[t, j]:.3g} away")
            self.ties.append((key, float(v[t, j]), h[t, j] / ulp[t, j], seen_ulps))
            if seen is not None:
                h[t, j] = seen
        return h.reshape(x.shape)

    def attention(self, i, L, a):                            # a = (q, s) of [T, n_embd]
        T, hd = len(a[0]), self.head_dim
        q = self.rope(L["attn_q"](a).reshape(T, self.n_head, hd), self.n_rot, self.theta)
        k = self.rope(L["attn_k"](a).reshape(T, self.n_kv, hd), self.n_rot, self.theta)
        v = L["attn_v"](a).reshape(T, self.n_kv, hd)
        if self.kv == "f16":
            # Every position, the current one too, is read back from the cache.
            k = self.f16_cache(f"blk.{i}.cache_k", k)
            v = self.f16_cache(f"blk.{i}.cache_v", v)
        group = self.n_head // self.n_kv
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # kv head = h // group
        att = np.einsum("thd,uhd->htu", q, k) / np.sqrt(hd)    # [H, T, T]
        att = att + np.triu(np.full((T, T), -np.inf), 1)      # causal mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        return np.einsum("htu,uhd->thd", att, v).reshape(T, self.n_head * hd)

    def forward(self, tokens, kv="f32", observed=None):
        """Logits [T, n_vocab] (float64) for every position of `tokens`. kv: "f32" or "f16",
        the engine's KV cache type. observed: {(site, pos, elem): code} from the engine's
        BITNET_DUMP_TIES and (f16) BITNET_DUMP_KV_TIES files (read_ties), taken at near-ties
        (see norm_quant, f16_cache); the near-ties met are left in self.ties."""
        if kv not in ("f32", "f16"):
            raise ValueError(f"kv = {kv!r}, expected 'f32' or 'f16'")
        self.kv, self.observed, self.ties = kv, observed or {}, []
        x = self.embd[np.asarray(tokens)]
        for i, L in enumerate(self.layers):
            o = self.attention(i, L, self.norm_quant(i, "attn_norm", x))
            x = x + L["attn_output"](self.sub_quant(i, "attn_sub_norm", "attn_output", o))
            f = self.norm_quant(i, "ffn_norm", x)
            g = self.act(L["ffn_gate"](f)) * L["ffn_up"](f)
            x = x + L["ffn_down"](self.sub_quant(i, "ffn_sub_norm", "ffn_down", g))
        return rmsnorm(x, self.output_norm, self.eps) @ self.head.T


if __name__ == "__main__":
    model = Model(sys.argv[1])
    kv = sys.argv[3] if len(sys.argv) > 3 else "f32"
    logits = model.forward([int(t) for t in sys.argv[2].split(",")], kv)
    print(model.g.arch, model.act_name, "argmax per position:", logits.argmax(-1).tolist())
