"""A LLaMA causal language model laid out exactly as Hugging Face's LlamaForCausalLM.

Parameter names, shapes and conventions match the transformers implementation, so the state
dict exports to an HF checkpoint by name: RMSNorm computed in float32 with the weight applied
after the cast back, rotary embeddings in the rotate-half convention with
inv_freq = theta^(-2i/head_dim), grouped-query attention by repeating KV heads, and a gated
FFN down(act(gate(x)) * up(x)). The FFN records its intermediate activation x1 = act(gate) * up
so the training loop can penalise it (ProSparse's L1) and measure its sparsity.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaShape:
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    hidden_act: str = "relu2"
    hidden_act_param: float = 0.0
    tie_word_embeddings: bool = True

    def to_dict(self):
        return asdict(self)


def activation(name, param):
    """The FFN activation as transformers names it in config.json's hidden_act."""
    if name == "silu":
        return F.silu
    if name == "relu":
        return F.relu
    if name == "relu2":
        return lambda x: torch.square(F.relu(x))
    if name == "fatrelu":
        # x where x >= t and x > 0, else 0: the engine's FATReLU (engine/backend/mask.cc), which
        # keeps ReLU's zero for negative inputs when t = 0.
        return lambda x: torch.where((x >= param) & (x > 0), x, torch.zeros_like(x))
    raise ValueError(f"unsupported hidden_act {name!r}")


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_tables(head_dim, theta, positions):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(positions.float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.heads = s.num_attention_heads
        self.kv_heads = s.num_key_value_heads
        self.head_dim = s.hidden_size // s.num_attention_heads
        self.q_proj = nn.Linear(s.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(s.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(s.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, s.hidden_size, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out = (probs @ v).transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.o_proj(out)


class Mlp(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.gate_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.up_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.down_proj = nn.Linear(s.intermediate_size, s.hidden_size, bias=False)
        self.act = activation(s.hidden_act, s.hidden_act_param)
        self.last_x1 = None

    def forward(self, x):
        x1 = self.act(self.gate_proj(x)) * self.up_proj(x)
        self.last_x1 = x1
        return self.down_proj(x1)


class DecoderLayer(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.self_attn = Attention(s)
        self.mlp = Mlp(s)
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.embed_tokens = nn.Embedding(s.vocab_size, s.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(s) for _ in range(s.num_hidden_layers))
        self.norm = RMSNorm(s.hidden_size, s.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """State-dict keys are those of transformers' LlamaForCausalLM (model.*, lm_head.weight)."""

    def __init__(self, s: LlamaShape, init_std=0.02):
        super().__init__()
        self.shape = s
        self.model = LlamaBody(s)
        self.lm_head = nn.Linear(s.hidden_size, s.vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=init_std)
        if s.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids):
        t = ids.shape[1]
        head_dim = self.shape.hidden_size // self.shape.num_attention_heads
        cos, sin = rope_tables(head_dim, self.shape.rope_theta, torch.arange(t, device=ids.device))
        cos, sin = cos.to(ids.device), sin.to(ids.device)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.model.norm(x))

    def ffn_activations(self):
        """x1 of every layer from the last forward pass, [batch, tokens, intermediate] each."""
        return [layer.mlp.last_x1 for layer in self.model.layers]
