"""The mapping network: one CLIP vector in, `prefix_length` language-model input embeddings out.

Parameter names follow ClipCap's (`model.0`, `linear`, `prefix_const`,
`transformer.layers.N.attn.to_queries`, ...) so that its published weights load
without renaming.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class MapperConfig:
    clip_dim: int = 512  # ViT-B/32's embedding width
    lm_dim: int = 768  # GPT-2 small's hidden width
    prefix_length: int = 10  # ClipCap's MLP setting; more tokens help the frozen-GPT-2 transformer mapper
    kind: str = "mlp"  # "mlp": ClipCap's COCO model; "transformer": its frozen-GPT-2 variant
    clip_length: int = 10  # transformer only: tokens the CLIP vector is unfolded into
    num_layers: int = 8  # transformer only, as in ClipCap
    num_heads: int = 8  # transformer only, as in ClipCap
    normalize_prefix: bool = False  # ClipCap's released weights saw raw, unnormalised CLIP vectors

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "transformer"):
            raise ValueError(f"mapper kind must be 'mlp' or 'transformer', not {self.kind!r}")
        if self.kind == "transformer" and self.lm_dim % self.num_heads:
            raise ValueError(f"lm_dim {self.lm_dim} is not divisible by num_heads {self.num_heads}")

    def to_dict(self) -> dict:
        return asdict(self)


class MLPMapper(nn.Module):
    def __init__(self, config: MapperConfig) -> None:
        super().__init__()
        hidden = config.lm_dim * config.prefix_length // 2
        self.config = config
        self.model = nn.Sequential(
            nn.Linear(config.clip_dim, hidden), nn.Tanh(), nn.Linear(hidden, config.lm_dim * config.prefix_length)
        )

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        # (B, clip_dim) -> (B, prefix_length, lm_dim)
        return self.model(clip).view(clip.shape[0], self.config.prefix_length, self.config.lm_dim)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.to_queries = nn.Linear(dim, dim)
        self.to_keys_values = nn.Linear(dim, dim * 2)
        self.project = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape  # (B, tokens, dim)
        q = self.to_queries(x).view(b, n, self.num_heads, -1).transpose(1, 2)  # (B, heads, n, head_dim)
        k, v = self.to_keys_values(x).view(b, n, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # no mask: every prefix token sees every other
        return self.project(out.transpose(1, 2).reshape(b, n, c))


class MLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * 2)  # ClipCap's mlp_ratio of 2
        self.fc2 = nn.Linear(dim * 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Stack(nn.Module):
    def __init__(self, config: MapperConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(config.lm_dim, config.num_heads) for _ in range(config.num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TransformerMapper(nn.Module):
    def __init__(self, config: MapperConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.clip_dim, config.clip_length * config.lm_dim)
        self.prefix_const = nn.Parameter(torch.randn(config.prefix_length, config.lm_dim))
        self.transformer = Stack(config)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b = clip.shape[0]
        unfolded = self.linear(clip).view(b, self.config.clip_length, -1)  # (B, clip_length, lm_dim)
        learned = self.prefix_const.unsqueeze(0).expand(b, -1, -1)  # (B, prefix_length, lm_dim)
        out = self.transformer(torch.cat([unfolded, learned], dim=1))
        return out[:, self.config.clip_length :]  # (B, prefix_length, lm_dim)


def build_mapper(config: MapperConfig) -> nn.Module:
    return MLPMapper(config) if config.kind == "mlp" else TransformerMapper(config)
