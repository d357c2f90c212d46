"""Self-attention encoder with sinusoidal positional encoding (Vaswani et al. 2017, "Attention Is
All You Need"), used over segment embeddings as in Won et al. 2019 ("Toward Interpretable Music
Tagging with Self-Attention") and Sukhavasi & Adapa 2019 (MobileNetV2 + self-attention).

Written with plain linear layers and ``softmax`` so that it exports to ONNX unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalPositionalEncoding(nn.Module):
    """Adds ``sin/cos`` position codes to ``(batch, seq, dim)``; any length up to ``max_len``."""

    def __init__(self, dim: int, max_len: int = 1024, dropout: float = 0.0) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div[: dim // 2])
        self.register_buffer("pe", pe, persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.shape[1]].unsqueeze(0))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"embedding size {dim} is not divisible by {n_heads} heads")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        qkv = self.qkv(x).reshape(batch, seq, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, seq, head_dim)
        attn = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim), dim=-1)
        out = self.attn_drop(attn) @ v  # (B, heads, seq, head_dim)
        return self.proj(out.transpose(1, 2).reshape(batch, seq, dim))


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (as in the original Transformer and BERT)."""

    def __init__(self, dim: int, n_heads: int, ff_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = MultiHeadSelfAttention(dim, n_heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.ff(x)))


class SelfAttentionEncoder(nn.Module):
    """Positional encoding + ``n_layers`` encoder layers over ``(batch, seq, dim)``."""

    def __init__(self, dim: int = 256, n_heads: int = 4, n_layers: int = 2, ff_dim: int | None = None,
                 dropout: float = 0.1, max_len: int = 1024) -> None:
        super().__init__()
        self.pos = SinusoidalPositionalEncoding(dim, max_len, dropout)
        self.layers = nn.ModuleList(EncoderLayer(dim, n_heads, ff_dim or 4 * dim, dropout) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos(x)
        for layer in self.layers:
            x = layer(x)
        return x
