"""Per-modality encoders of the paper: text 1 FC layer, video 2 FC layers, MM-Fit's convolutional encoders for
pose and accelerometer.

MM-Fit's encoders (its repository's auto-encoders) are three convolution blocks, channels 3 -> 9 -> 15 -> 24, ReLU and
max-pool 2 after each, kernel 11, padding (k-1)/2, groups [3, 3, 1]: ``Conv1d`` with stride 2 for one 3-axis
sensor, ``Conv2d`` on (3 coordinates, frames, joints) with stride (2, 1) for the skeleton. MM-Fit used 5-s windows;
ours are 2 s at 50 Hz, so the flattened sizes are derived here from the window shape, not copied.
"""

from __future__ import annotations

import torch
from torch import nn

from mujo.schema import NUM_JOINTS, WINDOW

MMFIT_CHANNELS = (9, 15, 24)
MMFIT_GROUPS = (3, 3, 1)
MMFIT_KERNEL = 11


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU}[name]()


class TextEncoder(nn.Module):
    """One fully connected layer over the sentence embedding."""

    def __init__(self, in_dim: int, hidden: int, act: str = "relu") -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), activation(act))
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VideoEncoder(nn.Module):
    """Two fully connected layers over the (window-pooled) video feature vector."""

    def __init__(self, in_dim: int, hidden: int, act: str = "relu") -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), activation(act), nn.Linear(hidden, hidden), activation(act))
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MMFitSensorEncoder(nn.Module):
    """MM-Fit's 1-D convolutional encoder for one 3-axis sensor; input (B, 3, T), output (B, out_dim)."""

    def __init__(self, length: int = WINDOW, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out, groups in zip(MMFIT_CHANNELS, MMFIT_GROUPS):
            layers += [nn.Conv1d(c_in, c_out, MMFIT_KERNEL, stride=2, padding=(MMFIT_KERNEL - 1) // 2, groups=groups),
                       nn.ReLU(), nn.MaxPool1d(2)]
            c_in = c_out
        self.net = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            self.out_dim = int(self.net(torch.zeros(1, in_channels, length)).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AccEncoder(nn.Module):
    """Both wrists' accelerometers: one MM-Fit sensor encoder per wrist, features concatenated.

    Input (B, T, 6) = [left xyz, right xyz]. A sample without one wrist carries zeros in its channels.
    """

    def __init__(self, length: int = WINDOW) -> None:
        super().__init__()
        self.left = MMFitSensorEncoder(length)
        self.right = MMFitSensorEncoder(length)
        self.out_dim = self.left.out_dim + self.right.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2).contiguous()  # (B, 6, T)
        return torch.cat([self.left(x[:, :3]), self.right(x[:, 3:])], dim=1)


class PoseEncoder(nn.Module):
    """MM-Fit's 2-D convolutional skeleton encoder; input (B, T, J, 3), convolved as (B, 3, T, J)."""

    def __init__(self, length: int = WINDOW, joints: int = NUM_JOINTS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        pad = (MMFIT_KERNEL - 1) // 2
        for c_out, groups in zip(MMFIT_CHANNELS, MMFIT_GROUPS):
            layers += [nn.Conv2d(c_in, c_out, MMFIT_KERNEL, stride=(2, 1), padding=pad, groups=groups), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c_in = c_out
        self.net = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            self.out_dim = int(self.net(torch.zeros(1, 3, length, joints)).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2).contiguous())


def projection(in_dim: int, hidden: int, out_dim: int, layers: int, act: str, dropout: float) -> nn.Sequential:
    """The projection head into the joint space: ``layers`` linear layers (the paper uses 2)."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), activation(act), nn.Dropout(dropout)]
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)
